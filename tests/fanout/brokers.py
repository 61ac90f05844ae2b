"""What the tests of brokers in this process share (test_redis_broker, test_room_routing,
test_shards): settings with timeouts short enough for tests, a store with the rooms a test
needs, and waiting for a condition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

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
