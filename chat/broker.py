"""How a published frame reaches every node's hub. In one process: straight to the hub. With
Redis (see broker_redis): one pub/sub subscriber per process feeds the local hub.

Besides room frames there are control events (close a user's or a session's sockets), which must
also reach every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSCloseCode

from chat.hub import Hub


@dataclass(frozen=True, slots=True)
class CloseSockets:
    """Close the sockets of one session (logout) or of every session of a user (kick)."""

    reason: str
    user_id: int | None = None
    session_id: str | None = None
    code: int = WSCloseCode.POLICY_VIOLATION


class Broker(Protocol):
    async def publish(self, room: str, payload: str, seq: int | None = None) -> None: ...

    async def control(self, event: CloseSockets) -> None: ...


def apply_control(hub: Hub, event: CloseSockets) -> int:
    """What a control event does on one node; shared by every broker."""
    return hub.close_where(
        lambda c: (
            (event.user_id is None or c.user.id == event.user_id)
            and (event.session_id is None or c.session_id == event.session_id)
        ),
        event.code,
        event.reason,
    )


class LocalBroker:
    """Single-process fan-out: publishing is delivering."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, room: str, payload: str, seq: int | None = None) -> None:
        self.hub.deliver(room, payload, seq)

    async def control(self, event: CloseSockets) -> None:
        apply_control(self.hub, event)
