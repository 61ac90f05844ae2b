"""Fan-out across nodes over Redis pub/sub: one channel, one subscriber task per process.

Publishing never waits for Redis. A frame goes to this node's sequencer at once (so local members
see it even while Redis is down) and into a bounded outbox that one publisher task pipelines to
Redis. The subscriber task feeds other nodes' frames to the same sequencer, which restores seq
order and drops duplicates. Control events (close a user's or a session's sockets) take the same
path, so a logout on one node closes that session's sockets on every node.

When Redis goes away both tasks log it and retry with capped, jittered backoff. Once subscribed
again, the node re-reads from the database what its rooms missed (`Sequencer.catch_up`). A node
whose publishes were lost while others stayed subscribed announces a `resync`, so the others
catch up too. Every process uses one channel rather than one per room: subscriptions never have
to follow joins, and Redis pub/sub is cheap next to the WebSocket writes a delivered frame costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
from collections import deque

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from sqlalchemy.exc import SQLAlchemyError

from chat.fanout.broker import CloseSockets, apply_control
from chat.fanout.sequencer import Sequencer
from chat.live.hub import Hub
from chat.settings import Settings
from chat.storage.store import Store

log = logging.getLogger(__name__)

PUBLISH_BATCH = 512
FIRST_BACKOFF = 0.1


def redis_client(settings: Settings) -> Redis:
    """A client that fails fast: the loops here own retrying, and a publish must never stall."""
    assert settings.redis_url is not None
    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


class Backoff:
    """Capped exponential backoff with jitter, and one log line per outage rather than per try."""

    def __init__(self, what: str, cap: float) -> None:
        self.what = what
        self.cap = cap
        self.delay = FIRST_BACKOFF
        self.down_since: float | None = None

    async def failed(self, exc: BaseException) -> None:
        loop = asyncio.get_running_loop()
        if self.down_since is None:
            self.down_since = loop.time()
            log.warning("redis lost (%s): %s; retrying", self.what, exc or type(exc).__name__)
        else:
            log.debug("redis still down (%s): %s", self.what, exc)
        await asyncio.sleep(self.delay * random.uniform(0.5, 1.0))
        self.delay = min(self.delay * 2, self.cap)

    def succeeded(self) -> bool:
        """Reset; True if this ends an outage."""
        self.delay = FIRST_BACKOFF
        if self.down_since is None:
            return False
        down = asyncio.get_running_loop().time() - self.down_since
        self.down_since = None
        log.warning("redis back (%s) after %.1f s", self.what, down)
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """What travels on the channel: one room frame, one control event, or a resync request."""

    kind: str  # "m" room frame, "c" control, "r" resync
    origin: str
    room: str = ""
    seq: int | None = None
    payload: str = ""

    def encode(self) -> bytes:
        # A header line then the frame as it goes to browsers: no second JSON encoding.
        seq = "-" if self.seq is None else str(self.seq)
        return f"{self.kind} {self.origin} {seq} {self.room}\n{self.payload}".encode()

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        header, _, payload = data.decode().partition("\n")
        kind, origin, seq, room = header.split(" ", 3)
        return cls(kind, origin, room, None if seq == "-" else int(seq), payload)


def control_envelope(origin: str, event: CloseSockets) -> Envelope:
    # Every field, so a field added to CloseSockets travels without a change here.
    return Envelope("c", origin, payload=orjson.dumps(dataclasses.asdict(event)).decode())


def control_event(envelope: Envelope) -> CloseSockets:
    body = orjson.loads(envelope.payload)
    if not isinstance(body, dict):
        raise ValueError("a control event is a JSON object")
    return CloseSockets(**body)


class RedisBroker:
    def __init__(self, hub: Hub, store: Store, settings: Settings, redis: Redis) -> None:
        self.hub = hub
        self.redis = redis
        self.settings = settings
        self.channel = f"{settings.redis_prefix}:fanout"
        # Frames from this very process come back from Redis too; they were delivered already.
        self.origin = f"{settings.node_id}.{secrets.token_hex(4)}"
        self.sequencer = Sequencer(
            hub, store, gap_wait=settings.fanout_gap_seconds, hold_limit=settings.send_queue_size
        )
        self._outbox: deque[bytes] = deque()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._resync_needed = False
        self._catching_up: asyncio.Task[None] | None = None
        self._catch_up_again = False
        self._tasks: list[asyncio.Task[None]] = []
        # Set while the subscriber is subscribed (tests and /readyz can wait on it).
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        await self.sequencer.start()
        self._tasks = [
            asyncio.create_task(self._subscribe_forever(), name="redis-subscriber"),
            asyncio.create_task(self._publish_forever(), name="redis-publisher"),
            asyncio.create_task(self._check_positions_forever(), name="position-check"),
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
        self._send(Envelope("m", self.origin, room, seq, payload))

    async def control(self, event: CloseSockets) -> None:
        apply_control(self.hub, event)
        self._send(control_envelope(self.origin, event))

    # --- publishing ---

    def _send(self, envelope: Envelope) -> None:
        if len(self._outbox) >= self.settings.publish_queue_size:
            # Redis is down or too slow: drop the oldest; the others re-read it from the database.
            self._outbox.popleft()
            self._resync_needed = True
        self._outbox.append(envelope.encode())
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
                batch.append(Envelope("r", self.origin).encode())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for data in batch:
                        pipe.publish(self.channel, data)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # What was committed is in the database: the batch is dropped, not retried, and
                # every node re-reads it once Redis is back (its own reconnect or our resync).
                self._resync_needed = True
                await backoff.failed(exc)
                continue
            if batch[-1].startswith(b"r "):
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
                await pubsub.subscribe(self.channel)
                await self._confirmed(pubsub)
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
                self.subscribed.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _confirmed(self, pubsub: PubSub) -> None:
        timeout = self.settings.redis_timeout_seconds
        async with asyncio.timeout(timeout):
            while True:
                msg = await pubsub.get_message(timeout=timeout)
                if msg is not None and msg["type"] == "subscribe":
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
                continue
            if now - heard >= 3 * beat:
                raise ConnectionError(f"no answer from redis for {now - heard:.1f} s")
            if not pinged:
                await pubsub.ping()
                pinged = True

    def _received(self, data: bytes) -> None:
        try:
            envelope = Envelope.decode(data)
            event = control_event(envelope) if envelope.kind == "c" else None
        except (ValueError, KeyError, TypeError):
            # Not from a node of ours (or from a newer version): never let it stop the loop.
            log.error("ignored a malformed frame on %s: %r", self.channel, data[:80])
            return
        if envelope.origin == self.origin:
            return
        if envelope.kind == "m":
            self.sequencer.offer(envelope.room, envelope.payload, envelope.seq)
        elif event is not None:
            apply_control(self.hub, event)
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
