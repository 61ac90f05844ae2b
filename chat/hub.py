"""The live connections of this process: which socket is in which room, and fan-out to them.

Fan-out never awaits a client. `Hub.deliver` appends the already-serialised frame to each member's
bounded queue and returns; one writer task per connection drains its queue. A connection whose
queue is full is closed with 1013 (it reconnects and resumes with `since`), so one slow reader can
never delay the others (the gorilla/websocket chat example's design).

Joining is gap-free: the connection is registered in the room *before* the history is read, and
live frames that arrive meanwhile are held back; when the history is sent, the held frames follow
it, minus any message the history already contained.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from chat.models import User

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(slots=True)
class HubStats:
    """Plain counters for /metrics, read at scrape time: nothing is paid per frame but an add."""

    frames_out: int = 0  # frames queued for a client
    messages_out: int = 0  # chat messages queued for a client (one per recipient)
    frames_dropped: int = 0  # frames never sent: queued for a socket that was closed first
    slow_closes: int = 0  # sockets closed with 1013 because their queue was full


@dataclass(eq=False)
class Connection:
    """One WebSocket of one user (a browser tab)."""

    ws: web.WebSocketResponse
    user: User
    session_id: str
    queue_limit: int
    close_timeout: float = 5.0
    id: int = field(default_factory=lambda: next(_ids))
    connected_at: float = field(default_factory=time.time)
    rooms: set[str] = field(default_factory=set)
    # Rooms being joined: live frames held back until the history has been sent.
    joining: dict[str, list[tuple[int | None, str]]] = field(default_factory=dict)
    # Per room, the highest seq this socket has been given: with several nodes a message can
    # reach the hub after the joiner's history already held it, and must not arrive twice.
    seen: dict[str, int] = field(default_factory=dict)
    closing: bool = False
    _queue: deque[str] = field(default_factory=deque)
    _wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _closer: asyncio.Task[None] | None = None
    stats: HubStats = field(default_factory=HubStats)

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def queued(self) -> int:
        return len(self._queue)

    def send(self, payload: str) -> None:
        """Queue a frame for this connection; never blocks, never awaits."""
        if self.closing:
            self.stats.frames_dropped += 1
            return
        if len(self._queue) >= self.queue_limit:
            log.warning("closing connection %s of %s: send queue full", self.id, self.username)
            self._close_slow()
            return
        self.stats.frames_out += 1
        self._queue.append(payload)
        self._wakeup.set()

    def _close_slow(self) -> None:
        if self._closer is None:
            self.stats.slow_closes += 1
        # The frame that did not fit is dropped too; the client resumes with `since`.
        self.stats.frames_dropped += 1
        self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "too slow: reconnect and resume")

    def deliver(self, room: str, payload: str, seq: int | None) -> None:
        held = self.joining.get(room)
        if held is not None:
            if len(held) >= self.queue_limit:
                self._close_slow()
                return
            held.append((seq, payload))
            return
        if seq is not None:
            if seq <= self.seen.get(room, 0):
                return
            self.seen[room] = seq
        self.send(payload)

    async def run_writer(self) -> None:
        """Drain the queue into the socket until the connection closes."""
        queue = self._queue
        while not self.closing:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self.ws.send_str(queue.popleft())
            except ConnectionError:
                # The peer is gone; the read loop sees the close and unregisters us.
                return

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (fan-out, a broker event); idempotent."""
        if self._closer is not None:
            return
        self.closing = True
        self.stats.frames_dropped += len(self._queue)
        self._queue.clear()
        self._wakeup.set()
        self._closer = asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(self.close_timeout):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except TimeoutError:
            # A peer that reads nothing never lets the close frame out: drop the TCP connection.
            log.info("connection %s did not close in time; aborting it", self.id)
            if self.ws._req is not None and self.ws._req.transport is not None:
                self.ws._req.transport.abort()


class Hub:
    """Rooms -> connections for this process. Only the event loop thread touches it."""

    def __init__(self) -> None:
        self.connections: dict[int, Connection] = {}
        self.stats = HubStats()
        self._rooms: dict[str, set[Connection]] = {}
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run follow-up work (announcements after a disconnect) to completion in the background."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def drain_tasks(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def __len__(self) -> int:
        return len(self.connections)

    def register(self, conn: Connection) -> None:
        conn.stats = self.stats
        self.connections[conn.id] = conn

    def unregister(self, conn: Connection) -> list[str]:
        """Forget a connection; return the rooms it was in."""
        self.connections.pop(conn.id, None)
        left = sorted(conn.rooms | conn.joining.keys())
        for room in left:
            self._discard(room, conn)
        conn.rooms.clear()
        conn.joining.clear()
        return left

    def begin_join(self, conn: Connection, room: str) -> None:
        """Start receiving the room's frames, held back until `finish_join`."""
        if room in conn.rooms:
            # A re-join (the client saw a gap): hold frames back again until the new history.
            conn.rooms.discard(room)
        conn.joining[room] = []
        self._rooms.setdefault(room, set()).add(conn)

    def finish_join(self, conn: Connection, room: str, history: str, last_seq: int) -> None:
        held = conn.joining.pop(room, None)
        if held is None:  # left (or was closed) while the history was being read
            return
        conn.rooms.add(room)
        conn.send(history)
        conn.seen[room] = last_seq
        for seq, payload in held:
            if seq is None or seq > conn.seen[room]:
                conn.send(payload)
                if seq is not None:
                    conn.seen[room] = seq

    def leave(self, conn: Connection, room: str) -> bool:
        """Take a connection out of a room; False if it was not in it."""
        was_in = room in conn.rooms or room in conn.joining
        conn.rooms.discard(room)
        conn.joining.pop(room, None)
        conn.seen.pop(room, None)
        self._discard(room, conn)
        return was_in

    def _discard(self, room: str, conn: Connection) -> None:
        members = self._rooms.get(room)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._rooms[room]

    def deliver(self, room: str, payload: str, seq: int | None = None) -> int:
        """Queue one serialised frame for every member of the room here; return how many."""
        members = self._rooms.get(room)
        if not members:
            return 0
        # Copy: a full queue closes a connection, which must not change the set mid-iteration.
        for conn in tuple(members):
            conn.deliver(room, payload, seq)
        if seq is not None:  # a chat message (only those carry a seq)
            self.stats.messages_out += len(members)
        return len(members)

    def has_members(self, room: str) -> bool:
        return room in self._rooms

    def members(self, room: str) -> set[Connection]:
        return set(self._rooms.get(room, ()))

    @property
    def task_count(self) -> int:
        """Background follow-up tasks still running (the churn test wants none left)."""
        return len(self._tasks)

    def room_names(self) -> list[str]:
        return list(self._rooms)

    def of_user(self, user_id: int) -> Iterator[Connection]:
        return (c for c in self.connections.values() if c.user.id == user_id)

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
