"""Storage tests run on every backend: a module's `store` fixture is parametrized with
BACKENDS and opens the store with `store_on` (SQLite in a file, then a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from chat.storage.store import Store

BACKENDS = ["sqlite", "postgresql"]


@asynccontextmanager
async def store_on(
    request: pytest.FixtureRequest, tmp_path: Path, *, history_limit: int
) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = await Store.open(url, history_limit=history_limit)
    try:
        yield store
    finally:
        await store.close()
