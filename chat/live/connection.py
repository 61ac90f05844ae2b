"""One WebSocket of one user, as the hub sees it: the rooms it is in (and the highest seq it
was given in each), its bounded list of documents waiting to be written, and its liveness.

A connection whose transport is backed up keeps its documents in its bounded list until it
drains; one whose list is full is closed with 1013 (it reconnects and resumes with `since`), so
one slow reader can never delay the others (the gorilla/websocket chat example's design). No
task per connection: an idle one costs only its objects; a task exists only while a
connection's transport is backed up, to wait for it to drain.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, KeysView
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSCloseCode, web

from chat.live.aiohttp_private import request_transport
from chat.live.wire import PING_FRAME, batch_frame, text_frame
from chat.models import User

if TYPE_CHECKING:
    from chat.live.rounds import Flusher

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
    frames_heard: int = 0  # room frames received from other nodes (through Redis)


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
            transport = self.transport or request_transport(self.ws)
            if transport is not None:
                transport.abort()
