"""The single-server scenarios (the reconnect storm is in bench/storm.py, several nodes in
bench/nodes.py, the ceiling in bench/ceiling.py). Each starts its own server (fresh database),
sets up its clients, measures one bounded window and returns one result row (a dict)."""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import Window, percentiles
from bench.server import HOST, RedisServer, Server, login_all, rss_bytes
from bench.wsclient import WSClient, connect


@dataclass(frozen=True)
class Shape:
    """Sizes of every scenario; `quick()` is the smoke-test shape."""

    clients: int = 1000
    senders: int = 10
    rates: tuple[int, ...] = (10, 30, 100)
    duration: float = 10.0
    ingest_rooms: int = 100
    ingest_members: int = 10
    ingest_rate: float = 10.0
    idle: int = 5000
    connect: int = 1000
    # Clients that join one room at once (a reconnect storm after a restart).
    storm: int = 10000
    text_bytes: int = 100
    # Senders in step (bursts) or evenly out of phase; see `pace`.
    spread: bool = False
    # Latency ends at the kernel's receive stamp (True) or when the generator reads the data.
    kernel_stamps: bool = True
    # Pauses that let the server settle before a measurement (idle RSS, join announcements).
    settle: float = 1.0
    # Broadcast: spread senders (the headline row) and senders in step, unless --spread/--in-step.
    broadcast_modes: tuple[bool, ...] = (True, False)
    # fanout-nodes: server processes x Redis shards; rooms of members, each room's members
    # alternating over `node_span` consecutive nodes; every member sending `node_rate` msg/s.
    node_counts: tuple[int, ...] = (2, 4)
    shard_counts: tuple[int, ...] = (1, 2)
    node_rooms: int = 200
    node_members: int = 10
    node_span: int = 2
    node_rate: float = 0.5
    # workers: the ingest scenario against `serve --workers N`.
    workers: int = 2
    # ceiling: idle connections in one process, a broadcast to a room of up to `ceiling_room`.
    ceiling: int = 50000
    ceiling_room: int = 10000
    # Sockets per loopback source address (127.0.0.2, .3, ...): inside the ephemeral port range.
    ceiling_per_source: int = 20000

    @classmethod
    def quick(cls) -> Shape:
        return cls(
            clients=20,
            senders=4,
            rates=(20,),
            duration=1.5,
            ingest_rooms=3,
            ingest_members=3,
            ingest_rate=5.0,
            idle=50,
            connect=20,
            storm=40,
            settle=0.2,
            node_counts=(2,),
            shard_counts=(1,),
            node_rooms=4,
            node_members=4,
            node_rate=2.0,
            ceiling=60,
            ceiling_room=30,
            ceiling_per_source=25,  # three source addresses
        )


async def open_clients(
    port: int,
    cookies: Sequence[str | None],
    rooms: Sequence[str],
    concurrency: int = 64,
) -> tuple[list[WSClient], list[float]]:
    """One client per (cookie, room) pair, connected and joined; also each one's connect+join
    time."""
    clients: list[WSClient | None] = [None] * len(rooms)
    times: list[float] = []
    work = iter(range(len(rooms)))

    async def worker() -> None:
        for i in work:
            t = time.monotonic()
            c = await connect(HOST, port, cookies[i % len(cookies)])
            await c.join(rooms[i])
            times.append(time.monotonic() - t)
            clients[i] = c

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [c for c in clients if c is not None], times


