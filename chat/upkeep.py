"""Periodic upkeep of the store: forgetting the client_ids of old messages.

Each message's client_id is remembered (table `client_ids`, written in the transaction that
stores the message) beyond the room's kept history, so that a resend of a message the history
no longer holds is still recognised. Once a minute every node prunes that memory to what the
settings promise: CLIENT_ID_TTL_SECONDS after the message was stored, and each user's newest
CLIENT_ID_MEMORY. Several nodes pruning at once only delete the same rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chat.db import Store, now_ms
from chat.keys import SETTINGS, STORE
from chat.settings import Settings

log = logging.getLogger(__name__)

# How often the memory is pruned; between two prunings a user may briefly hold more than
# CLIENT_ID_MEMORY (at most what the chat rate allows in this time).
PRUNE_EVERY_SECONDS = 60.0


async def prune_client_ids(store: Store, settings: Settings, active_since: int) -> int:
    now = now_ms()
    return await store.forget_client_ids(
        older_than=now - settings.client_id_ttl_seconds * 1000,
        keep=settings.client_id_memory,
        active_since=active_since,
    )


async def _prune_forever(store: Store, settings: Settings) -> None:
    active_since = 0  # the first pass looks at every user
    while True:
        started = now_ms()
        try:
            forgotten = await prune_client_ids(store, settings, active_since)
        except (SQLAlchemyError, OSError) as exc:  # the database is down: next time
            log.warning("could not prune remembered client_ids: %s", exc)
        else:
            active_since = started - int(PRUNE_EVERY_SECONDS * 1000)
            if forgotten:
                log.debug("forgot %d remembered client_ids", forgotten)
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


async def upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_prune_forever(app[STORE], app[SETTINGS]), name="chat-upkeep")
    yield
    task.cancel()
    # wait() rather than await: the task's own CancelledError is expected, ours is not.
    await asyncio.wait([task])
