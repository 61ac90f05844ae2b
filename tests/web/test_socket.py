"""The `/ws` endpoint: checks before the upgrade, protocol abuse, the per-user cap, closing,
and what an open socket keeps in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from chat.app import create_app
from chat.keys import HUB
from chat.live.aiohttp_private import upgrade_leftovers
from tests.conftest import make_settings
from tests.helpers import (
    Client,
    chat,
    join,
    register,
)


async def test_upgrade_without_session_is_401(anon: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await anon.ws_connect("/ws")
    assert info.value.status == 401


async def test_upgrade_from_foreign_origin_is_403(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    assert info.value.status == 403


async def test_upgrade_from_own_origin_is_accepted(client: Client) -> None:
    origin = f"http://{client.host}:{client.port}"
    async with client.ws_connect("/ws", headers={"Origin": origin}) as ws:
        history = await join(ws, "general")
        assert history["room"] == "general"


@pytest.mark.parametrize("settings_env", [{"ALLOWED_ORIGINS": "https://chat.example.com"}])
async def test_upgrade_from_allowed_origin_is_accepted(client: Client) -> None:
    async with client.ws_connect("/ws", headers={"Origin": "https://chat.example.com"}) as ws:
        await join(ws, "general")


async def test_binary_frame_closes_with_1003(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_bytes(b"\x00\x01")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.UNSUPPORTED_DATA


async def test_oversized_frame_closes_with_1009(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_str('{"type":"chat","room":"general","text":"' + "x" * 20000 + '"}')
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_shutdown_closes_every_socket_with_going_away(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    app = create_app(make_settings(tmp_path))
    server = await aiohttp_server(app)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
    await register(client, "alice")
    ws = await client.ws_connect("/ws")
    await join(ws, "general")
    await server.close()
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()


@pytest.mark.parametrize("settings_env", [{"MAX_CONNECTIONS_PER_USER": "2"}])
async def test_connections_per_user_are_capped(client: Client) -> None:
    async with client.ws_connect("/ws"), client.ws_connect("/ws"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect("/ws")
        assert info.value.status == 429


async def test_logout_closes_that_sessions_sockets(client: Client) -> None:
    from tests.helpers import csrf

    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        token = await csrf(client, "/")
        await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION


def _awaiting(task: asyncio.Task[Any]) -> list[Any]:
    """The coroutines a task is suspended in, outermost first."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        chain.append(coro)
        coro = coro.cr_await
    return chain


def _module(coro: Any) -> str:
    return str(coro.cr_frame.f_globals["__name__"])


def _socket_handler_chain() -> list[Any]:
    for task in asyncio.all_tasks():
        chain = _awaiting(task)
        if any(_module(c) == "chat.web.socket" and c.cr_code.co_name == "websocket" for c in chain):
            return chain
    raise AssertionError("no task is running the /ws handler")


async def test_an_open_socket_keeps_no_middleware_frame_and_no_upgrade_leftovers(
    client: Client,
) -> None:
    """Idle sockets are counted by the thousand: while one is open, nothing that only served
    its upgrade stays in memory (see chat.web.middlewares and chat.live.aiohttp_private)."""
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        chain = _socket_handler_chain()
        modules = [_module(c) for c in chain]
        assert not {
            "chat.web.middlewares",
            "chat.web.auth",
            "chat.web.login",
            "aiohttp_session",
        } & set(modules), modules
        handler = next(c for c in chain if _module(c) == "chat.web.socket")
        request = handler.cr_frame.f_locals["request"]
        assert len(request) == 0  # the session and the cached user
        # ...the values parsed from it, and aiohttp's HTTP parser (if aiohttp renames what this
        # looks at, tests/live/test_aiohttp_private.py says so).
        assert upgrade_leftovers(request) == []
        # ...and the socket works as before.
        assert (await chat(ws, "general", "still here"))["text"] == "still here"


async def test_tabs_of_one_person_share_one_user_record(
    client: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as a, client.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        first, second = app[HUB].connections.values()
        assert first.user is second.user
