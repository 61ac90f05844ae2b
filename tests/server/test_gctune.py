"""The serving process tunes the garbage collector once the app has started (chat.server.gctune)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from chat.server import gctune


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
async def test_what_exists_at_startup_is_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    await gctune.tune_after_startup(web.Application())
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == gctune.THRESHOLDS
    assert gctune.THRESHOLDS[0] > before[0]
