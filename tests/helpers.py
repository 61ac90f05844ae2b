"""Helpers that speak the pages and the socket as a browser would."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import weakref
from collections import deque
from typing import Any

import orjson
import pytest
from aiohttp import ClientWebSocketResponse, WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient

from chat.storage.appending import Append, Outcome
from chat.storage.sqlite import groupcommit

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')

Client = TestClient[web.Request, web.Application]


async def csrf(client: Client, path: str = "/login") -> str:
    response = await client.get(path)
    match = CSRF_RE.search(await response.text())
    assert match, f"no CSRF token on {path}"
    return match.group(1)


async def post_form(
    client: Client, path: str, data: dict[str, str], *, page: str | None = None
) -> Any:
    """POST a form the way the page would, CSRF token included."""
    token = await csrf(client, page or path)
    return await client.post(path, data={**data, "csrf_token": token}, allow_redirects=False)


async def register(client: Client, username: str, password: str = PASSWORD) -> None:
    response = await post_form(
        client,
        "/register",
        {"username": username, "password": password, "confirm": password},
    )
    assert response.status == 302, await response.text()


async def login(client: Client, username: str, password: str = PASSWORD) -> Any:
    return await post_form(client, "/login", {"username": username, "password": password})


async def create_room(client: Client, name: str) -> Any:
    return await post_form(client, "/rooms", {"name": name}, page="/")


# Documents received but not yet returned: a server text frame may carry several, one per line
# (docs/protocol.md, "Batching"). Weak keys: a closed socket's leftovers go with it.
_unread: weakref.WeakKeyDictionary[ClientWebSocketResponse, deque[dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


async def receive(ws: ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    """The next JSON document from the server, whether it came alone or batched in a frame."""
    unread = _unread.setdefault(ws, deque())
    if not unread:
        msg = await ws.receive(timeout=timeout)
        assert msg.type is WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
        unread.extend(orjson.loads(line) for line in msg.data.split("\n"))
    frame: dict[str, Any] = unread.popleft()
    return frame


async def receive_type(
    ws: ClientWebSocketResponse, kind: str, timeout: float = 5.0
) -> dict[str, Any]:
    """The next frame of `kind`, skipping others (presence, join, typing...)."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await receive(ws, timeout)
            if frame["type"] == kind:
                return frame


async def send(ws: ClientWebSocketResponse, **frame: Any) -> None:
    await ws.send_str(orjson.dumps(frame).decode())


async def join(ws: ClientWebSocketResponse, room: str, since: int | None = None) -> dict[str, Any]:
    """Join and return the history frame (the presence frame that follows is consumed too)."""
    await send(ws, type="join", room=room, since=since)
    history = await receive_type(ws, "history")
    await receive_type(ws, "presence")
    return history


async def chat(ws: ClientWebSocketResponse, room: str, text: str, **extra: Any) -> dict[str, Any]:
    """Send a message and wait for its ack (our own copy, matched by client_id)."""
    client_id = extra.pop("client_id", f"c-{text[:40]}-{id(text)}")
    await send(ws, type="chat", room=room, text=text, client_id=client_id, **extra)
    async with asyncio.timeout(5):
        while True:
            frame = await receive(ws)
            if frame["type"] == "error":
                return frame
            if frame["type"] == "chat" and frame.get("client_id") == client_id:
                return frame


async def expect_closed_as_too_slow(ws: ClientWebSocketResponse) -> None:
    """A socket the server gave up on: its backlog, then a close frame that says why (1013),
    unless even the close frame could not get through and the server dropped the TCP
    connection."""
    async with asyncio.timeout(10):
        msg = await ws.receive()
        while msg.type is WSMsgType.TEXT:
            msg = await ws.receive()
    assert msg.type in {WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR}
    if msg.type is WSMsgType.CLOSE:
        assert msg.data == WSCloseCode.TRY_AGAIN_LATER


def fail_batches_holding(monkeypatch: pytest.MonkeyPatch, text: str, error: Exception) -> None:
    """Make every group-commit batch that holds a message with `text` fail with `error`, as the
    database would (a constraint, a full disk); batches without it are stored as usual."""
    real_store = groupcommit.GroupCommit._store

    def failing(
        self: groupcommit.GroupCommit, db: sqlite3.Connection, batch: list[Append]
    ) -> list[Outcome]:
        if any(item.text == text for item in batch):
            raise error
        return real_store(self, db, batch)

    monkeypatch.setattr(groupcommit.GroupCommit, "_store", failing)


async def update(ws: ClientWebSocketResponse, **frame: Any) -> dict[str, Any]:
    """Send a change (edit, delete, react) and return the `update` or `error` that answers it."""
    await send(ws, **frame)
    while True:
        got = await receive(ws)
        if got["type"] in {"update", "error"}:
            return got
