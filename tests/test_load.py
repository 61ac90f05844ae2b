"""Load and fault proofs, bounded in count and time, loopback only: a flood, churn, and a slow
reader. Each asserts what was lost (nothing) and what was left behind (nothing)."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import sys
import time
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSMsgType, web

from chat.keys import HUB, LIMITS, METRICS, PRESENCE, STORE
from tests.conftest import ClientFactory
from tests.helpers import (
    Client,
    create_room,
    expect_closed_as_too_slow,
    join,
    receive,
    receive_type,
    send,
)

# The issue asks for 30 s of churn; the normal suite runs a shorter one to stay within CI's
# budget. CHAT_CHURN_SECONDS=30 runs the full one.
CHURN_SECONDS = float(os.environ.get("CHAT_CHURN_SECONDS", "12"))


async def _collect(ws: aiohttp.ClientWebSocketResponse, into: list[dict[str, Any]]) -> None:
    async for msg in ws:
        if msg.type is WSMsgType.TEXT:
            into.extend(orjson.loads(line) for line in msg.data.split("\n"))


@pytest.mark.parametrize(
    "settings_env", [{"CHAT_RATE_PER_SECOND": "10", "CHAT_BURST": "20", "HISTORY_LIMIT": "1000"}]
)
async def test_flood_from_one_client_loses_nothing_of_the_others(
    client: Client, new_client: ClientFactory, app: web.Application
) -> None:
    """One client sends 1,000 messages as fast as it can (50x the burst); three others chat
    normally. Every message of the three arrives at a watcher, in order, none lost; the flooder
    gets `rate_limited` errors and keeps its socket."""
    flooder = await new_client("flooder")
    honest = [await new_client(f"honest{i}") for i in range(3)]
    watcher = await new_client("watcher")
    flood_count, honest_count = 1000, 15
    async with (
        flooder.ws_connect("/ws") as f,
        watcher.ws_connect("/ws") as w,
        honest[0].ws_connect("/ws") as h0,
        honest[1].ws_connect("/ws") as h1,
        honest[2].ws_connect("/ws") as h2,
    ):
        sockets = [h0, h1, h2]
        for ws in (f, w, *sockets):
            await join(ws, "general")
        flood_frames: list[dict[str, Any]] = []
        seen: list[dict[str, Any]] = []
        honest_frames: list[list[dict[str, Any]]] = [[], [], []]
        readers = [
            asyncio.create_task(_collect(f, flood_frames)),
            asyncio.create_task(_collect(w, seen)),
            *(asyncio.create_task(_collect(s, honest_frames[i])) for i, s in enumerate(sockets)),
        ]

        async def flood() -> None:
            for i in range(flood_count):
                await send(f, type="chat", room="general", text=f"flood {i}", client_id=f"f{i}")

        async def talk(i: int) -> None:
            for n in range(honest_count):
                await send(sockets[i], type="chat", room="general", text=f"h{i} {n}")
                await asyncio.sleep(0.02)

        started = time.monotonic()
        await asyncio.gather(flood(), *(talk(i) for i in range(3)))
        total_honest = 3 * honest_count
        async with asyncio.timeout(20):
            while (
                len([x for x in seen if x["type"] == "chat" and x["user"] != "flooder"])
                < (total_honest)
                or len([x for x in flood_frames if x["type"] in {"chat", "error"}]) < flood_count
            ):
                await asyncio.sleep(0.05)
        flood_seconds = time.monotonic() - started
        # The flooder is still connected: after waiting its turn, it may talk again.
        assert not f.closed
        errors = [x for x in flood_frames if x["type"] == "error"]
        assert errors and {e["code"] for e in errors} == {"rate_limited"}
        await asyncio.sleep(max(e["retry_after"] for e in errors[-1:]) + 0.05)
        await send(f, type="chat", room="general", text="calm now", client_id="calm")
        async with asyncio.timeout(5):
            while not any(x.get("client_id") == "calm" for x in flood_frames):
                await asyncio.sleep(0.02)
        for task in readers:
            task.cancel()
    chats = [x for x in seen if x["type"] == "chat"]
    # Nothing lost, nothing doubled: seqs rise by one, each sender's messages in its order.
    assert [c["seq"] for c in chats] == list(range(1, len(chats) + 1))
    for i in range(3):
        assert [c["text"] for c in chats if c["user"] == f"honest{i}"] == [
            f"h{i} {n}" for n in range(honest_count)
        ]
    accepted = [c for c in chats if c["user"] == "flooder" and c["text"] != "calm now"]
    assert len(accepted) + len(errors) == flood_count
    # The burst plus what trickled in at 10/s while the flood lasted; far below the flood.
    assert 20 <= len(accepted) <= 20 + 10 * flood_seconds + 1
    stored, _ = await app[STORE].history("general", None)
    assert [m.seq for m in stored] == [c["seq"] for c in chats]
    # The operator sees it too: every refusal is counted.
    hits = app[METRICS].registry.get_sample_value("chat_rate_limit_hits_total", {"limit": "chat"})
    assert hits == len(errors)


@pytest.mark.parametrize("settings_env", [{"REGISTRATIONS_PER_HOUR": "100"}])
async def test_churn_leaves_nothing_behind(
    client: Client, new_client: ClientFactory, app: web.Application
) -> None:
    """300 clients connect, join, chat, type and disconnect over and over for CHURN_SECONDS.
    Afterwards no connection, room entry, task, presence entry or limiter key is left, and
    memory is back near the baseline."""
    rooms = ["general"] + [f"churn-{i}" for i in range(4)]
    for name in rooms[1:]:
        await create_room(client, name)
    users = [await new_client(f"churner{i}") for i in range(30)]
    hub = app[HUB]
    presence = app[PRESENCE]
    cycles = 0
    acked = 0

    async def one_tab(user: Client, rng: random.Random, deadline: float) -> None:
        nonlocal cycles, acked
        while time.monotonic() < deadline:
            room = rng.choice(rooms)
            # Through the plain session: the test client would keep every socket for teardown,
            # and that client-side memory would hide what the server does.
            async with user.session.ws_connect(user.make_url("/ws")) as ws:
                await send(ws, type="join", room=room)
                await receive_type(ws, "history", timeout=30)
                if rng.random() < 0.5:
                    await send(ws, type="typing", room=room, typing=True)
                client_id = f"c{rng.random()}"
                await send(ws, type="chat", room=room, text="churn", client_id=client_id)
                async with asyncio.timeout(30):
                    while True:
                        frame = await receive(ws, timeout=30)
                        if frame.get("client_id") == client_id:
                            acked += 1
                            break
                        assert frame["type"] != "error" or frame["code"] == "rate_limited"
                # Sometimes leave politely, sometimes just vanish mid-conversation.
                if rng.random() < 0.3:
                    await send(ws, type="leave", room=room)
            cycles += 1

    async def churn(seconds: float, seed: int) -> None:
        deadline = time.monotonic() + seconds
        rng = random.Random(seed)
        tabs = [
            one_tab(users[i % len(users)], random.Random(rng.random()), deadline)
            for i in range(300)
        ]
        await asyncio.gather(*tabs)

    async def settled() -> None:
        async with asyncio.timeout(20):
            while hub.connections or hub.room_names() or hub.task_count:
                await asyncio.sleep(0.05)
        assert await presence.connections() == []
        assert await presence.room_counts() == {}
        assert len(app[LIMITS].typing) == 0

    # Warm-up: caches, pools and the like fill up once; they are not leaks.
    await churn(1.0, 1)
    await settled()
    tasks_before = len(asyncio.all_tasks())
    objects_before, blocks_before, rss_before = memory()
    started = time.monotonic()
    cycles = acked = 0
    await churn(CHURN_SECONDS, 2)
    elapsed = time.monotonic() - started
    await settled()
    objects_after, blocks_after, rss_after = memory()
    print(
        f"churn: {CHURN_SECONDS:.0f} s, 300 clients, {cycles} connect/join/chat/leave cycles "
        f"({cycles / elapsed:.0f}/s), {acked} messages acked; allocated blocks "
        f"{blocks_before} -> {blocks_after}, gc objects {objects_before} -> {objects_after}, "
        f"RSS {rss_before / 1e6:.1f} -> {rss_after / 1e6:.1f} MB"
    )
    assert cycles >= 300  # every tab went round at least once
    assert acked == cycles
    assert len(asyncio.all_tasks()) <= tasks_before
    # Near the baseline: every memory block Python allocated (objects, strings, buffers) is
    # counted, so a per-connection leak of even one small object would show as thousands.
    assert blocks_after - blocks_before < 2000, "memory blocks still held after churn"
    assert objects_after - objects_before < 500, "objects still alive after churn"


def memory() -> tuple[int, int, int]:
    """Live gc-tracked objects, allocated memory blocks (any size), resident bytes (shown only:
    the allocator keeps freed arenas, so RSS does not shrink back)."""
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return len(gc.get_objects()), sys.getallocatedblocks(), rss


@pytest.mark.parametrize(
    "settings_env",
    [{"SEND_QUEUE_SIZE": "16", "CHAT_RATE_PER_SECOND": "100000", "CHAT_BURST": "100000"}],
)
async def test_slow_reader_is_closed_1013_and_others_latency_stays_flat(
    client: Client, bob: Client, new_client: ClientFactory, app: web.Application
) -> None:
    """Latency of sender -> reader is measured before the slow reader joins (the baseline),
    while it fills its buffers and queue, and after it is closed with 1013; the medians while
    and after must stay within a small factor of this run's own baseline."""
    sloth = await new_client("sloth")
    big = "x" * 3900
    hub = app[HUB]
    async with client.ws_connect("/ws") as sender, bob.ws_connect("/ws") as reader:
        await join(sender, "general")
        await join(reader, "general")
        drain = asyncio.create_task(_collect(sender, []))
        count = 0

        async def round_trip() -> float:
            nonlocal count
            count += 1
            started = time.perf_counter()
            await send(sender, type="chat", room="general", text=f"{count} {big}")
            frame = await receive_type(reader, "chat")
            assert frame["seq"] == count  # in order, none lost
            return time.perf_counter() - started

        for _ in range(10):  # warm-up
            await round_trip()
        baseline = [await round_trip() for _ in range(60)]
        async with sloth.ws_connect("/ws", autoping=False) as never_reads:
            await join(never_reads, "general")
            slow = next(c for c in hub.connections.values() if c.username == "sloth")
            during: list[float] = []
            while not slow.closing and len(during) < 3000:  # bounded
                during.append(await round_trip())
            assert slow.closing, "the slow reader was never closed"
            after = [await round_trip() for _ in range(60)]
            async with asyncio.timeout(10):
                while slow.id in hub.connections:
                    await asyncio.sleep(0.05)
            await expect_closed_as_too_slow(never_reads)
        drain.cancel()
    # Counted for the operator: one slow-consumer close, and the frames it never got.
    assert hub.stats.slow_closes == 1 and hub.stats.frames_dropped > 0
    body, _ = app[METRICS].exposition()
    assert b"chat_slow_consumer_closes_total 1.0" in body
    base = statistics.median(baseline)
    mid = statistics.median(during)
    end = statistics.median(after)
    print(
        f"slow reader: closed after {len(during)} messages; median latency baseline "
        f"{base * 1e3:.2f} ms, while filling {mid * 1e3:.2f} ms, after {end * 1e3:.2f} ms"
    )
    assert mid <= 3 * base, (base, mid)
    assert end <= 3 * base, (base, end)
