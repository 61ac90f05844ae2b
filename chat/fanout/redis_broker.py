"""Fan-out across nodes over Redis pub/sub: one channel per room, one subscriber task per process.

Publishing never waits for Redis. A frame goes to this node's sequencer at once (so local members
see it even while Redis is down) and into a bounded outbox that one publisher task pipelines to
Redis, on the room's own channel (`<prefix>:room:<name>`). A node subscribes to the channel of
each room it has members in, from the moment the first one starts to join (before its history is
read) until `ROOM_UNSUBSCRIBE_SECONDS` after the last one left, so a message of a room nobody here
is in never reaches this node, and a page reload does not unsubscribe and subscribe again. The
subscriber task feeds the frames it hears to the sequencer, which restores seq order and drops
duplicates. Control events (close a user's or a session's sockets: logout, kick, ban, removal)
and resync requests are rare, and every node may have the sockets they concern: they travel on
one channel every node hears (`<prefix>:control`).

When Redis goes away both tasks log it and retry with capped, jittered backoff. Once subscribed
again (to the control channel and every room followed), the node re-reads from the database what
its rooms missed (`Sequencer.catch_up`). A node whose publishes were lost while others stayed
subscribed announces a `resync`, so the others catch up too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from chat.fanout.broker import CloseSockets, SignalHandler, Signals, apply_control
from chat.fanout.envelope import (
    Backoff,
    Envelope,
    control_envelope,
    control_event,
    redis_client,
)
from chat.fanout.envelope import text as _text
from chat.fanout.sequencer import Sequencer
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

PUBLISH_BATCH = 512


class RedisBroker:
    def __init__(self, hub: Hub, store: Store, settings: Settings, redis: Redis) -> None:
        self.hub = hub
        self.signals = Signals()
        self.redis = redis
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.channel = f"{settings.redis_prefix}:control"
        # Frames from this very process come back from Redis too; they were delivered already.
        self.origin = f"{settings.node_id}.{secrets.token_hex(4)}"
        self.sequencer = Sequencer(
            hub, store, gap_wait=settings.fanout_gap_seconds, hold_limit=settings.send_queue_size
        )
        self._outbox: deque[tuple[str, bytes]] = deque()
        # The rooms this node hears (subscribed, or to be once Redis is back), and since when
        # the ones nobody here is in any more have been empty.
        self.rooms: set[str] = set()
        self._empty_since: dict[str, float] = {}
        self._pubsub: PubSub | None = None  # while subscribed
        self._confirming: dict[str, asyncio.Future[None]] = {}  # channel -> its subscribe
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._resync_needed = False
        self._catching_up: asyncio.Task[None] | None = None
        self._catch_up_again = False
        self._tasks: list[asyncio.Task[None]] = []
        # Set while the subscriber is subscribed (tests and /readyz can wait on it).
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._subscribe_forever(), name="redis-subscriber"),
            asyncio.create_task(self._publish_forever(), name="redis-publisher"),
            asyncio.create_task(self._check_positions_forever(), name="position-check"),
            asyncio.create_task(self._let_go_forever(), name="room-unsubscriber"),
        ]

    async def stop(self) -> None:
        # Let what is queued go out (the leave announcements of a shutdown), briefly.
        if self._outbox:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._drained.wait()
        tasks = self._tasks + ([self._catching_up] if self._catching_up else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.sequencer.stop()

    async def ping(self) -> None:
        """For /readyz: Redis answers (fan-out to other nodes works)."""
        await self.redis.ping()

    # --- the Broker protocol ---

    def publish(self, room: str, payload: str, seq: int | None = None) -> None:
        self.sequencer.offer(room, payload, seq)
        self._send(self.room_channel(room), Envelope("m", self.origin, room, seq, payload))

    async def control(self, event: CloseSockets) -> None:
        apply_control(self.hub, event)
        self._send(self.channel, control_envelope(self.origin, event))

    def signal(self, kind: str, body: dict[str, Any]) -> None:
        self.signals.dispatch(kind, body)
        # On the control channel: every node hears it, like a logout (the kind rides where a
        # room frame has its room).
        self._send(
            self.channel, Envelope("s", self.origin, kind, None, orjson.dumps(body).decode())
        )

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
        pubsub = self._pubsub
        if pubsub is None:
            return  # Redis is away: subscribed with the others when it is back, then caught up
        channel = self.room_channel(room)
        confirmed = self._confirming.get(channel)
        if confirmed is None:
            confirmed = self._confirming[channel] = asyncio.get_running_loop().create_future()
        try:
            # Confirmed before the joiner's history is read: what is published after the read
            # reaches this node. A join waits for it at most REDIS_TIMEOUT_SECONDS.
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                await pubsub.subscribe(channel)
                await asyncio.shield(confirmed)
        except (RedisError, OSError, TimeoutError) as exc:
            # The subscriber notices the lost connection, subscribes again and catches up.
            log.debug("subscribing to %s: %s", channel, exc)

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
        gone = []
        for room in self.rooms:
            if self.hub.has_members(room):
                self._empty_since.pop(room, None)
            elif now - self._empty_since.setdefault(room, now) >= grace:
                gone.append(room)
        for room in gone:
            self.rooms.discard(room)
            self._empty_since.pop(room, None)
            self.sequencer.forget(room)
        pubsub = self._pubsub
        if gone and pubsub is not None:
            try:
                await pubsub.unsubscribe(*(self.room_channel(r) for r in gone))
            except (RedisError, OSError) as exc:  # the next subscription leaves them out
                log.debug("unsubscribing: %s", exc)

    # --- publishing ---

    def _send(self, channel: str, envelope: Envelope) -> None:
        if len(self._outbox) >= self.settings.publish_queue_size:
            # Redis is down or too slow: drop the oldest; the others re-read it from the database.
            self._outbox.popleft()
            self._resync_needed = True
        self._outbox.append((channel, envelope.encode()))
        self._drained.clear()
        self._outbox_ready.set()

    async def _publish_forever(self) -> None:
        backoff = Backoff("publisher", self.settings.redis_backoff_max_seconds)
        while True:
            if not self._outbox:
                self._drained.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            batch = [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
            if self._resync_needed:
                batch.append((self.channel, Envelope("r", self.origin).encode()))
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # What was committed is in the database: the batch is dropped, not retried, and
                # every node re-reads it once Redis is back (its own reconnect or our resync).
                self._resync_needed = True
                await backoff.failed(exc)
                continue
            if batch[-1][1].startswith(b"r "):
                self._resync_needed = False
            backoff.succeeded()

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

    # --- subscribing ---

    async def _subscribe_forever(self) -> None:
        backoff = Backoff("subscriber", self.settings.redis_backoff_max_seconds)
        while True:
            pubsub = self.redis.pubsub()
            try:
                # The control channel last: its confirmation comes after every room's.
                await pubsub.subscribe(*(self.room_channel(r) for r in self.rooms), self.channel)
                await self._confirmed(pubsub)
                self._pubsub = pubsub
                self.subscribed.set()
                backoff.succeeded()
                # Subscribed first, then read the database: whatever was committed before the
                # subscription is in the read, whatever after comes through the channel.
                await self._catch_up()
                await self._listen(pubsub)
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                await backoff.failed(exc)
            finally:
                self._pubsub = None
                self.subscribed.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _confirmed(self, pubsub: PubSub) -> None:
        timeout = self.settings.redis_timeout_seconds
        async with asyncio.timeout(timeout):
            while True:
                msg = await pubsub.get_message(timeout=timeout)
                if msg is not None and msg["type"] == "subscribe":
                    self._confirm(_text(msg["channel"]))
                    if _text(msg["channel"]) == self.channel:
                        return

    async def _listen(self, pubsub: PubSub) -> None:
        """Feed the sequencer; ping when idle, so a silently dead connection is noticed too."""
        beat = self.settings.presence_heartbeat_seconds
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            msg = await pubsub.get_message(timeout=beat)
            now = loop.time()
            if msg is not None:
                heard, pinged = now, False
                if msg["type"] == "message":
                    self._received(msg["data"])
                elif msg["type"] == "subscribe":
                    self._confirm(_text(msg["channel"]))
                continue
            if now - heard >= 3 * beat:
                raise ConnectionError(f"no answer from redis for {now - heard:.1f} s")
            if not pinged:
                await pubsub.ping()
                pinged = True

    def _confirm(self, channel: str) -> None:
        confirmed = self._confirming.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    def _received(self, data: bytes) -> None:
        try:
            envelope = Envelope.decode(data)
            event = control_event(envelope) if envelope.kind == "c" else None
            body = orjson.loads(envelope.payload) if envelope.kind == "s" else None
            if envelope.kind == "s" and not isinstance(body, dict):
                raise ValueError("a signal is a JSON object")
        except (ValueError, KeyError, TypeError):
            # Not from a node of ours (or from a newer version): never let it stop the loop.
            log.error("ignored a malformed frame on %s: %r", self.channel, data[:80])
            return
        if envelope.origin == self.origin:
            return
        if envelope.kind == "m":
            self.hub.stats.frames_heard += 1
            self.sequencer.offer(envelope.room, envelope.payload, envelope.seq)
        elif event is not None:
            apply_control(self.hub, event)
        elif body is not None:
            self.signals.dispatch(envelope.room, body)
        elif envelope.kind == "r":
            self._spawn_catch_up()

    def _spawn_catch_up(self) -> None:
        if self._catching_up is not None and not self._catching_up.done():
            self._catch_up_again = True
            return
        self._catching_up = asyncio.create_task(self._catch_up_repeatedly())

    async def _catch_up_repeatedly(self) -> None:
        while True:
            self._catch_up_again = False
            await self._catch_up()
            if not self._catch_up_again:
                return

    async def _catch_up(self) -> None:
        try:
            rooms = await self.sequencer.catch_up()
        except (SQLAlchemyError, OSError) as exc:
            # The database may be down too; the next reconnect or resync tries again.
            log.error("could not read missed messages from the database: %s", exc)
            return
        if rooms:
            log.info("caught up %d rooms from the database", rooms)
