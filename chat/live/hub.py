"""The live connections of this process: which socket is in which room, and fan-out to them.

Fan-out never awaits a client: `deliver` puts a message in its room's inbox, and the write rounds
(chat.live.rounds) hand it to the members and write it. Joining is gap-free: the connection is
registered in the room *before* the history is read, and live frames that arrive meanwhile are
held back; when the history is sent, the held frames follow it, minus any message the history
already contained.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine, Iterator
from typing import Any

from aiohttp import WSCloseCode

from chat.live.connection import Connection, HubStats
from chat.live.rounds import Flusher, Room
from chat.models import Position
from chat.tasks import TaskSet


class Hub:
    """Rooms -> connections for this process. Only the event loop thread touches it."""

    def __init__(self) -> None:
        self.connections: dict[int, Connection] = {}
        self.stats = HubStats()
        # user id -> that user's connections here: the per-user cap is checked on every upgrade.
        self._by_user: dict[int, set[Connection]] = {}
        self.flusher = Flusher()
        self._rooms: dict[str, Room] = {}
        # room -> username -> that user's sockets joined to it here. Kept as sockets join and
        # leave, so that "is this person here" and "how many people" cost the same in a room
        # of ten thousand as in a room of two (a reconnect storm asks both on every join).
        self._people: dict[str, dict[str, int]] = {}
        self._tasks = TaskSet("background task after a disconnect")

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run follow-up work (announcements after a disconnect) to completion in the background."""
        self._tasks.spawn(coro)

    async def drain_tasks(self) -> None:
        await self._tasks.wait()

    def __len__(self) -> int:
        return len(self.connections)

    async def keep_alive(self, interval: float) -> None:
        """Notice dead peers: one timer for the whole hub (not one per socket, re-armed on
        every frame), and nothing per frame but `conn.heard = True`. A peer that sends nothing
        for `interval` is pinged, and dropped if it has not answered `interval / 2` later."""
        while True:
            await asyncio.sleep(interval / 2)
            self._check_alive()

    def _check_alive(self) -> None:
        # A function of its own: a loop variable in `keep_alive` would keep the last
        # connection checked (socket, request and all) alive while the sweep sleeps.
        for conn in tuple(self.connections.values()):
            conn.check_alive()

    def register(self, conn: Connection) -> None:
        conn.stats = self.stats
        self.connections[conn.id] = conn
        self._by_user.setdefault(conn.user.id, set()).add(conn)
        conn.attach(self.flusher)

    def unregister(self, conn: Connection) -> list[str]:
        """Forget a connection; return the rooms it was in."""
        self.connections.pop(conn.id, None)
        mine = self._by_user.get(conn.user.id)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del self._by_user[conn.user.id]
        left = sorted(conn.rooms | conn.joining.keys())
        for room in conn.rooms:
            self._parted(conn, room)
        for room in left:
            self._discard(room, conn)
        conn.seen.clear()
        conn.joining.clear()
        return left

    def begin_join(self, conn: Connection, room: str) -> None:
        """Start receiving the room's frames, held back until `finish_join`."""
        self.flusher.expand()  # what was published before is not for the joiner
        # A re-join (the client saw a gap) holds frames back again until the new history.
        if conn.seen.pop(room, None) is not None:
            self._parted(conn, room)
        conn.joining[room] = []
        found = self._rooms.get(room)
        if found is None:
            found = self._rooms[room] = Room(room)
        found.members.add(conn)

    def finish_join(self, conn: Connection, room: str, history: str, position: Position) -> None:
        """Send the joiner its history (read at `position`), then what was held meanwhile and
        is newer."""
        self.flusher.expand()  # everything published so far is held, or in the history
        held = conn.joining.pop(room, None)
        if held is None:  # left (or was closed) while the history was being read
            return
        conn.seen[room] = position.seq  # joined
        people = self._people.setdefault(room, {})
        people[conn.username] = people.get(conn.username, 0) + 1
        conn.send(history)
        for seq, payload in held:
            if seq is None or seq > conn.seen[room]:
                conn.send(payload)
                if seq is not None:
                    conn.seen[room] = seq

    def leave(self, conn: Connection, room: str) -> bool:
        """Take a connection out of a room; False if it was not in it."""
        self.flusher.expand()  # what was published before it left is still for it
        was_in = room in conn.rooms or room in conn.joining
        conn.joining.pop(room, None)
        if conn.seen.pop(room, None) is not None:
            self._parted(conn, room)
        self._discard(room, conn)
        return was_in

    def _parted(self, conn: Connection, room: str) -> None:
        """One of the user's sockets joined to `room` is no longer."""
        people = self._people.get(room)
        if people is None:
            return
        left = people.get(conn.username, 0) - 1
        if left > 0:
            people[conn.username] = left
        else:
            people.pop(conn.username, None)
            if not people:
                del self._people[room]

    def _discard(self, room: str, conn: Connection) -> None:
        found = self._rooms.get(room)
        if found is not None:
            found.members.discard(conn)
            if not found.members:
                del self._rooms[room]

    def write_now(self) -> None:
        """See `Flusher.write_now`."""
        self.flusher.write_now()

    def deliver(self, room: str, payload: str, seq: int | None = None) -> int:
        """Queue one serialised message for every member here; return how many. It waits in
        the room's inbox until the next write slice, which hands each member all that came
        meanwhile at once and frames it once for all of them."""
        found = self._rooms.get(room)
        if found is None:
            return 0
        if not found.inbox:
            self.flusher.mark_room(found)
        found.inbox.append((seq, payload.encode()))
        members = len(found.members)
        if seq is not None:  # a chat message (only those carry a seq)
            self.stats.messages_out += members
        return members

    def has_members(self, room: str) -> bool:
        return room in self._rooms

    def members(self, room: str) -> set[Connection]:
        found = self._rooms.get(room)
        return set() if found is None else set(found.members)

    def people(self, room: str) -> Collection[str]:
        """The users with a socket joined to the room here (a live view: copy to keep)."""
        found = self._people.get(room)
        return () if found is None else found.keys()

    def is_in(self, username: str, room: str) -> bool:
        found = self._people.get(room)
        return found is not None and username in found

    def sockets_in(self, room: str) -> int:
        """Sockets in the room here, those still joining included."""
        found = self._rooms.get(room)
        return 0 if found is None else len(found.members)

    def head_count(self, room: str) -> int:
        found = self._people.get(room)
        return 0 if found is None else len(found)

    def head_counts(self) -> dict[str, int]:
        return {room: len(people) for room, people in self._people.items()}

    def room_names(self) -> list[str]:
        return list(self._rooms)

    def shown(self) -> dict[str, int]:
        """Per room with members here, the highest seq any of them has been given."""
        self.flusher.expand()
        return {
            name: max((c.seen.get(name, 0) for c in room.members), default=0)
            for name, room in self._rooms.items()
        }

    def reset_room(self, room: str, history: str, position: Position) -> int:
        """The database went back (restored from a backup, a failover to a replica that lags):
        every socket in the room is handed `history` (with `reset`) and counts from `position`
        again. Returns how many sockets."""
        self.flusher.expand()
        found = self._rooms.get(room)
        told = 0
        for conn in tuple(found.members) if found is not None else ():
            if room in conn.seen:  # a joiner's own history comes from the database as it is
                conn.seen[room] = position.seq
                conn.send(history)
                told += 1
        return told

    def of_user(self, user_id: int) -> Iterator[Connection]:
        return iter(tuple(self._by_user.get(user_id, ())))

    def close_where(self, match: Callable[[Connection], bool], code: int, reason: str) -> int:
        """Close every connection the predicate picks (logout, kick); return how many."""
        picked = [c for c in self.connections.values() if match(c)]
        for conn in picked:
            conn.close_soon(code, reason)
        return len(picked)

    async def close_all(self, code: int = WSCloseCode.GOING_AWAY, reason: str = "") -> None:
        # Iterate over a copy: each close ends a handler, which unregisters its connection.
        conns = list(self.connections.values())
        if conns:
            await asyncio.gather(*(c.close(code, reason) for c in conns), return_exceptions=True)
        await self.drain_tasks()

    @property
    def task_count(self) -> int:
        """Background follow-up tasks still running (the churn test wants none left)."""
        return len(self._tasks)
