"""The live connections of this process: which socket is in which room, and fan-out to them.

Fan-out never awaits a client. `Hub.deliver` puts a message in its room's inbox; at the next
write slice (`Flusher`) each room hands its members everything that came meanwhile in one call,
and each member's waiting documents go out as one frame (newline-separated JSON when there are
several: docs/protocol.md, "Batching"), framed once for all the members that wait for the same
documents and written straight to each transport. Writes are gathered into rounds written a slice
at a time, so a burst of messages (one group commit, or several commits during one round) costs
each recipient one write. A connection whose transport is backed up keeps its documents in its
bounded list until it drains; one whose list is full is closed with 1013 (it reconnects and
resumes with `since`), so one slow reader can never delay the others (the gorilla/websocket chat
example's design). No task per connection: an idle one costs only its objects; a task exists
only while a connection's transport is backed up, to wait for it to drain.

Joining is gap-free: the connection is registered in the room *before* the history is read, and
live frames that arrive meanwhile are held back; when the history is sent, the held frames follow
it, minus any message the history already contained.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, KeysView
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, web

from chat.live.wire import PING_FRAME, batch_frame, text_frame
from chat.models import User
from chat.tasks import TaskSet

log = logging.getLogger(__name__)

_ids = itertools.count(1)


@dataclass(slots=True)
class HubStats:
    """Plain counters for /metrics, read at scrape time: nothing is paid per frame but an add."""

    frames_in: int = 0  # text frames received from clients
    messages_in: int = 0  # chat messages accepted from clients and stored
    frames_out: int = 0  # frames queued for a client
    messages_out: int = 0  # chat messages queued for a client (one per recipient)
    frames_dropped: int = 0  # frames never sent: queued for a socket that was closed first
    slow_closes: int = 0  # sockets closed with 1013 because their queue was full


# Writes (one syscall per connection) are most of the cost of fan-out. When a busy room keeps
# them going back to back, waiting between rounds lets more messages share each write, so the
# share of one core spent writing is bounded by FLUSH_SHARE however fast messages come. The
# budget is a token bucket: up to FLUSH_BURST seconds of writing go out at once, so a room that
# is busy only in bursts (or not busy) never waits; only sustained load does, once the bucket is
# empty, and then each round waits (1 - share) / share times its own cost. Measured with
# `python -m bench --only broadcast --rates 10 100 --spread` (a message every 10 ms, each needing
# a ~10 ms round of 1000 writes): a third of a core gave p99 40 ms; half gives 24 ms at 6.7 CPU-s
# per 1M deliveries; 0.6 gave 20 ms at 8.0 CPU-s, and at 1M/s offered so many more (smaller)
# frames that the load generator saturated. The other half is for reading and storing.
FLUSH_SHARE = 0.5
FLUSH_BURST = 0.05
# Connections written per event-loop iteration. Between slices the loop reads sockets and
# finishes commits, so messages that arrive during a long round join the writes not made yet
# (one frame per connection for the lot) instead of waiting for the next round. While a burst
# is being read, one iteration takes milliseconds: with slices of 64, most acks of the burst's
# first commits waited for its last commit (`python -m bench --only ingest`, p99 57 against 52).
FLUSH_SLICE = 256


class Flusher:
    """Connections with frames waiting, written out in rounds: one starts on the next
    event-loop iteration, unless the write budget is spent; see FLUSH_SHARE. Before each slice,
    what was published to rooms meanwhile is handed to their members (`expand`)."""

    __slots__ = (
        "_cost",
        "_dirty",
        "_handle",
        "_loop",
        "_next_at",
        "_pos",
        "_refilled",
        "_rooms",
        "_round",
        "_tokens",
    )

    def __init__(self) -> None:
        self._dirty: list[Connection] = []  # waiting for the next round
        self._round: list[Connection] = []  # the round being written, slice by slice
        self._rooms: list[Room] = []  # rooms with documents not handed out yet
        self._pos = 0
        self._cost = 0.0  # CPU time of the round so far
        self._loop: asyncio.AbstractEventLoop | None = None
        # The next flush scheduled (the next slice, or the next round), None when nothing is
        # waiting to be written.
        self._handle: asyncio.Handle | None = None
        self._next_at = 0.0
        self._tokens = FLUSH_BURST
        self._refilled = 0.0

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        self._wake()

    def mark_room(self, room: Room) -> None:
        self._rooms.append(room)
        self._wake()

    def expand(self) -> None:
        """Hand every room's new documents to its members. A room's documents are collected
        until the next slice, so a burst costs each member one call, not one per message."""
        while self._rooms:
            rooms, self._rooms = self._rooms, []
            for room in rooms:
                room.hand_out()

    def _wake(self) -> None:
        if self._handle is not None:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if loop.time() < self._next_at:
            self._handle = loop.call_at(self._next_at, self.flush)
        else:
            self._handle = loop.call_soon(self.flush)

    def write_now(self) -> None:
        """Start the round due on the next loop iteration now. For a caller that has just
        published a batch (the group commit): in a burst, the next iteration first reads
        hundreds of frames, and the batch's acks would wait for that. Not while a round is
        under way or while the write budget says wait."""
        if self._handle is None or self._round or self._loop is None:
            return
        if self._loop.time() < self._next_at:
            return
        self._handle.cancel()
        self.flush()

    def flush(self) -> None:
        """Write the next slice of the current round (starting a round if none is under way)."""
        self.expand()
        if not self._round:
            self._round, self._dirty, self._pos, self._cost = self._dirty, [], 0, 0.0
        # perf_counter, not thread_time: this runs once per slice, and thread_time is a system
        # call; being preempted within one slice is rare.
        started = time.perf_counter()
        end = self._pos + FLUSH_SLICE
        self._write(self._round[self._pos : end])
        self._pos = end
        self._cost += time.perf_counter() - started
        assert self._loop is not None
        if end < len(self._round):
            self._handle = self._loop.call_soon(self.flush)
            return
        self._round = []
        self._handle = None
        now = self._loop.time()
        self._tokens = min(
            FLUSH_BURST, self._tokens + (now - self._refilled) * FLUSH_SHARE - self._cost
        )
        self._refilled = now
        # In debt: the next round starts when the bucket is back at zero.
        self._next_at = now - self._tokens / FLUSH_SHARE if self._tokens < 0 else now
        if self._dirty or self._rooms:
            self._wake()

    @staticmethod
    def _write(dirty: list[Connection]) -> None:
        # Members of one room usually have the very same frames waiting: frame them once.
        last: list[bytes] | None = None
        last_frame = b""
        for conn in dirty:
            pending = conn.pending
            if pending == last:
                conn.write_pending(last_frame)
            else:
                last = pending
                last_frame = conn.write_pending(None)


class Room:
    """A room's connections here, and what was published to it since its members were last
    handed their documents."""

    __slots__ = ("inbox", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Connection] = set()
        self.inbox: list[tuple[int | None, bytes]] = []

    def hand_out(self) -> None:
        docs, self.inbox = self.inbox, []
        if not docs or not self.members:
            return
        datas = [data for _, data in docs]
        seqs = [seq for seq, _ in docs if seq is not None]
        # Members usually take the lot at once; only when the seqs are in order can "newer
        # than what this member has seen" be checked for the lot at once.
        in_order = all(a < b for a, b in itertools.pairwise(seqs))
        first, last = (seqs[0], seqs[-1]) if seqs and in_order else (None, None)
        frame = text_frame(datas[0]) if len(datas) == 1 else None
        # Copy: a full queue closes a connection, which must not change the set mid-iteration.
        for conn in tuple(self.members):
            if in_order:
                conn.take(self.name, docs, datas, first, last, frame)
            else:
                for seq, data in docs:
                    conn.deliver(self.name, data, None, seq)


@dataclass(eq=False, slots=True)
class Connection:
    """One WebSocket of one user (a browser tab)."""

    ws: web.WebSocketResponse
    user: User
    session_id: str
    queue_limit: int
    close_timeout: float = 5.0
    # The socket's transport and the response's drain(); None until `attach` (tests may build
    # a Connection without a socket).
    transport: Any = None
    drain: Callable[[], Awaitable[None]] | None = None
    id: int = field(default_factory=lambda: next(_ids))
    connected_at: float = field(default_factory=time.time)
    # Rooms being joined: live frames held back until the history has been sent.
    joining: dict[str, list[tuple[int | None, bytes]]] = field(default_factory=dict)
    # The rooms joined (see `rooms`), each with the highest seq this socket has been given:
    # with several nodes a message can reach the hub after the joiner's history already held
    # it, and must not arrive twice. (On one node too: a message is committed before it is
    # published, so a join can read it in the history and then see it published.)
    seen: dict[str, int] = field(default_factory=dict)
    closing: bool = False
    # Liveness (see `Hub.keep_alive`): a frame came in since the last check, and how many
    # checks in a row have found none.
    heard: bool = True
    quiet_checks: int = 0
    # Encoded JSON documents waiting for this socket, and the frame of the first one when it is
    # a broadcast's shared frame (reused as is when it is the only one).
    pending: list[bytes] = field(default_factory=list)
    _single: bytes | None = None
    _flusher: Flusher | None = None
    _dirty: bool = False
    _drainer: asyncio.Task[None] | None = None
    _closer: asyncio.Task[None] | None = None
    stats: HubStats = field(default_factory=HubStats)

    @property
    def rooms(self) -> KeysView[str]:
        """The rooms joined (not those still being joined). A view of `seen` rather than a set
        of its own: one container less per connection."""
        return self.seen.keys()

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def queued(self) -> int:
        return len(self.pending)

    def attach(self, flusher: Flusher) -> None:
        self._flusher = flusher
        if self.transport is not None:
            # Pause (and so make `drain` wait) as soon as anything is left unsent, resume only
            # when everything is: what waits meanwhile goes out as one frame.
            self.transport.set_write_buffer_limits(high=0, low=0)

    def send(self, payload: str | bytes) -> None:
        """Queue a frame for this connection; never blocks, never awaits."""
        if self._flusher is not None:
            # What rooms were given before this goes before it.
            self._flusher.expand()
        self.send_encoded(payload.encode() if isinstance(payload, str) else payload, None)

    def send_stored_copy(self, room: str, payload: str, seq: int) -> None:
        """A resend's stored copy (its ack), in its place in this socket's seq order: now if
        the socket was given that seq already; otherwise the message itself is still on its
        way here (with several nodes, after seqs this node is still waiting for) and, carrying
        its client_id, acks the resend when its turn comes."""
        if self._flusher is not None:
            self._flusher.expand()  # what the room was given first counts as given
        if seq <= self.seen.get(room, 0):
            self.send_encoded(payload.encode(), None)

    def send_encoded(self, data: bytes, frame: bytes | None) -> None:
        if self.closing:
            self.stats.frames_dropped += 1
            return
        pending = self.pending
        if len(pending) >= self.queue_limit:
            log.warning("closing connection %s of %s: send queue full", self.id, self.username)
            self._close_slow()
            return
        self.stats.frames_out += 1
        if not pending:
            self._single = frame
        pending.append(data)
        if not self._dirty and self._drainer is None and self._flusher is not None:
            self._dirty = True
            self._flusher.mark(self)

    def _close_slow(self) -> None:
        if self._closer is None:
            self.stats.slow_closes += 1
        # The frame that did not fit is dropped too; the client resumes with `since`.
        self.stats.frames_dropped += 1
        self.close_soon(WSCloseCode.TRY_AGAIN_LATER, "too slow: reconnect and resume")

    def take(
        self,
        room: str,
        docs: list[tuple[int | None, bytes]],
        datas: list[bytes],
        first: int | None,
        last: int | None,
        frame: bytes | None,
    ) -> None:
        """A room's new documents (seqs in order, `first` to `last`), all at once; `frame` is
        the shared frame of a single one."""
        if self.closing:
            self.stats.frames_dropped += len(datas)
            return
        pending = self.pending
        if (
            room in self.joining
            or (first is not None and first <= self.seen.get(room, 0))
            or len(pending) + len(datas) > self.queue_limit
        ):
            for seq, data in docs:  # one by one: held, partly seen, or overflowing
                self.deliver(room, data, frame, seq)
            return
        if last is not None:
            self.seen[room] = last
        self.stats.frames_out += len(datas)
        if not pending:
            self._single = frame
        pending += datas
        if not self._dirty and self._drainer is None and self._flusher is not None:
            self._dirty = True
            self._flusher.mark(self)

    def deliver(self, room: str, data: bytes, frame: bytes | None, seq: int | None) -> None:
        held = self.joining.get(room)
        if held is not None:
            if len(held) >= self.queue_limit:
                self._close_slow()
                return
            held.append((seq, data))
            return
        if seq is not None:
            if seq <= self.seen.get(room, 0):
                return
            self.seen[room] = seq
        self.send_encoded(data, frame)

    def write_pending(self, frame: bytes | None) -> bytes:
        """Write what waits as one frame (or `frame`, already built for the same documents);
        return the frame written. Called by the flusher, and when the transport has drained."""
        self._dirty = False
        pending = self.pending
        if frame is None:
            if len(pending) == 1 and self._single is not None:
                frame = self._single
            elif len(pending) == 1:
                frame = text_frame(pending[0])
            else:
                frame = batch_frame(pending)
        self.pending = []
        self._single = None
        transport = self.transport
        if self.closing or transport is None or transport.is_closing() or not pending:
            return frame
        transport.write(frame)
        if transport.get_write_buffer_size() and self._drainer is None:
            # Backed up: hold further frames until the socket takes what it has.
            self._drainer = asyncio.get_running_loop().create_task(self._wait_drained())
        return frame

    async def _wait_drained(self) -> None:
        assert self.drain is not None
        try:
            while not self.closing:
                await self.drain()
                if not self.pending:
                    return
                self.write_pending(None)
                if not self.transport.get_write_buffer_size():
                    return
        except ConnectionError:
            return  # the peer is gone; the read loop sees it and unregisters us
        finally:
            self._drainer = None

    def check_alive(self) -> None:
        """Called every half heartbeat interval: after a whole interval without a frame from
        the peer, ping it; half an interval later, still nothing (not even the pong): the peer
        is gone without a word (a pulled cable, a sleeping laptop), so drop the TCP
        connection, which ends the socket's read loop."""
        if self.heard:
            self.heard, self.quiet_checks = False, 0
            return
        self.quiet_checks += 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.quiet_checks == 2:
            transport.write(PING_FRAME)
        elif self.quiet_checks > 2:
            log.info("connection %s of %s answered no ping; dropping it", self.id, self.username)
            self.closing = True
            transport.abort()

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (fan-out, a broker event); idempotent."""
        if self._closer is not None:
            return
        self.closing = True
        self.stats.frames_dropped += len(self.pending)
        self.pending = []
        self._closer = asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int, reason: str) -> None:
        self.closing = True
        if self._drainer is not None:
            self._drainer.cancel()
        try:
            async with asyncio.timeout(self.close_timeout):
                # drain=False: waiting for a reader that reads nothing to empty its buffer is
                # what this close is about; the close frame queues behind the backlog.
                await self.ws.close(code=code, message=reason.encode()[:120], drain=False)
        except TimeoutError:
            # A peer that reads nothing never lets the close frame out: drop the TCP connection.
            log.info("connection %s did not close in time; aborting it", self.id)
            if self.transport is not None:
                self.transport.abort()
            elif self.ws._req is not None and self.ws._req.transport is not None:
                self.ws._req.transport.abort()


class Hub:
    """Rooms -> connections for this process. Only the event loop thread touches it."""

    def __init__(self) -> None:
        self.connections: dict[int, Connection] = {}
        self.stats = HubStats()
        # user id -> that user's connections here: the per-user cap is checked on every upgrade.
        self._by_user: dict[int, set[Connection]] = {}
        self.flusher = Flusher()
        self._rooms: dict[str, Room] = {}
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
        for room in left:
            self._discard(room, conn)
        conn.seen.clear()
        conn.joining.clear()
        return left

    def begin_join(self, conn: Connection, room: str) -> None:
        """Start receiving the room's frames, held back until `finish_join`."""
        self.flusher.expand()  # what was published before is not for the joiner
        # A re-join (the client saw a gap) holds frames back again until the new history.
        conn.seen.pop(room, None)
        conn.joining[room] = []
        found = self._rooms.get(room)
        if found is None:
            found = self._rooms[room] = Room(room)
        found.members.add(conn)

    def finish_join(self, conn: Connection, room: str, history: str, last_seq: int) -> None:
        self.flusher.expand()  # everything published so far is held, or in the history
        held = conn.joining.pop(room, None)
        if held is None:  # left (or was closed) while the history was being read
            return
        conn.seen[room] = last_seq  # joined
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
        conn.seen.pop(room, None)
        self._discard(room, conn)
        return was_in

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

    def room_names(self) -> list[str]:
        return list(self._rooms)

    def shown(self) -> dict[str, int]:
        """Per room with members here, the highest seq any of them has been given."""
        self.flusher.expand()
        return {
            name: max((c.seen.get(name, 0) for c in room.members), default=0)
            for name, room in self._rooms.items()
        }

    def reset_room(self, room: str, history: str, last_seq: int) -> int:
        """The database went back (restored from a backup, a failover to a replica that lags):
        every socket in the room is handed `history` (with `reset`) and counts from `last_seq`
        again. Returns how many sockets."""
        self.flusher.expand()
        found = self._rooms.get(room)
        told = 0
        for conn in tuple(found.members) if found is not None else ():
            if room in conn.seen:  # a joiner's own history comes from the database as it is
                conn.seen[room] = last_seq
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
