"""Per-room routing on a real redis-server: a node hears only the rooms it has members in,
counted from what it received from Redis; its subscriptions follow joins and leaves (after the
grace period) and survive Redis restarting, and nothing is lost or doubled on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from redis.asyncio import Redis

from chat.fanout.redis_broker import RedisBroker
from chat.live.connection import Connection
from chat.live.hub import Hub
from chat.live.protocol import chat_frame
from chat.models import User
from chat.settings import Settings
from chat.storage.store import Store
from tests.fanout.brokers import fast_settings, opened_store, until
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return fast_settings(tmp_path, redis_url, redis_prefix, ROOM_UNSUBSCRIBE_SECONDS="0.3")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with opened_store(settings, ["random"]) as store:
        yield store


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


@pytest.fixture
async def nodes(store: Store, settings: Settings) -> AsyncIterator[tuple[Node, Node]]:
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


async def subscribers(settings: Settings, room: str) -> int:
    redis = Redis.from_url(settings.redis_url or "")
    try:
        counts = await redis.pubsub_numsub(f"{settings.redis_prefix}:room:{room}")
    finally:
        await redis.aclose()
    return int(counts[0][1])


async def test_a_node_hears_only_the_rooms_it_has_members_in(
    nodes: tuple[Node, Node], settings: Settings
) -> None:
    a, b = nodes
    await a.join("general")
    await a.join("random")
    await b.join("general")
    for i in range(20):
        await publish(a, "random", f"r{i}")  # nobody on b is in random
    await publish(a, "general", "g")
    await until(lambda: b.hub.seqs("general") == [1])
    await asyncio.sleep(0.2)  # room for a stray frame of random to arrive; none may
    assert b.heard == 1  # the one general message, not the twenty of random
    assert await subscribers(settings, "random") == 1
    assert await subscribers(settings, "general") == 2


async def test_subscriptions_follow_joins_and_leaves_after_the_grace_period(
    nodes: tuple[Node, Node], settings: Settings
) -> None:
    a, b = nodes
    await a.join("general")
    first = await b.join("general")
    b.hub.leave(first, "general")
    again = await b.join("general")  # a reload within the grace period: still subscribed
    await publish(a, "general", "one")
    await until(lambda: b.hub.seqs("general") == [1])
    b.hub.leave(again, "general")
    await until(lambda: "general" not in b.broker.rooms, timeout=5)
    assert await subscribers(settings, "general") == 1
    heard = b.heard
    await publish(a, "general", "two")  # b has nobody there: it never receives it
    await asyncio.sleep(0.2)
    assert b.heard == heard
    await b.join("general")  # subscribed again; history up to 2, then on from there
    await publish(a, "general", "three")
    await until(lambda: b.hub.seqs("general") == [1, 3])
    await asyncio.sleep(0.2)
    assert b.hub.seqs("general") == [1, 3]


async def test_subscriptions_survive_redis_restarting_and_nothing_is_lost(
    nodes: tuple[Node, Node], settings: Settings, redis_server: RedisServer
) -> None:
    a, b = nodes
    await a.join("general")
    await b.join("random")
    await b.join("general")
    await publish(a, "random", "before")
    await until(lambda: b.hub.seqs("random") == [1])
    redis_server.stop()
    try:
        await until(lambda: not b.broker.all_subscribed())
        await publish(a, "random", "during")  # committed, never published: Redis is down
    finally:
        redis_server.start()
    await until(b.broker.all_subscribed, timeout=15)
    await until(lambda: b.hub.seqs("random") == [1, 2])  # caught up from the database
    assert await subscribers(settings, "random") == 1  # b's, renewed; a has nobody there
    await publish(a, "random", "after")
    await until(lambda: b.hub.seqs("random") == [1, 2, 3])
    await asyncio.sleep(0.2)
    assert b.hub.seqs("random") == [1, 2, 3]
