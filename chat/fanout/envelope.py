"""What the Redis fan-out shares with Redis presence: the client, reconnect backoff, and the
envelope every frame travels in."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random

import orjson
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from chat.fanout.broker import CloseSockets
from chat.settings import Settings

# Backoff speaks for the Redis fan-out, under its logger as before.
log = logging.getLogger("chat.fanout.redis_broker")

FIRST_BACKOFF = 0.1


def redis_client(settings: Settings, url: str | None = None) -> Redis:
    """A client that fails fast: the loops here own retrying, and a publish must never stall.
    For `url`, or else the first server REDIS_URL lists."""
    url = url or settings.redis_urls[0]
    return Redis.from_url(
        url,
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


def text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()
