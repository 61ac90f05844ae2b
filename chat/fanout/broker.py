"""How a published frame reaches every node's hub. In one process: straight to the hub. With
Redis (chat.fanout.redis_broker): one pub/sub subscriber per process and Redis server feeds
the local hub.

Besides room frames there are control events (close a user's or a session's sockets), which must
also reach every node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode

from chat.errors import Forbidden
from chat.live.connection import Connection
from chat.live.hub import Hub
from chat.live.protocol import error_frame

log = logging.getLogger(__name__)

# What a signal's handler is given: the JSON object it was sent with.
SignalHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class CloseSockets:
    """Close the sockets of one session (logout) or of every session of a user (kick, ban,
    password change, log out everywhere).

    `keep_session_id` spares one session (the one that changed the password). With `room` set,
    the sockets stay open and only their subscription to that room is closed (a member removed
    from a private room): they get a `forbidden` error naming the room.
    """

    reason: str
    user_id: int | None = None
    session_id: str | None = None
    code: int = WSCloseCode.POLICY_VIOLATION
    room: str | None = None
    keep_session_id: str | None = None


class Broker(Protocol):
    def publish(self, room: str, payload: str, seq: int | None = None) -> None:
        """Hand a frame to every node's hub (a chat message with its `seq`). Never waits: the
        local hub gets it now, other nodes as soon as the broker can send it."""

    async def control(self, event: CloseSockets) -> None: ...

    async def follow(self, room: str) -> None:
        """A socket here is joining the room: from now on the room's frames must reach this
        node. Called before the joiner's history is read."""

    def joined(self, room: str, seq: int) -> None:
        """A joiner here was given the room's history up to `seq`."""

    def signal(self, kind: str, body: dict[str, Any]) -> None:
        """Hand a small JSON object to the handlers of `kind` on every node (this one's at
        once), on the path control events take: rare events that any node may concern (a
        notification for someone's open tabs, a notification level changed). Never waits."""

    def on_signal(self, kind: str, handler: SignalHandler) -> None:
        """Call `handler` with each signal of `kind`, whichever node sent it."""


class Signals:
    """The signal handlers of one node, shared by every broker."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[SignalHandler]] = {}

    def add(self, kind: str, handler: SignalHandler) -> None:
        self._handlers.setdefault(kind, []).append(handler)

    def dispatch(self, kind: str, body: dict[str, Any]) -> None:
        for handler in self._handlers.get(kind, ()):
            try:
                handler(body)
            except Exception:  # one bad handler must not stop the others, nor the subscriber
                log.exception("a %r signal's handler failed", kind)


def apply_control(hub: Hub, event: CloseSockets) -> int:
    """What a control event does on one node; shared by every broker. Returns how many
    connections it touched."""

    def picked(c: Connection) -> bool:
        return (
            (event.user_id is None or c.user.id == event.user_id)
            and (event.session_id is None or c.session_id == event.session_id)
            and (event.keep_session_id is None or c.session_id != event.keep_session_id)
        )

    if event.room is None:
        return hub.close_where(picked, event.code, event.reason)
    room = event.room
    touched = 0
    for conn in hub.members(room):
        if picked(conn) and hub.leave(conn, room):
            conn.send(error_frame(Forbidden(event.reason, ref=room)))
            touched += 1
    return touched


class LocalBroker:
    """Single-process fan-out: publishing is delivering."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.signals = Signals()

    def publish(self, room: str, payload: str, seq: int | None = None) -> None:
        self.hub.deliver(room, payload, seq)

    async def control(self, event: CloseSockets) -> None:
        apply_control(self.hub, event)

    async def follow(self, room: str) -> None:
        return None  # every frame of this process is published here

    def joined(self, room: str, seq: int) -> None:
        return None

    def signal(self, kind: str, body: dict[str, Any]) -> None:
        self.signals.dispatch(kind, body)

    def on_signal(self, kind: str, handler: SignalHandler) -> None:
        self.signals.add(kind, handler)
