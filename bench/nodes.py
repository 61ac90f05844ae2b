"""Several server processes: fan-out across nodes over one or two Redis shards (`fanout-nodes`),
and the many-room scenario against `serve --workers N` (`workers`). See bench/README.md.

All the nodes share one SQLite file (WAL) in a temporary folder: they run on this one host, as
`serve --workers N` does, and the bench has no PostgreSQL of its own; what is measured here is the
fan-out between nodes, which goes through Redis either way. Every chat process and every Redis is
pinned to CPU 0, the generator to CPU 1, as in the single-server scenarios.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp

from bench import scenarios
from bench.measure import Window
from bench.scenarios import Shape, drain, outcome, pace, quiesce
from bench.server import HOST, RedisServer, Server, login_all
from bench.wsclient import WSClient, connect

HEARD_RE = re.compile(rb"^chat_fanout_frames_heard(?:_total)? ([0-9.e+]+)$", re.MULTILINE)


async def frames_heard(http: aiohttp.ClientSession, port: int) -> int:
    """The node's own count of room frames it received from other nodes through Redis."""
    async with http.get(f"http://{HOST}:{port}/metrics") as r:
        body = await r.read()
    match = HEARD_RE.search(body)
    if match is None:
        raise RuntimeError(f"no chat_fanout_frames_heard in /metrics of :{port}")
    return int(float(match[1]))


async def commands_processed(redis: RedisServer) -> int:
    """Commands a Redis server has processed since it started (INFO stats)."""
    # Imported here: the single-server scenarios run without the redis package (chat[redis]).
    from redis.asyncio import Redis

    client = Redis(host=HOST, port=redis.port)
    try:
        return int((await client.info("stats"))["total_commands_processed"])
    finally:
        await client.aclose()


def placement(shape: Shape, nodes: int) -> list[int]:
    """The node of each member (member i of room i // members): a room's members alternate over
    `node_span` consecutive nodes starting at the room's own, so every room has members on
    several nodes and, with more nodes than that, each node serves only some of the rooms."""
    span = min(shape.node_span, nodes)
    members = shape.node_members
    return [
        (i // members + (i % members) % span) % nodes for i in range(shape.node_rooms * members)
    ]


def needed_per_node(
    clients: list[WSClient], node_of: list[int], nodes: int, members: int
) -> list[int]:
    """What each node had to hear from Redis: every message sent on another node in a room that
    has a member on this one (computed from who sits where and what each client sent)."""
    rooms = len(node_of) // members
    sent_from = [[0] * nodes for _ in range(rooms)]  # room -> node -> messages sent there
    served: list[set[int]] = [set() for _ in range(rooms)]
    for i, c in enumerate(clients):
        sent_from[i // members][node_of[i]] += c.sent
        served[i // members].add(node_of[i])
    needed = [0] * nodes
    for room in range(rooms):
        total = sum(sent_from[room])
        for node in served[room]:
            needed[node] += total - sent_from[room][node]
    return needed


async def open_spread(
    ports: list[int], node_of: list[int], cookies: list[str], rooms: list[str]
) -> list[WSClient]:
    """Client i on node node_of[i], joined to rooms[i]; 64 connecting at a time."""
    clients: list[WSClient | None] = [None] * len(rooms)
    work = iter(range(len(rooms)))

    async def worker() -> None:
        for i in work:
            c = await connect(HOST, ports[node_of[i]], cookies[i])
            await c.join(rooms[i])
            clients[i] = c

    await asyncio.gather(*(worker() for _ in range(64)))
    return [c for c in clients if c is not None]


async def fanout_nodes(shape: Shape, nodes: int, shards: int) -> dict[str, Any]:
    """`nodes` server processes on `shards` Redis, `node_rooms` rooms of `node_members` spread
    over them, every member sending: deliveries, latency, and per node the frames heard from
    Redis against the frames its members needed."""
    members = shape.node_members
    n = shape.node_rooms * members
    room_names = [f"nodes{r}" for r in range(shape.node_rooms)]
    rooms = [room_names[i // members] for i in range(n)]
    node_of = placement(shape, nodes)
    shared = Path(tempfile.mkdtemp(prefix="chat-bench-nodes-"))
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, shared, True)
        redis = [RedisServer() for _ in range(shards)]
        for r in redis:
            stack.callback(r.stop)
            await r.start()
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{shared / 'bench.sqlite3'}",
            "REDIS_URL": ",".join(r.url for r in redis),
        }
        servers = [Server("chat", extra_env={**env, "NODE_ID": f"bench{k}"}) for k in range(nodes)]
        for server in servers:
            stack.callback(server.stop)
        await servers[0].prepare(n, room_names)
        for server in servers:
            await server.start()
        ports = [s.port for s in servers]
        cookies = await login_all(ports[0], n)
        clients = await open_spread(ports, node_of, cookies, rooms)
        await quiesce(clients, shape.settle / 2)
        for i, c in enumerate(clients):
            c.measure(probe=i % 10 == 0, kernel_stamps=shape.kernel_stamps)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        heard0 = [await frames_heard(http, p) for p in ports]
        commands0 = [await commands_processed(r) for r in redis]
        window = Window(*(s.pid for s in servers), redis_pids=[r.pid for r in redis])
        sent = await pace(
            list(enumerate(clients)), shape.node_rate, shape.duration, rooms, shape.text_bytes,
            spread=True,
        )  # fmt: skip
        send_wall = time.monotonic() - window.t0
        in_window = sum(c.delivered for c in clients)
        expected = sent * members
        await drain(clients, expected, lambda: sum(c.delivered for c in clients))
        costs = window.stop()
        delivered = sum(c.delivered for c in clients)
        # Frames still on their way between nodes would show as a shortfall: let them land.
        await asyncio.sleep(shape.settle)
        heard = [await frames_heard(http, p) - h for p, h in zip(ports, heard0, strict=True)]
        commands = [await commands_processed(r) - c for r, c in zip(redis, commands0, strict=True)]
        needed = needed_per_node(clients, node_of, nodes, members)
        sent_on = [0] * nodes
        for c, k in zip(clients, node_of, strict=True):
            sent_on[k] += c.sent
        return {
            "scenario": f"fanout-nodes {nodes}x{shards} redis",
            "server": "chat",
            "nodes": nodes,
            "redis_shards": shards,
            "clients": n,
            "rooms": shape.node_rooms,
            "offered_per_s": round(n * shape.node_rate * members),
            "sent": sent,
            "delivered": delivered,
            "delivered_per_s": round(in_window / send_wall),
            "delivered_pct": round(100 * delivered / expected, 2) if expected else 0.0,
            "heard_per_node": heard,
            "needed_per_node": needed,
            # What each node would hear if every node heard every message of the chat.
            "whole_chat_per_node": [sent - sent_on[x] for x in range(nodes)],
            # Each shard's share of the work: how the rooms spread over the Redis servers.
            "redis_commands_per_shard": commands,
            "heard_ratio": round(sum(heard) / sum(needed), 3) if sum(needed) else None,
            **outcome(clients, delivered, costs),
        }


async def workers(shape: Shape, count: int) -> dict[str, Any]:
    """The many-room (ingest) scenario against one `serve --workers N` on one Redis (N = 1: one
    process with the Redis broker): CPU per delivery summed over the supervisor and its workers
    (Redis apart), and delivered/s."""
    async with AsyncExitStack() as stack:
        redis = RedisServer()
        stack.callback(redis.stop)
        await redis.start()
        return await scenarios.ingest(shape, workers=count, redis=[redis])
