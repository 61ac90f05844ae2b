"""Presence across nodes: each process publishes its own connections under a lease in Redis.

Each process owns one key holding its connections (who, which rooms, since when), written with a
TTL and rewritten by a heartbeat and after every change. Readers take this process's live hub plus
every other lease still in Redis. A process that dies without cleaning up (SIGKILL, power loss)
stops renewing its key, which expires after `presence_ttl_seconds`, and its users drop off every
list by themselves. No node has to notice another's death.

If Redis is slow or unreachable, readers wait at most `redis_timeout_seconds` and fall back to the
last good read of the other nodes (for as long as their leases would have lasted), then to this
node's own connections: pages and joins never hang on Redis.
"""

from __future__ import annotations

import asyncio
import logging
from itertools import islice
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chat.fanout.envelope import Backoff
from chat.fanout.presence import LocalPresence, OnlineConnection, pick
from chat.live import protocol
from chat.live.hub import Hub
from chat.settings import Settings

log = logging.getLogger(__name__)


class RedisPresence:
    def __init__(self, hub: Hub, settings: Settings, redis: Redis, instance: str) -> None:
        self.local = LocalPresence(hub, settings.node_id)
        self.redis = redis
        self.ttl_ms = int(settings.presence_ttl_seconds * 1000)
        self.heartbeat = settings.presence_heartbeat_seconds
        self.backoff_cap = settings.redis_backoff_max_seconds
        self.timeout = settings.redis_timeout_seconds
        # The set of lease keys readers look at; each lease expires on its own.
        self.index = f"{settings.redis_prefix}:presence"
        self.key = f"{self.index}:{instance}"
        self._write_lock = asyncio.Lock()
        self._changes = 0
        self._written = 0
        self._task: asyncio.Task[None] | None = None
        # Other processes' leases as last read: lease key -> its connections.
        self._leases: dict[str, list[OnlineConnection]] = {}
        self._quiet_until = 0.0
        # The last good read of the other leases, for when Redis is slow or away: (when, leases).
        self._cache: tuple[float, dict[str, list[OnlineConnection]]] = (0.0, {})
        # One read of the leases at a time, shared by every caller that arrives meanwhile: a
        # reconnect storm of joins costs one read per round trip, not one per join.
        self._reading: asyncio.Task[dict[str, list[OnlineConnection]]] | None = None
        # The leases last read, and the people per room in them (see _others_by_room).
        self._indexed: tuple[dict[str, list[OnlineConnection]], dict[str, set[str]]] = ({}, {})

    async def start(self) -> None:
        self._task = asyncio.create_task(self._heartbeat_forever(), name="presence-heartbeat")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, self._reading) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.key)
                pipe.srem(self.index, self.key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.info("could not remove this node's presence (it expires anyway): %s", exc)

    # --- writing our lease ---

    async def _heartbeat_forever(self) -> None:
        backoff = Backoff("presence", self.backoff_cap)
        while True:
            try:
                await self._write()
                await self._notice_departures()
            except (RedisError, OSError) as exc:
                await backoff.failed(exc)
                continue
            if backoff.succeeded():
                # A restarted Redis has lost every lease until each node's next heartbeat:
                # missing leases mean nothing for one TTL.
                self._quiet_until = asyncio.get_running_loop().time() + self.ttl_ms / 1000
            await asyncio.sleep(self.heartbeat)

    async def _write(self) -> None:
        conns = self.local.local_connections()
        blob = orjson.dumps(
            {
                "node": self.local.node,
                "c": [[c.connection_id, c.username, c.rooms, c.since] for c in conns],
            }
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key, blob, px=self.ttl_ms)
            pipe.sadd(self.index, self.key)
            await pipe.execute()

    async def changed(self) -> None:
        """Publish our connections now; changes that pile up while a write is in flight share
        the next write, so a burst of joins costs a few writes, not one each."""
        self._changes += 1
        wanted = self._changes
        async with self._write_lock:
            if self._written >= wanted:
                return
            current = self._changes
            try:
                async with asyncio.timeout(self.timeout):
                    await self._write()
            except (RedisError, OSError) as exc:
                # The heartbeat notices, logs and retries; a join must not fail for it.
                log.debug("presence not written: %s", exc)
                return
            self._written = current

    async def _notice_departures(self) -> None:
        """Tell this node's members about people whose node died: a dead node announces
        nothing, so its users' `leave` comes from here once its lease has expired."""
        before = self._leases
        now = await self._read_leases()
        self._leases = now
        if asyncio.get_running_loop().time() < self._quiet_until:
            return
        gone = [conn for key, conns in before.items() if key not in now for conn in conns]
        if not gone:
            return
        present = self.local.local_connections() + [c for conns in now.values() for c in conns]
        still_here = {(room, c.username) for c in present for room in c.rooms}
        for room, user in sorted({(room, c.username) for c in gone for room in c.rooms}):
            if (room, user) not in still_here:
                # Delivered here only: every node does the same for its own members.
                self.local.hub.deliver(room, protocol.membership_frame("leave", room, user))

    # --- reading the union ---

    async def _read_leases(self) -> dict[str, list[OnlineConnection]]:
        keys = [k for k in await self.redis.smembers(self.index) if _text(k) != self.key]
        if not keys:
            return {}
        blobs = await self.redis.mget(keys)
        expired = [k for k, blob in zip(keys, blobs, strict=True) if blob is None]
        if expired:
            await self.redis.srem(self.index, *expired)
        return {
            _text(key): _parse(orjson.loads(blob))
            for key, blob in zip(keys, blobs, strict=True)
            if blob is not None
        }

    async def _other_leases(self) -> dict[str, list[OnlineConnection]]:
        """Everyone on other nodes. Pages and joins wait on this, so a slow or absent Redis
        costs at most `redis_timeout_seconds`, and then the last good read (while its leases
        would still be valid) stands in."""
        loop = asyncio.get_running_loop()
        if self._reading is None or self._reading.done():
            self._reading = loop.create_task(self._read_leases_bounded())
            self._reading.add_done_callback(_retrieve)
        try:
            # Shielded: one caller giving up (its socket closed) must not cancel the others' read.
            leases = await asyncio.shield(self._reading)
        except (RedisError, OSError) as exc:
            log.debug("presence of other nodes unavailable: %s", exc)
            read_at, leases = self._cache
            if loop.time() - read_at > self.ttl_ms / 1000:
                leases = {}
        else:
            self._cache = (loop.time(), leases)
        return leases

    async def _others(self) -> list[OnlineConnection]:
        leases = await self._other_leases()
        return [conn for conns in leases.values() for conn in conns]

    async def _others_by_room(self) -> dict[str, set[str]]:
        """Room -> the people in it on other nodes, built once per read of the leases (which
        every join of a storm shares), so a join costs no walk over everyone online."""
        leases = await self._other_leases()
        if self._indexed[0] is not leases:
            index: dict[str, set[str]] = {}
            for conns in leases.values():
                for conn in conns:
                    for room in conn.rooms:
                        index.setdefault(room, set()).add(conn.username)
            self._indexed = (leases, index)
        return self._indexed[1]

    async def _read_leases_bounded(self) -> dict[str, list[OnlineConnection]]:
        async with asyncio.timeout(self.timeout):
            return await self._read_leases()

    async def _union(self) -> list[OnlineConnection]:
        return self.local.local_connections() + await self._others()

    async def connections(self) -> list[OnlineConnection]:
        return await self._union()

    async def room_users(self, room: str) -> set[str]:
        others = (await self._others_by_room()).get(room, set())
        return set(self.local.hub.people(room)) | others

    async def room_counts(self) -> dict[str, int]:
        per_room: dict[str, set[str]] = {}
        for conn in await self._union():
            for room in conn.rooms:
                per_room.setdefault(room, set()).add(conn.username)
        return {room: len(users) for room, users in per_room.items()}

    async def user_in_room(self, username: str, room: str) -> bool:
        if self.local.hub.is_in(username, room):
            return True
        return username in (await self._others_by_room()).get(room, ())

    async def glimpse(self, room: str, limit: int, me: str) -> tuple[list[str], int]:
        here = self.local.hub.people(room)
        others = (await self._others_by_room()).get(room, set())
        picked = pick(here, limit, me)
        if len(picked) < limit:
            picked.extend(islice((u for u in others if u not in here), limit - len(picked)))
        # Counting the union walks the smaller side only.
        small, big = (here, others) if len(here) <= len(others) else (others, here)
        count = len(big) + sum(1 for u in small if u not in big)
        return picked, count


def _retrieve(task: asyncio.Task[dict[str, list[OnlineConnection]]]) -> None:
    # Every waiter sees the error; this only keeps asyncio from calling it unretrieved when the
    # waiters were all cancelled first.
    if not task.cancelled():
        task.exception()


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def _parse(doc: Any) -> list[OnlineConnection]:
    node = str(doc["node"])
    return [
        OnlineConnection(
            node=node,
            connection_id=int(cid),
            username=str(user),
            rooms=tuple(rooms),
            since=float(since),
        )
        for cid, user, rooms, since in doc["c"]
    ]
