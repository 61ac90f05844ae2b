"""What the Redis fan-out shares with Redis presence: the client, reconnect backoff, and the
envelope every frame travels in."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Iterable, Sequence

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


# A room frame waiting in a publisher's outbox: (room, seq, payload); everything else waits
# there already encoded.
RoomFrame = tuple[str, int | None, str]


def encode_room_frames(origin: str, room: str, frames: Sequence[tuple[int | None, str]]) -> bytes:
    """One room's frames as one Redis message. One frame: an "m" envelope. Several (a burst
    queued while the last publish was on its way): a "b" header line with their count, then
    each frame's seq and byte length on a line, then its bytes (a frame may hold anything)."""
    if len(frames) == 1:
        ((seq, payload),) = frames
        return Envelope("m", origin, room, seq, payload).encode()
    parts = [f"b {origin} {len(frames)} {room}\n".encode()]
    for seq, payload in frames:
        data = payload.encode()
        parts.append(f"{'-' if seq is None else seq} {len(data)}\n".encode())
        parts.append(data)
    return b"".join(parts)


def decode_room_frames(data: bytes) -> tuple[str, list[tuple[int | None, str]]]:
    """The room and the frames of an "m" or "b" envelope (ValueError if malformed)."""
    if data.startswith(b"m "):
        envelope = Envelope.decode(data)
        return envelope.room, [(envelope.seq, envelope.payload)]
    end = data.index(b"\n")
    _, _, count, room = data[:end].decode().split(" ", 3)
    frames: list[tuple[int | None, str]] = []
    at = end + 1
    for _ in range(int(count)):
        end = data.find(b"\n", at)
        if end < 0:
            raise ValueError("a frame runs past the end of the message")
        seq, size = data[at:end].split(b" ")
        at = end + 1 + int(size)
        if at > len(data):
            raise ValueError("a frame runs past the end of the message")
        frames.append((None if seq == b"-" else int(seq), data[end + 1 : at].decode()))
    if at != len(data):
        raise ValueError("bytes after the last frame")
    return room, frames


def pack(origin: str, batch: Iterable[tuple[str, bytes | RoomFrame]]) -> list[tuple[str, bytes]]:
    """What a publisher sends for a batch taken from its outbox: each room's consecutive frames
    as one message, in the order of its first frame. Anything else (a control event, a
    signal) keeps its place: no frame moves across it, so a member removed by a control event
    is not sent a message that followed the removal."""
    out: list[tuple[str, bytes]] = []
    rooms: dict[str, tuple[str, list[tuple[int | None, str]]]] = {}

    def close() -> None:
        out.extend(
            (channel, encode_room_frames(origin, room, frames))
            for channel, (room, frames) in rooms.items()
        )
        rooms.clear()

    for channel, item in batch:
        if isinstance(item, bytes):
            close()
            out.append((channel, item))
        else:
            room, seq, payload = item
            rooms.setdefault(channel, (room, []))[1].append((seq, payload))
    close()
    return out


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
