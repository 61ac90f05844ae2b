"""Rooms spread over several independent Redis servers: which server carries a room, and one
server's connections (see docs/architecture.md, "Fan-out over several Redis").

`REDIS_URL` may list several servers, comma-separated. Each room lives on one of them, chosen by
rendezvous (highest random weight) hashing: every server scores the room with a keyed BLAKE2b
hash of (server name, room name) and the highest score wins. Every process, on every host and
Python run, computes the same answer, the order of the list does not matter, and adding a server
moves only the rooms that now score highest on it (about 1/n of them); removing one moves only
its own. A server's name is its `host:port` (or its socket path), without credentials or
database number: Redis pub/sub channels are shared by every database of one server.

A `Shard` is one server as one process uses it: its own client, one subscriber task (the
channels of the rooms it carries that this node hears, and the control channel), one publisher
task with its own bounded outbox, and its own outage handling (backoff, then a catch-up of only
its rooms from the database). While one shard is down, only its rooms wait; the others flow on.
The broker (chat.fanout.redis_broker) owns the rooms and the sequencer and tells each shard
what to do; nothing above the broker knows how many shards there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from chat.environment import redis_server_name as server_name
from chat.fanout.envelope import Backoff, Envelope, RoomFrame, pack
from chat.fanout.envelope import text as _text
from chat.settings import Settings

log = logging.getLogger("chat.fanout.redis_broker")

PUBLISH_BATCH = 512
# Rooms whose shard is remembered; beyond it the memo starts over (hashing again is cheap).
MEMO_LIMIT = 65_536


def score(server: str, room: str) -> int:
    # A server name holds no NUL, so (server, room) pairs never run into each other.
    digest = hashlib.blake2b(f"{server}\0{room}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(room: str, servers: Sequence[str]) -> int:
    """The index in `servers` of the server that carries `room` (rendezvous hashing)."""
    return max(range(len(servers)), key=lambda i: (score(servers[i], room), servers[i]))


class Ring:
    """Room -> shard index over a fixed list of server names, remembered per room."""

    def __init__(self, servers: Sequence[str]) -> None:
        self.servers = tuple(servers)
        self._memo: dict[str, int] = {}

    @classmethod
    def of(cls, urls: Sequence[str]) -> Ring:
        return cls([server_name(url) for url in urls])

    def __call__(self, room: str) -> int:
        if len(self.servers) == 1:
            return 0  # one server: no hashing on the message path
        index = self._memo.get(room)
        if index is None:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            index = self._memo[room] = owner(room, self.servers)
        return index


class Shard:
    """One Redis server as this process uses it (see the module docstring)."""

    def __init__(
        self,
        index: int,
        name: str,
        redis: Redis,
        settings: Settings,
        *,
        origin: str,
        several: bool,
        channels: Callable[[], Iterable[str]],
        received: Callable[[Shard, bytes], None],
        catch_up: Callable[[Shard], Awaitable[None]],
    ) -> None:
        self.index = index
        self.name = name
        self.redis = redis
        self.settings = settings
        self.several = several
        self.control = f"{settings.redis_prefix}:control"
        self.origin = origin  # resync requests carry it
        self._channels = channels
        self._received = received
        self._catch_up = catch_up
        self._outbox: deque[tuple[str, bytes | RoomFrame]] = deque()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._resync_needed = False
        self._pubsub: PubSub | None = None  # while subscribed
        self._confirming: dict[str, asyncio.Future[None]] = {}  # channel -> its subscribe
        self._catching_up: asyncio.Task[None] | None = None
        self._catch_up_again = False
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Set while the subscriber is subscribed (tests, /readyz and the metrics read it).
        self.subscribed = asyncio.Event()
        self.frames_heard = 0  # room frames from other nodes, through this server
        self._heard = 0.0  # when the subscriber last heard anything (loop time)

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._subscribe_forever(), name=f"redis-subscriber-{self.index}"),
            asyncio.create_task(self._publish_forever(), name=f"redis-publisher-{self.index}"),
        ]

    async def drain(self) -> None:
        if self._outbox:
            await self._drained.wait()

    async def stop(self) -> None:
        self._stopping = True
        pending = set(self._tasks + ([self._catching_up] if self._catching_up else []))
        # Cancel until they are done: a cancellation that lands inside redis-py's timed read
        # can be taken for its timeout (get_message then returns None), so that one cancel()
        # is lost; the subscriber would go on listening and shutdown would hang.
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)

    # --- publishing ---

    def send(self, channel: str, data: bytes | RoomFrame) -> None:
        """Queue an encoded envelope, or a room's frame (sent with the room's other frames
        queued meanwhile, as one message: chat.fanout.envelope.pack)."""
        if len(self._outbox) >= self.settings.publish_queue_size:
            # This server is down or too slow: drop the oldest; nodes re-read it from the database.
            self._outbox.popleft()
            self._resync_needed = True
        self._outbox.append((channel, data))
        self._drained.clear()
        self._outbox_ready.set()

    async def _publish_forever(self) -> None:
        backoff = Backoff(self._what("publisher"), self.settings.redis_backoff_max_seconds)
        while True:
            if not self._outbox:
                self._drained.set()
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            taken = [self._outbox.popleft() for _ in range(min(PUBLISH_BATCH, len(self._outbox)))]
            batch = pack(self.origin, taken)
            if self._resync_needed:
                # Cleared now, so a frame dropped while this batch is on its way asks again.
                self._resync_needed = False
                # On this server's own control channel: only its rooms lost frames.
                batch.append((self.control, Envelope("r", self.origin).encode()))
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, data in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # What was committed is in the database: the batch is dropped, not retried, and
                # every node re-reads it once the server is back (its own reconnect or our resync).
                self._resync_needed = True
                await backoff.failed(exc)
                continue
            backoff.succeeded()

    # --- subscribing ---

    async def subscribe(self, channel: str) -> None:
        """Subscribe now, and wait (at most REDIS_TIMEOUT_SECONDS) for Redis to confirm it; while
        the server is away, the next subscription after it is back includes the channel."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        confirmed = self._confirming.get(channel)
        if confirmed is None:
            confirmed = self._confirming[channel] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                await pubsub.subscribe(channel)
                await asyncio.shield(confirmed)
        except (RedisError, OSError, TimeoutError) as exc:
            # The subscriber notices the lost connection, subscribes again and catches up.
            log.debug("subscribing to %s on %s: %s", channel, self.name, exc)

    async def unsubscribe(self, channels: Sequence[str]) -> None:
        pubsub = self._pubsub
        if not channels or pubsub is None:
            return
        try:
            await pubsub.unsubscribe(*channels)
        except (RedisError, OSError) as exc:  # the next subscription leaves them out
            log.debug("unsubscribing on %s: %s", self.name, exc)

    async def _subscribe_forever(self) -> None:
        backoff = Backoff(self._what("subscriber"), self.settings.redis_backoff_max_seconds)
        while not self._stopping:
            pubsub = self.redis.pubsub()
            try:
                # The control channel last: its confirmation comes after every room's.
                await pubsub.subscribe(*self._channels(), self.control)
                await self._confirmed(pubsub)
                self._pubsub = pubsub
                self.subscribed.set()
                backoff.succeeded()
                # Subscribed first, then read the database: whatever was committed before the
                # subscription is in the read, whatever after comes through the channel.
                await self._catch_up(self)
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
                    if _text(msg["channel"]) == self.control:
                        return

    async def _listen(self, pubsub: PubSub) -> None:
        """Feed the broker until the connection fails or falls silent (`_watch`)."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        reader = asyncio.create_task(self._read(pubsub), name=f"redis-reader-{self.index}")
        watch = asyncio.create_task(self._watch(pubsub), name=f"redis-watch-{self.index}")
        try:
            done, _ = await asyncio.wait({reader, watch}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            for task in (reader, watch):
                task.cancel()
            await asyncio.gather(reader, watch, return_exceptions=True)

    async def _read(self, pubsub: PubSub) -> None:
        # Without a timeout: a timed read costs a timer per message, and a cancellation that
        # lands in one can be taken for its timeout (see `stop`). Silence is `_watch`'s.
        loop = asyncio.get_running_loop()
        while not self._stopping:
            msg = await pubsub.get_message(timeout=None)
            if msg is None:
                continue
            self._heard = loop.time()
            if msg["type"] == "message":
                self._received(self, msg["data"])
            elif msg["type"] == "subscribe":
                self._confirm(_text(msg["channel"]))

    async def _watch(self, pubsub: PubSub) -> None:
        """Ping when nothing was heard for a heartbeat, so a silently dead connection is noticed
        too: raise after three heartbeats without a word."""
        beat = self.settings.presence_heartbeat_seconds
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(beat)
            silent = loop.time() - self._heard
            if silent >= 3 * beat:
                raise ConnectionError(f"no answer from redis for {silent:.1f} s")
            if silent >= beat:
                await pubsub.ping()

    def _confirm(self, channel: str) -> None:
        confirmed = self._confirming.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    # --- catching up after another node's resync request ---

    def resync(self) -> None:
        if self._catching_up is not None and not self._catching_up.done():
            self._catch_up_again = True
            return
        self._catching_up = asyncio.create_task(self._catch_up_repeatedly())

    async def _catch_up_repeatedly(self) -> None:
        while True:
            self._catch_up_again = False
            await self._catch_up(self)
            if not self._catch_up_again:
                return

    def _what(self, task: str) -> str:
        # One server: the log lines of old ("redis lost (subscriber)"); several: which one.
        return f"{task} {self.name}" if self.several else task


async def drain_all(shards: Sequence[Shard], seconds: float) -> None:
    """Let what is queued go out (the leave announcements of a shutdown), briefly."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await asyncio.gather(*(shard.drain() for shard in shards))


class ShardCollector(Collector):
    """Per Redis server: whether this node is subscribed there, and the frames heard through it."""

    def __init__(self, shards: Sequence[Shard]) -> None:
        self.shards = shards

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "chat_redis_shard_up",
            "1 while this node is subscribed on the Redis server, else 0",
            labels=["shard"],
        )
        heard = CounterMetricFamily(
            "chat_redis_shard_frames_heard",
            "Room frames received from other nodes through the Redis server",
            labels=["shard"],
        )
        for shard in self.shards:
            up.add_metric([shard.name], 1.0 if shard.subscribed.is_set() else 0.0)
            heard.add_metric([shard.name], shard.frames_heard)
        yield up
        yield heard