async def quiesce(clients: Sequence[WSClient], quiet: float, limit: float = 30.0) -> None:
    """Wait until the join announcements stop arriving, then drop what was parsed."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(len(c.docs) for c in clients)
        await asyncio.sleep(quiet)
        if sum(len(c.docs) for c in clients) == before:
            break
    for c in clients:
        c.docs.clear()


def make_text(n_bytes: int, tag: str) -> bytes:
    # Wall clock: the receive side compares it with the kernel's SO_TIMESTAMPNS stamps.
    head = f"{time.time_ns()} {tag} "
    return (head + "x" * max(0, n_bytes - len(head))).encode()


async def pace(
    senders: Sequence[tuple[int, WSClient]],
    rate: float,
    duration: float,
    room_of: Sequence[str],
    text_bytes: int,
    spread: bool = False,
) -> int:
    """Every sender sends `rate` messages per second for `duration` seconds; return how many.

    By default the senders are in step: all of them send at the same instants, so the server
    sees bursts of `len(senders)` messages. With `spread`, sender j is j/len(senders) of a
    period behind sender 0, so messages arrive evenly."""
    sent = [0] * len(senders)
    phase = [j / len(senders) if spread else 0.0 for j in range(len(senders))]
    t0 = time.monotonic()
    total = 0
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= duration:
            break
        for j, (idx, client) in enumerate(senders):
            due = int(elapsed * rate + 1 - phase[j])
            while sent[j] < due:
                k = sent[j]
                sent[j] += 1
                if client.closed_fut.done():
                    continue  # dropped by the server: counted as such, sends no more
                text = make_text(text_bytes, f"c{idx}-{k}")
                client.sent += 1
                client.send_raw(
                    b'{"type":"chat","room":"%s","text":"%s","client_id":"c%d-%d"}'
                    % (room_of[idx].encode(), text, idx, k)
                )
                total += 1
        await asyncio.sleep(0.005)
    return total


async def drain(
    clients: Sequence[WSClient], expected: int, count: Any, limit: float = 10.0
) -> None:
    """Wait for the tail: until everything expected arrived or nothing moved for 1 s."""
    deadline = time.monotonic() + limit
    last, still = -1, 0.0
    while time.monotonic() < deadline:
        now = count()
        if now >= expected:
            return
        if now == last:
            still += 0.1
            if still >= 1.0:
                return
        else:
            last, still = now, 0.0
        await asyncio.sleep(0.1)


async def broadcast(kind: str, shape: Shape, rate: int) -> dict[str, Any]:
    """`clients` in one room, `senders` of them sending `rate` msg/s each."""
    n = shape.clients
    async with Server(kind) as server:
        await server.prepare(n, [])
        await server.start()
        cookies: list[str | None] = (
            list(await login_all(server.port, n)) if kind == "chat" else [None]
        )
        rooms = ["general"] * n
        clients, _ = await open_clients(server.port, cookies, rooms)
        await quiesce(clients, shape.settle / 2)
        for i, c in enumerate(clients):
            c.measure(probe=i % 10 == 0, kernel_stamps=shape.kernel_stamps)
        senders = list(enumerate(clients[: shape.senders]))
        window = Window(server.pid)
        sent = await pace(senders, rate, shape.duration, rooms, shape.text_bytes, shape.spread)
        send_wall = time.monotonic() - window.t0
        in_window = sum(c.delivered for c in clients)
        expected = sent * n

        def count() -> int:
            return sum(c.delivered for c in clients)

        await drain(clients, expected, count)
        costs = window.stop()
        delivered = count()
        return {
            "scenario": f"broadcast {rate}/s"
            + (" spread" if shape.spread else "")
            + (" [baseline]" if kind == "baseline" else ""),
            "server": kind,
            "spread": shape.spread,
            "clients": n,
            "senders": shape.senders,
            "offered_per_s": shape.senders * rate * n,
            "sent": sent,
            "delivered": delivered,
            "delivered_per_s": round(in_window / send_wall),
            "delivered_pct": round(100 * delivered / expected, 2) if expected else 0.0,
            **outcome(clients, delivered, costs),
        }


def outcome(clients: list[Any], delivered: int, costs: dict[str, Any]) -> dict[str, Any]:
    """What every load scenario reports of its clients and the server's cost; closes the clients."""
    result = {
        "dropped": sum(1 for c in clients if c.closed_fut.done()),
        "errors": sum(c.errors for c in clients),
        # Chat documents for a (room, seq) the client had already seen: not counted as delivered.
        "repeats": sum(c.repeats for c in clients),
        **percentiles(c.latencies for c in clients if c.latencies is not None),
        "cpu_s_per_1m": round(costs["server_cpu_s"] / delivered * 1e6, 2) if delivered else None,
        **costs,
    }
    for c in clients:
        c.close()
    return result


