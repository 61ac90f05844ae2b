"""Write rounds: how what was published reaches the transports.

`Hub.deliver` puts a message in its room's inbox (`Room`); at the next write slice (`Flusher`)
each room hands its members everything that came meanwhile in one call, and each member's
waiting documents go out as one frame (newline-separated JSON when there are several:
docs/protocol.md, "Batching"), framed once for all the members that wait for the same documents
and written straight to each transport. Writes are gathered into rounds written a slice at a
time, so a burst of messages (one group commit, or several commits during one round) costs each
recipient one write.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING

from chat.live.wire import text_frame

if TYPE_CHECKING:
    from chat.live.connection import Connection

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
