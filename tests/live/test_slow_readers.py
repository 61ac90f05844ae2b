"""A reader that never reads is closed (1013) without delaying anyone else."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from chat.keys import HUB
from tests.conftest import ClientFactory
from tests.helpers import (
    Client,
    expect_closed_as_too_slow,
    join,
    receive,
    receive_type,
    send,
)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


@pytest.mark.parametrize(
    "settings_env",
    [{"SEND_QUEUE_SIZE": "16", "CHAT_RATE_PER_SECOND": "100000", "CHAT_BURST": "100000"}],
)
async def test_a_client_that_never_reads_is_closed_without_delaying_the_others(
    client: Client, bob: Client, new_client: ClientFactory, app: web.Application
) -> None:
    """The never-reading socket fills the kernel buffers, then its queue: it alone is closed
    with 1013, while every message reaches the reader in order."""
    sloth = await new_client("sloth")
    async with (
        client.ws_connect("/ws") as sender,
        bob.ws_connect("/ws") as reader,
        sloth.ws_connect("/ws", autoping=False) as never_reads,
    ):
        await join(sender, "general")
        await join(reader, "general")
        await join(never_reads, "general")
        hub = app[HUB]
        slow_conn = next(c for c in hub.connections.values() if c.username == "sloth")
        big = "x" * 3900
        received: list[int] = []
        count = 0
        # The sender reads its own echoes too, or it would be the slow one.
        drain = asyncio.create_task(_drain(sender))
        # Bounded: the slow socket must be closed long before this many messages.
        while not slow_conn.closing and count < 3000:
            count += 1
            await send(sender, type="chat", room="general", text=f"{count} {big}")
            while True:
                frame = await receive(reader)
                if frame["type"] == "chat":
                    received.append(frame["seq"])
                    break
        assert slow_conn.closing, "the slow reader was never closed"
        # While it is being closed the others go on undelayed.
        for _ in range(20):
            count += 1
            await send(sender, type="chat", room="general", text=f"{count} after")
            received.append((await receive_type(reader, "chat"))["seq"])
        assert received == list(range(1, count + 1))
        async with asyncio.timeout(10):
            while slow_conn.id in hub.connections:
                await asyncio.sleep(0.05)
        drain.cancel()
        await expect_closed_as_too_slow(never_reads)