async def ingest(
    shape: Shape, workers: int = 1, redis: Sequence[RedisServer] = ()
) -> dict[str, Any]:
    """`ingest_rooms` rooms x `ingest_members`, every member sending: stored-and-acked msgs/s.
    With `workers` > 1, against `serve --workers N` sharing `redis` (its CPU reported apart)."""
    n = shape.ingest_rooms * shape.ingest_members
    room_names = [f"ingest{r}" for r in range(shape.ingest_rooms)]
    env = {"REDIS_URL": ",".join(r.url for r in redis)} if redis else {}
    async with Server("chat", extra_env=env, workers=workers) as server:
        await server.prepare(n, room_names)
        await server.start()
        cookies: list[str | None] = list(await login_all(server.port, n))
        rooms = [room_names[i // shape.ingest_members] for i in range(n)]
        clients, _ = await open_clients(server.port, cookies, rooms)
        await quiesce(clients, shape.settle / 2)
        for i, c in enumerate(clients):
            c.ack_mark = b'"client_id":"c%d-' % i
            c.measure(probe=False, kernel_stamps=shape.kernel_stamps)
        pids = server.pids()
        window = Window(*pids, redis_pids=[r.pid for r in redis])
        sent = await pace(
            list(enumerate(clients)),
            shape.ingest_rate,
            shape.duration,
            rooms,
            shape.text_bytes,
            shape.spread,
        )
        send_wall = time.monotonic() - window.t0
        acked_in_window = sum(c.acks for c in clients)
        await drain(clients, sent, lambda: sum(c.acks for c in clients))
        costs = window.stop()
        acked = sum(c.acks for c in clients)
        delivered = sum(c.delivered for c in clients)
        return {
            "scenario": ("ingest spread" if shape.spread else "ingest")
            + (f" --workers {workers}" if workers > 1 else " on redis" if redis else ""),
            "server": "chat",
            "workers": workers,
            "server_processes": len(pids),
            "clients": n,
            "rooms": shape.ingest_rooms,
            "offered_per_s": round(n * shape.ingest_rate),
            "sent": sent,
            "acked": acked,
            "acked_per_s": round(acked_in_window / send_wall),
            "acked_pct": round(100 * acked / sent, 2) if sent else 0.0,
            "delivered": delivered,
            "delivered_per_s": round(delivered / costs["wall_s"]),
            "delivered_pct": round(100 * delivered / (sent * shape.ingest_members), 2)
            if sent
            else 0.0,
            **outcome(clients, delivered, costs),
        }


async def idle(shape: Shape) -> dict[str, Any]:
    """`idle` authenticated connections joined to rooms; server RSS per connection."""
    n = shape.idle
    accounts = max(1, n // 5)  # five tabs per person
    room_names = [f"idle{r}" for r in range(10)]
    async with Server("chat") as server:
        await server.prepare(accounts, room_names)
        await server.start()
        cookies: list[str | None] = list(await login_all(server.port, accounts))
        # Warm up: one connection + join so the first-use allocations are not counted.
        warm, _ = await open_clients(server.port, cookies, ["general"], concurrency=1)
        await asyncio.sleep(shape.settle / 2)
        rss0 = rss_bytes(server.pid)
        window = Window(server.pid)
        rooms = [room_names[i % len(room_names)] for i in range(n)]
        clients, _ = await open_clients(server.port, cookies, rooms, concurrency=100)
        await quiesce(clients, shape.settle)
        await asyncio.sleep(shape.settle)
        rss1 = rss_bytes(server.pid)
        costs = window.stop()
        dropped = sum(1 for c in clients if c.closed_fut.done())
        for c in clients + warm:
            c.close()
        return {
            "scenario": "idle",
            "server": "chat",
            "clients": n,
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_after_mib": round(rss1 / 2**20, 1),
            "rss_per_conn_kib": round((rss1 - rss0) / n / 1024, 2),
            "dropped": dropped,
            **costs,
        }


async def connect_rate(shape: Shape) -> dict[str, Any]:
    """Authenticated upgrades + joins per second (cookies from /login beforehand)."""
    n = shape.connect
    accounts = max(1, n // 2)
    room_names = [f"c{r}" for r in range(100)]
    async with Server("chat") as server:
        await server.prepare(accounts, room_names)
        await server.start()
        cookies: list[str | None] = list(await login_all(server.port, accounts))
        window = Window(server.pid)
        rooms = [room_names[i % len(room_names)] for i in range(n)]
        clients, times = await open_clients(server.port, cookies, rooms, concurrency=64)
        costs = window.stop()
        dropped = sum(1 for c in clients if c.closed_fut.done())
        for c in clients:
            c.close()
        lat = array("q", (int(t * 1e9) for t in times))
        return {
            "scenario": "connect",
            "server": "chat",
            "clients": n,
            "connects_per_s": round(len(clients) / costs["wall_s"]),
            "dropped": dropped,
            **percentiles([lat]),
            "server_cpu_ms_per_connect": round(costs["server_cpu_s"] / len(clients) * 1000, 3),
            **costs,
        }
