"""Fixtures of the fan-out tests: several real nodes on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cluster import Cluster


@pytest.fixture
async def cluster(tmp_path: Path, redis_url: str, redis_prefix: str) -> AsyncIterator[Cluster]:
    cluster = Cluster(tmp_path, redis_url, redis_prefix)
    try:
        yield cluster
    finally:
        await cluster.close()
