"""Periodic upkeep: forgetting the client_ids of old messages, deleting uploads never attached
to a message (UPLOAD_EXPIRY_SECONDS), and noticing a database that
went back in time.

A database restored from a backup, or a failover to a replica that lags, holds less than the
open sockets were shown: their pages would take the room's next messages for old ones (their
`seq` at or below what they have) and hide them. Every POSITION_CHECK_SECONDS each node compares
the highest seq its sockets were given with the database's last seq, and resets the sockets of
a room that went back (a `history` with `reset`, as a client resuming with that `since` gets).

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
from dataclasses import replace

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chat.errors import NoSuchRoom
from chat.keys import HUB, SETTINGS, STORE
from chat.live import protocol
from chat.live.hub import Hub
from chat.settings import Settings
from chat.storage.statements import now_ms
from chat.storage.store import Store

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


async def prune_uploads(store: Store, settings: Settings) -> int:
    """Uploads never attached to a message, older than UPLOAD_EXPIRY_SECONDS, go."""
    return await store.prune_uploads(older_than=now_ms() - settings.upload_expiry_seconds * 1000)


async def _prune_forever(store: Store, settings: Settings) -> None:
    active_since = 0  # the first pass looks at every user
    while True:
        started = now_ms()
        try:
            await prune_uploads(store, settings)
        except (SQLAlchemyError, OSError) as exc:  # the database is down: next time
            log.warning("could not prune expired uploads: %s", exc)
        try:
            forgotten = await prune_client_ids(store, settings, active_since)
        except (SQLAlchemyError, OSError) as exc:  # the database is down: next time
            log.warning("could not prune remembered client_ids: %s", exc)
        else:
            active_since = started - int(PRUNE_EVERY_SECONDS * 1000)
            if forgotten:
                log.debug("forgot %d remembered client_ids", forgotten)
        await asyncio.sleep(PRUNE_EVERY_SECONDS)


async def reset_rewound_rooms(hub: Hub, store: Store) -> list[str]:
    """Reset the sockets of every room whose database went back below what they were given;
    return those rooms."""
    # What the sockets were given first, the database second: every seq given out was
    # committed before the read, so the database is behind only if it lost them.
    shown = hub.shown()
    rewound = []
    for room, last_seq in (await store.last_seqs(list(shown))).items():
        if last_seq >= shown[room]:
            continue
        messages, position = await store.history(room, None)
        log.warning(
            "room %r: the database's last seq is %d, below the %d its sockets were given "
            "(restored from a backup? a failover?); resetting them",
            room,
            position.seq,
            shown[room],
        )
        position = replace(position, reset=True)
        hub.reset_room(room, protocol.history_frame(room, messages, position), position)
        rewound.append(room)
    return rewound


async def _check_rewinds_forever(hub: Hub, store: Store, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.position_check_seconds)
        try:
            await reset_rewound_rooms(hub, store)
        except (SQLAlchemyError, OSError, NoSuchRoom) as exc:  # down: next time
            log.warning("could not compare the rooms' last seq with the database: %s", exc)


async def upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(_prune_forever(app[STORE], app[SETTINGS]), name="chat-upkeep"),
        asyncio.create_task(
            _check_rewinds_forever(app[HUB], app[STORE], app[SETTINGS]), name="chat-rewinds"
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
    # wait() rather than await: the tasks' own CancelledError is expected, ours is not.
    await asyncio.wait(tasks)
