"""Who is online where. In one process the hub is the truth; with Redis (chat.fanout.redis_presence)
every node publishes its part with a lease and readers take the union."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from itertools import islice
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

    async def glimpse(self, room: str, limit: int, me: str) -> tuple[list[str], int]:
        """At most `limit` of the room's people (`me` among them if present) and how many
        there are in all, at a cost that does not grow with the room."""
        ...

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
        return set(self.hub.people(room))

    async def room_counts(self) -> dict[str, int]:
        return self.hub.head_counts()

    async def user_in_room(self, username: str, room: str) -> bool:
        return self.hub.is_in(username, room)

    async def glimpse(self, room: str, limit: int, me: str) -> tuple[list[str], int]:
        return pick(self.hub.people(room), limit, me), self.hub.head_count(room)

    async def changed(self) -> None:
        return None


def pick(people: Collection[str], limit: int, me: str) -> list[str]:
    """The first `limit` of `people` (in the order they came), `me` among them if present:
    a room of any size costs `limit` steps."""
    picked = list(islice(people, limit))
    if me not in picked and me in people and picked:
        picked[-1] = me
    return picked


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
