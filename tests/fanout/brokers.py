"""What the tests of brokers in this process share (test_redis_broker, test_room_routing,
test_shards): settings with timeouts short enough for tests, a store with the rooms a test
needs, waiting for a condition, and nodes whose sockets join as the /ws handler has them join."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from chat.fanout.redis_broker import RedisBroker
from chat.live.connection import Connection
from chat.live.hub import Hub
from chat.live.protocol import chat_frame
from chat.models import User
from chat.settings import Settings
from chat.storage.store import Store
from tests.conftest import make_settings


def fast_settings(tmp_path: Path, redis_url: str, redis_prefix: str, **env: str) -> Settings:
    """A node on `redis_url` (one server or a list) that notices an outage, a gap and a silent
    server within a fraction of a second."""
    return make_settings(
        tmp_path,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        REDIS_BACKOFF_MAX_SECONDS="0.3",
        REDIS_TIMEOUT_SECONDS="0.5",
        FANOUT_GAP_SECONDS="0.1",
        PRESENCE_HEARTBEAT_SECONDS="0.3",
        **env,
    )


@asynccontextmanager
async def opened_store(settings: Settings, rooms: Iterable[str] = ()) -> AsyncIterator[Store]:
    """The nodes' one database, with `rooms` created (`general` always is)."""
    store = await Store.open(settings.database_url, history_limit=50)
    try:
        for room in rooms:
            await store.create_room(room, creator_id=None)
        yield store
    finally:
        await store.close()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


class Node:
    """One node's hub and broker, with sockets that join as the /ws handler has them join."""

    def __init__(self, store: Store, settings: Settings, user: User) -> None:
        self.hub = Hearing()
        self.store = store
        self.broker = RedisBroker(self.hub, store, settings)
        self.user = user

    async def start(self) -> None:
        await self.broker.start()
        await until(self.broker.all_subscribed)

    async def stop(self) -> None:
        await self.broker.stop()

    async def join(self, room: str) -> Connection:
        conn = Connection(web.WebSocketResponse(), self.user, "s", queue_limit=1000)
        self.hub.register(conn)
        self.hub.begin_join(conn, room)
        await self.broker.follow(room)
        _, position = await self.store.history(room, None)
        self.hub.finish_join(conn, room, "history", position)
        self.broker.joined(room, position.seq)
        return conn

    @property
    def heard(self) -> int:
        """Room frames this node received from Redis."""
        return self.hub.stats.frames_heard


class Hearing(Hub):
    """A hub that writes down what its rooms are given (once per message, whatever the number
    of members), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[tuple[str, int]] = []

    def deliver(self, room: str, payload: str, seq: int | None = None) -> int:
        if seq is not None and self.has_members(room):
            self.given.append((room, seq))
        return super().deliver(room, payload, seq)

    def seqs(self, room: str) -> list[int]:
        return [seq for r, seq in self.given if r == room]


@asynccontextmanager
async def two_nodes(store: Store, settings: Settings) -> AsyncIterator[tuple[Node, Node]]:
    """Two started nodes on one store, with alice's sockets."""
    alice = await store.create_user("alice", "not-a-real-hash")
    a, b = Node(store, settings, alice), Node(store, settings, alice)
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def publish(node: Node, room: str, text: str) -> int:
    message, _ = await node.store.append_message(room, node.user, text, None)
    node.broker.publish(room, chat_frame(message), message.seq)
    return message.seq
