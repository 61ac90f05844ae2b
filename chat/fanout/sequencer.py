"""Per-room ordering on one node: every chat message reaches this node's hub once, in seq order.

With several nodes, frames arrive from Redis in the order the nodes published them, not the order
the database committed them, and a Redis outage loses some outright. Each message carries its
room's `seq`, and the database is the truth, so this node keeps, per room, the last seq it handed
to its hub:

- the next seq is delivered at once, along with any later ones it was holding;
- a seq at or below the last one is a duplicate and dropped;
- a seq further ahead is held; if the gap is still open after `gap_wait` seconds, the missing
  messages are read from the database (a committed seq implies every lower one is committed,
  because the room's row lock serialises the writers).

After Redis comes back, `catch_up` compares every room's `last_seq` in the database with what this
node delivered and reads the difference, so nothing committed during the outage is lost.

A node hears only the rooms it has members in (chat.fanout.redis_broker), so it keeps order only
for those. A room it starts to hear is *new* until its first joiner has its history: its frames
are held until then, and the joiner's history position is where the room's count starts.
A room it stops hearing is forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from sqlalchemy.exc import SQLAlchemyError

from chat.errors import NoSuchRoom
from chat.live import protocol
from chat.live.hub import Hub
from chat.storage.store import Store
from chat.tasks import TaskSet

log = logging.getLogger(__name__)


class Sequencer:
    def __init__(self, hub: Hub, store: Store, *, gap_wait: float, hold_limit: int) -> None:
        self.hub = hub
        self.store = store
        self.gap_wait = gap_wait
        # Beyond this many held frames in one room, read the database now instead of waiting.
        self.hold_limit = hold_limit
        self.last: dict[str, int] = {}
        self._held: dict[str, dict[int, str]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._filling: set[str] = set()
        self._fill_again: set[str] = set()
        # The database's last seq of the rooms found behind at the last position check.
        self._behind: dict[str, int] = {}
        self._tasks = TaskSet("reading missed messages")
        # Rooms this node has started to hear and nobody here has joined yet: their frames.
        self._new: dict[str, dict[int, str]] = {}

    def begin(self, room: str) -> None:
        """This node starts hearing the room (see the module docstring)."""
        if room not in self.last:
            self._new.setdefault(room, {})

    def joined(self, room: str, seq: int) -> None:
        """A joiner here has the room's history up to `seq`: a new room counts from there, and
        what it held is offered again in order (what is missing, read from the database)."""
        held = self._new.pop(room, None)
        if held is None:
            return
        self.last[room] = seq
        for s in sorted(held):
            self.offer(room, held[s], s)

    def forget(self, room: str) -> None:
        """This node no longer hears the room."""
        self.last.pop(room, None)
        self._new.pop(room, None)
        self._held.pop(room, None)
        self._behind.pop(room, None)
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        await self._tasks.cancel()

    def offer(self, room: str, payload: str, seq: int | None) -> None:
        """A frame for the room, from this node or from Redis; never awaits."""
        if seq is None:
            # Typing, join/leave, receipts: ephemeral, no order to keep.
            self.hub.deliver(room, payload, None)
            return
        last = self.last.get(room)
        if last is None:
            new = self._new.get(room)
            if new is not None and len(new) < self.hold_limit:
                new[seq] = payload  # beyond it, the joiner's gap is read from the database
            return  # else a room this node does not hear (any more)
        if seq <= last:
            return
        if not self.hub.has_members(room):
            # Nobody here to wait for: a later joiner reads its history from the database, which
            # holds this message and every one before it.
            self.last[room] = seq
            self._held.pop(room, None)
            return
        if seq == last + 1 and room not in self._filling:
            self._deliver(room, seq, payload)
            self._drain(room)
            return
        held = self._held.setdefault(room, {})
        held[seq] = payload
        if len(held) >= self.hold_limit:
            self._fill_soon(room)
        else:
            self._arm(room)

    async def catch_up(self, rooms: Iterable[str] | None = None) -> int:
        """Read from the database whatever this node's rooms (or those of `rooms` it hears)
        missed; return how many rooms."""
        behind = 0
        heard = list(self.last) if rooms is None else [r for r in rooms if r in self.last]
        positions = await self.store.last_seqs(heard)
        for room, db_last in positions.items():
            if room not in self.last or db_last <= self.last[room]:
                continue
            behind += 1
            if not self.hub.has_members(room):
                # Nobody here to tell; a later joiner reads its history from the database.
                self.last[room] = db_last
                self._held.pop(room, None)
                continue
            await self._fill(room)
        return behind

    async def check_positions(self) -> int:
        """Compare the last seq of the rooms with members here with the database's; read the
        rooms that are still behind where the database stood at the previous check. That is
        a message committed and never published (its node died in between) in a room where
        nothing came after it to show the gap. Run every POSITION_CHECK_SECONDS, so such a
        message is delivered within twice that; a message merely still on its way through
        Redis arrives before the next check and costs no read. Returns how many rooms were
        read."""
        rooms = self.hub.room_names()
        # What was delivered before the read, not after it: every seq delivered was committed
        # before the read began, so the database is below it only if it lost it. Messages
        # delivered while the read was on its way are newer than what it saw; taken for a
        # database gone back, they would make the room's next frames wait FANOUT_GAP_SECONDS
        # for a read of messages already delivered (under load, in every busy room, at every
        # check).
        delivered = {room: self.last.get(room) for room in rooms}
        positions = await self.store.last_seqs(rooms)
        behind, self._behind = self._behind, {}
        read = 0
        for room, db_last in positions.items():
            last = self.last.get(room)
            if last is None:  # new: its joiner's history is where it starts
                continue
            was = delivered.get(room)
            if was is not None and db_last < was:
                # The database went back (restored, a failover): count from where it stands,
                # or its next messages would be taken for duplicates. (The room's sockets are
                # reset by chat.server.upkeep.)
                self.last[room] = db_last
                self._held.pop(room, None)
                continue
            if db_last <= last:
                continue
            noted = behind.get(room)
            if noted is not None and last < noted:
                read += 1
                log.info(
                    "room %r: seq %d to %d were not published; reading them", room, last + 1, noted
                )
                await self._fill(room)
            else:
                self._behind[room] = db_last
        return read

    def _deliver(self, room: str, seq: int, payload: str) -> None:
        self.last[room] = seq
        self.hub.deliver(room, payload, seq)

    def _drain(self, room: str) -> None:
        held = self._held.get(room)
        if held is None:
            return
        last = self.last[room]
        while (payload := held.pop(last + 1, None)) is not None:
            last += 1
            self._deliver(room, last, payload)
        for seq in [s for s in held if s <= last]:
            del held[seq]
        if not held:
            del self._held[room]
            timer = self._timers.pop(room, None)
            if timer is not None:
                timer.cancel()

    def _arm(self, room: str) -> None:
        if room in self._timers or room in self._filling:
            return
        loop = asyncio.get_running_loop()
        self._timers[room] = loop.call_later(self.gap_wait, self._fill_soon, room)

    def _fill_soon(self, room: str) -> None:
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()
        self._tasks.spawn(self._fill(room))

    async def _fill(self, room: str) -> None:
        """Deliver, from the database, what the room is missing after our last seq."""
        if room in self._filling:
            # The read in flight may predate what we now know is missing: read once more after.
            self._fill_again.add(room)
            return
        self._filling.add(room)
        try:
            while True:
                self._fill_again.discard(room)
                await self._fill_once(room)
                if room not in self._fill_again:
                    break
        finally:
            self._filling.discard(room)
        if self._held.get(room):
            self._arm(room)

    async def _fill_once(self, room: str) -> None:
        after = self.last.get(room, 0)
        try:
            messages, position = await self.store.history(room, after)
        except NoSuchRoom:
            self.last.pop(room, None)
            self._held.pop(room, None)
            return
        except (SQLAlchemyError, OSError) as exc:
            log.warning("could not read missed messages of %r: %s", room, exc)
            return
        if room not in self.last:  # forgotten meanwhile: nobody here hears it any more
            return
        db_last = position.seq
        # Plain: exactly the messages after `after`, one per seq, none changed since.
        plain = [m.seq for m in messages] == list(range(after + 1, db_last + 1)) and all(
            m.changed is None for m in messages
        )
        if position.complete and not plain:
            # Edits, deletions or reactions among what was missed: their events' seqs have no
            # frame of their own any more (a message keeps only its latest state), so the
            # room's sockets get what a resuming client gets, a `history` of the new and
            # changed messages, delivered as seq `db_last` (a socket given that much already
            # gets nothing).
            self._deliver(room, db_last, protocol.history_frame(room, messages, position))
        elif position.complete:
            for message in messages:
                if message.seq > self.last.get(room, 0):
                    self._deliver(room, message.seq, protocol.chat_frame(message))
        elif db_last > self.last.get(room, 0):
            # The kept history no longer reaches back to what this node delivered last: more
            # than HISTORY_LIMIT messages went by unseen (a long Redis outage). No silent jump:
            # the room's sockets are told as a resuming client is, by a `history` that is not
            # `complete`, delivered as seq `db_last` (a socket given that much already gets
            # nothing; a joiner whose own history is newer skips it).
            log.warning(
                "room %r: messages %d to %d are no longer kept; telling its sockets",
                room,
                after + 1,
                (messages[0].seq - 1) if messages else db_last,
            )
            self._deliver(room, db_last, protocol.history_frame(room, messages, position))
        self.last[room] = max(self.last.get(room, 0), db_last)
        if messages or db_last > after:
            log.info("room %r: read %d missed messages from the database", room, len(messages))
        self._drain(room)
