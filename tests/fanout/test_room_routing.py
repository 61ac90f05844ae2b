"""Per-room routing on a real redis-server: a node hears only the rooms it has members in,
counted from what it received from Redis; its subscriptions follow joins and leaves (after the
grace period) and survive Redis restarting, and nothing is lost or doubled on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat.settings import Settings
from chat.storage.store import Store
from tests.fanout.brokers import Node, fast_settings, opened_store, publish, two_nodes, until
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return fast_settings(tmp_path, redis_url, redis_prefix, ROOM_UNSUBSCRIBE_SECONDS="0.3")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with opened_store(settings, ["random"]) as store:
        yield store


@pytest.fixture
async def nodes(store: Store, settings: Settings) -> AsyncIterator[tuple[Node, Node]]:
    async with two_nodes(store, settings) as pair:
        yield pair


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
