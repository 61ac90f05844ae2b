"""Property tests: whatever a client sends, the parser only ever returns a frame or raises a
ChatError, and the live socket only ever answers with an error frame (or a normal reply) or a
defined close, without disturbing anyone else's stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.errors import ChatError
from chat.keys import HUB
from chat.live import protocol
from tests.conftest import ClientFactory
from tests.helpers import Client, join, receive, send

CLIENT_TYPES = ["join", "leave", "chat", "typing", "read", "delete", "edit", "react"]
SERVER_TYPES = {
    "chat", "history", "presence", "join", "leave", "typing", "receipt", "error", "update",
}  # fmt: skip
ERROR_CODES = {
    "bad_request", "unknown_type", "too_long", "no_such_room", "not_joined", "rate_limited",
    "forbidden", "no_such_message",
}  # fmt: skip
# Closes a client can cause on purpose: binary (1003), invalid UTF-8 (1007), too big (1009).
DEFINED_CLOSES = {1003, 1007, 1009}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 2**70 is valid JSON that no seq can be
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
room_names = st.sampled_from(["general", "nowhere", "", "Bad Name", "x" * 40]) | st.text(max_size=8)
# Objects shaped like client frames, with plausible and implausible field values mixed.
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_TYPES) | st.text(max_size=8)},
    optional={
        "room": room_names | json_values,
        "text": st.text(max_size=50) | json_values,
        "since": st.integers(min_value=-5, max_value=2**64) | json_values,
        "seq": st.integers(min_value=-5, max_value=2**64) | json_values,
        "typing": st.booleans() | json_values,
        "client_id": st.text(max_size=70) | json_values,
        "ref": st.text(max_size=70) | json_values,
    },
)


def dumps(value: Any) -> str:
    # The standard library writes what orjson refuses (NaN, 2**70): the server must cope.
    return json.dumps(value)


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, frame_like).map(dumps) | st.text() | st.binary())
def test_parser_returns_a_frame_or_raises_a_chat_error(data: str | bytes) -> None:
    try:
        frame = protocol.parse(data, max_text_chars=4000)
    except ChatError as exc:
        out = orjson.loads(protocol.error_frame(exc))
        assert out["type"] == "error" and out["code"] in ERROR_CODES and out["message"]
        return
    assert type(frame).__name__.lower() in CLIENT_TYPES


class Arena:
    """One fuzzing socket beside a quiet pair (talker and watcher) whose stream is checked."""

    def __init__(self, app: web.Application, fuzz: Client, talker: Client, watcher: Client):
        self.app = app
        self.fuzz_client = fuzz
        self.talker_client = talker
        self.watcher_client = watcher
        self.fuzz: aiohttp.ClientWebSocketResponse | None = None
        self.last_seq = 0
        self.probe = 0

    async def start(self) -> None:
        self.talker = await self.talker_client.ws_connect("/ws")
        self.watcher = await self.watcher_client.ws_connect("/ws")
        await join(self.talker, "general")
        history = await join(self.watcher, "general")
        self.last_seq = max([m["seq"] for m in history["messages"]], default=0)

    async def fuzz_socket(self) -> aiohttp.ClientWebSocketResponse:
        if self.fuzz is None or self.fuzz.closed:
            # Wait until the server has let go of the previous socket (the per-user cap).
            hub = self.app[HUB]
            for _ in range(100):
                if not any(c.username == "fuzzer" for c in hub.connections.values()):
                    break
                await _tick()
            self.fuzz = await self.fuzz_client.ws_connect("/ws")
        return self.fuzz

    async def stop(self) -> None:
        for ws in (self.fuzz, self.talker, self.watcher):
            if ws is not None:
                await ws.close()

    async def check_fuzz_reply(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read until the probe's answer: every frame on the way must be well-formed. Frames
        are handled in order, so once the probe is answered the payload was fully handled."""
        self.probe += 1
        ref = f"probe-{self.probe}"
        with contextlib.suppress(ConnectionError):  # closed already: the close tells why
            await send(ws, type="leave", room="zz-probe", ref=ref)
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is WSMsgType.CLOSE:
                assert msg.data in DEFINED_CLOSES, f"undefined close {msg.data} {msg.extra}"
                return
            assert msg.type is WSMsgType.TEXT, msg
            for line in msg.data.split("\n"):
                frame = orjson.loads(line)
                assert frame["type"] in SERVER_TYPES, frame
                if frame["type"] == "error":
                    assert frame["code"] in ERROR_CODES and frame["message"], frame
                    if frame.get("ref") == ref:
                        assert frame["code"] == "not_joined"
                        return

    async def check_bystanders(self) -> None:
        """The talker's next message reaches the watcher, and every chat the watcher saw on the
        way has the next seq (the fuzzer may have chatted legitimately): no gap, no error."""
        self.probe += 1
        client_id = f"bystander-{self.probe}"
        await send(self.talker, type="chat", room="general", text="still fine", client_id=client_id)
        while True:
            frame = await receive(self.watcher)
            assert frame["type"] != "error", frame
            if frame["type"] == "chat":
                assert frame["seq"] == self.last_seq + 1, frame
                self.last_seq = frame["seq"]
                if frame.get("client_id") == client_id:
                    break
        # The talker drains its own stream so it is never the slow one.
        while (await receive(self.talker)).get("client_id") != client_id:
            pass


async def _tick() -> None:
    await asyncio.sleep(0.01)


@pytest.fixture
async def arena(
    client: Client, new_client: ClientFactory, app: web.Application
) -> AsyncIterator[Arena]:
    a = Arena(
        app, await new_client("fuzzer"), await new_client("talker"), await new_client("watcher")
    )
    await a.start()
    yield a
    await a.stop()


payloads = (
    st.one_of(json_values, frame_like).map(lambda v: ("text", dumps(v)))
    | st.text(max_size=200).map(lambda t: ("text", t))
    | st.binary(max_size=200).map(lambda b: ("binary", b))
    | st.binary(min_size=1, max_size=50).map(lambda b: ("raw-text", b + b"\xff"))
    | st.integers(min_value=17 * 1024, max_value=40 * 1024).map(lambda n: ("text", "x" * n))
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=payloads)
async def test_live_socket_answers_anything_without_disturbing_others(
    arena: Arena, payload: tuple[str, str | bytes], caplog: pytest.LogCaptureFixture
) -> None:
    kind, data = payload
    ws = await arena.fuzz_socket()
    if kind == "text":
        assert isinstance(data, str)
        await ws.send_str(data)
    elif kind == "binary":
        assert isinstance(data, bytes)
        await ws.send_bytes(data)
    else:  # a text frame that is not UTF-8
        assert isinstance(data, bytes)
        await ws.send_frame(data, WSMsgType.TEXT)
    await arena.check_fuzz_reply(ws)
    await arena.check_bystanders()
    # Nothing escaped a handler: no error was logged by the server.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
