"""Fixtures of the fan-out tests: several real nodes on a real Redis, or on two Redis servers
that rooms are spread over (`cluster` parametrized with 2, or `two_redis`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.cluster import Cluster
from tests.servers import RedisServer, running_redis


@pytest.fixture(scope="session")
def second_redis_server() -> Iterator[RedisServer]:
    """Another throwaway redis-server: the second shard."""
    yield from running_redis("chat-redis2-")


@pytest.fixture
def two_redis_url(redis_url: str, second_redis_server: RedisServer) -> str:
    """REDIS_URL listing both servers (each running)."""
    if not second_redis_server.running:
        second_redis_server.start()
    return f"{redis_url},{second_redis_server.url}"


@pytest.fixture
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Cluster]:
    """Nodes on one Redis; parametrized indirectly with 2, on two Redis servers."""
    shards = getattr(request, "param", 1)
    url = request.getfixturevalue("two_redis_url") if shards == 2 else redis_url
    cluster = Cluster(tmp_path, url, redis_prefix)
    try:
        yield cluster
    finally:
        await cluster.close()
