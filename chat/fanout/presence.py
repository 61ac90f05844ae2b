"""Who is online where. In one process the hub is the truth; with Redis (chat.fanout.redis_presence)
every node publishes its part with a lease and readers take the union."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chat.live.hub import Hub


@dataclass(frozen=True, slots=True)
class OnlineConnection:
    """One open socket as the admin page shows it."""

    node: str
    connection_id: int
    username: str
    rooms: tuple[str, ...]
    since: float  # epoch seconds


class Presence(Protocol):
    async def connections(self) -> list[OnlineConnection]: ...

    async def room_users(self, room: str) -> set[str]: ...

    async def room_counts(self) -> dict[str, int]: ...

    async def user_in_room(self, username: str, room: str) -> bool: ...

    async def changed(self) -> None:
        """Called after this node's connections or rooms changed."""


class LocalPresence:
    """Presence of a single process, read straight from its hub."""

    def __init__(self, hub: Hub, node: str) -> None:
        self.hub = hub
        self.node = node

    def local_connections(self) -> list[OnlineConnection]:
        return [
            OnlineConnection(
                node=self.node,
                connection_id=conn.id,
                username=conn.username,
                rooms=tuple(sorted(conn.rooms)),
                since=conn.connected_at,
            )
            for conn in self.hub.connections.values()
        ]

    async def connections(self) -> list[OnlineConnection]:
        return self.local_connections()

    async def room_users(self, room: str) -> set[str]:
        return {c.username for c in self.hub.members(room) if room in c.rooms}

    async def room_counts(self) -> dict[str, int]:
        return {room: len(await self.room_users(room)) for room in self.hub.room_names()}

    async def user_in_room(self, username: str, room: str) -> bool:
        return username in await self.room_users(room)

    async def changed(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class OnlineUser:
    """One person on the admin page: every tab on every node folded together."""

    username: str
    rooms: tuple[str, ...]
    connections: int
    nodes: tuple[str, ...]
    since: float


def by_user(connections: list[OnlineConnection]) -> list[OnlineUser]:
    grouped: dict[str, list[OnlineConnection]] = {}
    for conn in connections:
        grouped.setdefault(conn.username, []).append(conn)
    return [
        OnlineUser(
            username=name,
            rooms=tuple(sorted({r for c in conns for r in c.rooms})),
            connections=len(conns),
            nodes=tuple(sorted({c.node for c in conns})),
            since=min(c.since for c in conns),
        )
        for name, conns in sorted(grouped.items())
    ]
