"""Dead peers are noticed: a socket that goes silent is pinged, and dropped if it never answers;
one that answers (as every browser does) stays open however long it is idle."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiohttp import WSMsgType, web

from chat.conversation import SocketSession
from chat.keys import HUB
from chat.live.connection import Connection
from tests.helpers import Client, chat, join

HEARTBEAT = 1.0  # the smallest HEARTBEAT_SECONDS allowed


@pytest.fixture
def settings_env() -> dict[str, object]:
    return {"HEARTBEAT_SECONDS": HEARTBEAT}


async def test_an_idle_peer_that_answers_pings_stays_and_its_own_pings_are_answered(
    client: Client,
) -> None:
    async with client.ws_connect("/ws") as ws:  # autoping: answers the server's pings
        await join(ws, "general")
        with pytest.raises(TimeoutError):
            # Reading answers the pings; nothing else arrives for 3 intervals.
            async with asyncio.timeout(3 * HEARTBEAT):
                await ws.receive()
        assert (await chat(ws, "general", "still here"))["text"] == "still here"
    async with client.ws_connect("/ws", autoping=False) as ws:
        await ws.ping(b"are you there")
        answer = await ws.receive(timeout=5)
        assert answer.type is WSMsgType.PONG and answer.data == b"are you there"


async def test_a_peer_that_answers_nothing_is_pinged_then_dropped(
    client: Client, app: web.Application
) -> None:
    hub = app[HUB]
    loop = asyncio.get_running_loop()
    async with client.ws_connect("/ws", autoping=False) as ws:  # never answers a ping
        await join(ws, "general")
        silent_since = loop.time()
        ping = await ws.receive(timeout=5 * HEARTBEAT)
        assert ping.type is WSMsgType.PING
        pinged_after = loop.time() - silent_since
        end = await ws.receive(timeout=5 * HEARTBEAT)
        dropped_after = loop.time() - silent_since
    assert end.type in {WSMsgType.CLOSED, WSMsgType.ERROR, WSMsgType.CLOSE}
    # Pinged after one quiet interval (the hub checks every half interval), dropped about
    # half an interval after that.
    assert pinged_after + 0.05 >= HEARTBEAT and pinged_after < 2 * HEARTBEAT
    assert dropped_after - pinged_after >= 0.4 * HEARTBEAT and dropped_after < 3 * HEARTBEAT
    async with asyncio.timeout(5):
        while len(hub):
            await asyncio.sleep(0.02)


async def test_a_closed_socket_leaves_nothing_alive_behind_it(
    client: Client, app: web.Application
) -> None:
    # The keep-alive sweep has checked it, and the group commit has stored its message: neither
    # may keep the socket (its session, request, parser...) alive once it is closed.
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        await chat(ws, "general", "the last message stored")
        await asyncio.sleep(0.6 * HEARTBEAT)  # one sweep, at least, while it was open
    hub = app[HUB]
    async with asyncio.timeout(5):
        while len(hub):
            await asyncio.sleep(0.01)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Connection | SocketSession)]
    assert alive == []
