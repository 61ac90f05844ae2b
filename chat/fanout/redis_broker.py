"""Fan-out across nodes over Redis pub/sub: one channel per room, on one of several Redis servers
(see docs/architecture.md, "Fan-out over several Redis").

Publishing never waits for Redis. A frame goes to this node's sequencer at once (so local members
see it even while Redis is down) and into the outbox of the server that carries its room
(chat.fanout.shards: rendezvous hashing of the room name over the servers `REDIS_URL` lists; with
one server, that one), whose publisher task pipelines it to the room's own channel
(`<prefix>:room:<name>`). A node subscribes to the channel of each room it has members in, from
the moment the first one starts to join (before its history is read) until
`ROOM_UNSUBSCRIBE_SECONDS` after the last one left, so a message of a room nobody here is in
never reaches this node, and a page reload does not unsubscribe and subscribe again. Each
server's subscriber task feeds the frames it hears to the one sequencer, which restores seq
order and drops duplicates.

Control events (close a user's or a session's sockets: logout, kick, ban, removal) are rare, and
every node may have the sockets they concern, so there is no room to spread them by: they travel
on one channel every node hears (`<prefix>:control`) on the first server, where the presence
leases are too (every node reads all of them at once). Every server has a control channel of its
own name, which carries its resync requests.

When a server goes away, its tasks log it and retry with capped, jittered backoff; only its
rooms wait. Once subscribed there again, the node re-reads from the database what those rooms
missed (`Sequencer.catch_up`). A node whose publishes to a server were lost while others stayed
subscribed announces a `resync` on that server, so the others catch up its rooms too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError

from chat.fanout.broker import CloseSockets, SignalHandler, Signals, apply_control
from chat.fanout.envelope import (
    Backoff,
    Envelope,
    control_envelope,
    control_event,
    decode_room_frames,
    redis_client,
)
from chat.fanout.sequencer import Sequencer
from chat.fanout.shards import Ring, Shard, ShardCollector, drain_all
from chat.live.hub import Hub
from chat.settings import Settings
from chat.storage.store import Store

__all__ = [
    "Backoff",
    "Envelope",
    "RedisBroker",
    "control_envelope",
    "control_event",
    "redis_client",
]

log = logging.getLogger(__name__)


class RedisBroker:
    def __init__(self, hub: Hub, store: Store, settings: Settings) -> None:
        self.hub = hub
        self.signals = Signals()
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.channel = f"{settings.redis_prefix}:control"
        # Frames from this very process come back from Redis too; they were delivered already.
        self.origin = f"{settings.node_id}.{secrets.token_hex(4)}"
        # How this node's own room frames start, to drop them before decoding anything.
        self._own = (f"m {self.origin} ".encode(), f"b {self.origin} ".encode())
        self.sequencer = Sequencer(
            hub, store, gap_wait=settings.fanout_gap_seconds, hold_limit=settings.send_queue_size
        )
        urls = settings.redis_urls
        self.ring = Ring.of(urls)
        self.shards = [
            Shard(
                i,
                self.ring.servers[i],
                redis_client(settings, url),
                settings,
                origin=self.origin,
                several=len(urls) > 1,
                channels=partial(self._channels_of, i),
                received=self._received,
                catch_up=self._catch_up,
            )
            for i, url in enumerate(urls)
        ]
        # The rooms this node hears (subscribed, or to be once their server is back), and since
        # when the ones nobody here is in any more have been empty.
        self.rooms: set[str] = set()
        self._empty_since: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def redis(self) -> Redis:
        """The first server's client: control events and presence leases live there."""
        return self.shards[0].redis

    def collector(self) -> ShardCollector:
        """Per-server metrics (chat_redis_shard_up, chat_redis_shard_frames_heard)."""
        return ShardCollector(self.shards)

    def all_subscribed(self) -> bool:
        return all(shard.subscribed.is_set() for shard in self.shards)

    def shard_of(self, room: str) -> Shard:
        return self.shards[self.ring(room)]

    async def start(self) -> None:
        for shard in self.shards:
            shard.start()
        self._tasks = [
            asyncio.create_task(self._check_positions_forever(), name="position-check"),
            asyncio.create_task(self._let_go_forever(), name="room-unsubscriber"),
        ]

    async def stop(self) -> None:
        await drain_all(self.shards, 1.0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(shard.stop() for shard in self.shards))
        await self.sequencer.stop()
        for shard in self.shards:
            await shard.redis.aclose()

    async def ping(self) -> None:
        """For /readyz: every Redis server answers (fan-out to other nodes works)."""
        results = await asyncio.gather(
            *(shard.redis.ping() for shard in self.shards), return_exceptions=True
        )
        for shard, result in zip(self.shards, results, strict=True):
            if isinstance(result, BaseException):
                raise ConnectionError(f"redis {shard.name}: {result}") from result

    # --- the Broker protocol ---

    def publish(self, room: str, payload: str, seq: int | None = None) -> None:
        self.sequencer.offer(room, payload, seq)
        self.shard_of(room).send(self.room_channel(room), (room, seq, payload))

    async def control(self, event: CloseSockets) -> None:
        apply_control(self.hub, event)
        self.shards[0].send(self.channel, control_envelope(self.origin, event).encode())

    def signal(self, kind: str, body: dict[str, Any]) -> None:
        self.signals.dispatch(kind, body)
        # On the control channel: every node hears it, like a logout (the kind rides where a
        # room frame has its room).
        envelope = Envelope("s", self.origin, kind, None, orjson.dumps(body).decode())
        self.shards[0].send(self.channel, envelope.encode())

    def on_signal(self, kind: str, handler: SignalHandler) -> None:
        self.signals.add(kind, handler)

    def room_channel(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    async def follow(self, room: str) -> None:
        self._empty_since.pop(room, None)
        if room in self.rooms:
            return
        self.rooms.add(room)
        self.sequencer.begin(room)
        # Confirmed before the joiner's history is read: what is published after the read
        # reaches this node. A join waits for it at most REDIS_TIMEOUT_SECONDS; while the
        # room's server is away, it is subscribed with the others when it is back, then
        # caught up.
        await self.shard_of(room).subscribe(self.room_channel(room))

    def joined(self, room: str, seq: int) -> None:
        self.sequencer.joined(room, seq)

    # --- letting rooms go ---

    async def _let_go_forever(self) -> None:
        grace = self.settings.room_unsubscribe_seconds
        while True:
            await asyncio.sleep(max(0.05, grace / 2))
            await self._let_go(grace)

    async def _let_go(self, grace: float) -> None:
        """Unsubscribe from the rooms nobody here has been in for `grace` seconds."""
        now = asyncio.get_running_loop().time()
        gone: dict[int, list[str]] = {}
        for room in self.rooms:
            if self.hub.has_members(room):
                self._empty_since.pop(room, None)
            elif now - self._empty_since.setdefault(room, now) >= grace:
                gone.setdefault(self.ring(room), []).append(room)
        for rooms in gone.values():
            for room in rooms:
                self.rooms.discard(room)
                self._empty_since.pop(room, None)
                self.sequencer.forget(room)
        for index, rooms in gone.items():
            await self.shards[index].unsubscribe([self.room_channel(r) for r in rooms])

    # --- the position check ---

    async def _check_positions_forever(self) -> None:
        """A node that commits a message and dies before publishing it leaves a gap nobody
        sees in a quiet room: every POSITION_CHECK_SECONDS, compare with the database."""
        while True:
            await asyncio.sleep(self.settings.position_check_seconds)
            try:
                await self.sequencer.check_positions()
            except (SQLAlchemyError, OSError) as exc:  # the database is down: next time
                log.warning("position check failed: %s", exc)

    # --- what the servers bring ---

    def _channels_of(self, index: int) -> list[str]:
        """The room channels a server's subscriber subscribes to when it (re)connects."""
        return [self.room_channel(r) for r in self.rooms if self.ring(r) == index]

    def _received(self, shard: Shard, data: bytes) -> None:
        if data.startswith(self._own):
            return
        if data.startswith((b"m ", b"b ")):
            try:
                room, frames = decode_room_frames(data)
            except ValueError:
                self._malformed(shard, data)
                return
            self.hub.stats.frames_heard += len(frames)
            shard.frames_heard += len(frames)
            offer = self.sequencer.offer
            for seq, payload in frames:
                offer(room, payload, seq)
            return
        try:
            envelope = Envelope.decode(data)
            event = control_event(envelope) if envelope.kind == "c" else None
            body = orjson.loads(envelope.payload) if envelope.kind == "s" else None
            if envelope.kind == "s" and not isinstance(body, dict):
                raise ValueError("a signal is a JSON object")
        except (ValueError, KeyError, TypeError):
            self._malformed(shard, data)
            return
        if envelope.origin == self.origin:
            return
        if event is not None:
            apply_control(self.hub, event)
        elif body is not None:
            self.signals.dispatch(envelope.room, body)
        elif envelope.kind == "r":
            shard.resync()

    def _malformed(self, shard: Shard, data: bytes) -> None:
        # Not from a node of ours (or from a newer version): never let it stop the loop.
        log.error("ignored a malformed frame from redis %s: %r", shard.name, data[:80])

    async def _catch_up(self, shard: Shard) -> None:
        """Read from the database what the rooms this server carries missed."""
        rooms = None if len(self.shards) == 1 else self._rooms_of(shard.index)
        try:
            behind = await self.sequencer.catch_up(rooms)
        except (SQLAlchemyError, OSError) as exc:
            # The database may be down too; the next reconnect or resync tries again.
            log.error("could not read missed messages from the database: %s", exc)
            return
        if behind:
            log.info("caught up %d rooms from the database", behind)

    def _rooms_of(self, index: int) -> list[str]:
        return [r for r in self.rooms if self.ring(r) == index]
