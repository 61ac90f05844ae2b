"""The `/ws` endpoint: Origin and session checked before the upgrade, then the read loop.

Each client frame is parsed (chat.protocol) and dispatched; a `ChatError` from anywhere below
becomes an `error` frame here, in one place, and the socket stays usable. Only protocol abuse
closes it: binary frames (1003), frames over the size limit (1009, by aiohttp), a send queue that
overflows (1013, by the hub).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

from chat import moderation, protocol
from chat.auth import current_user, is_banned, session_id
from chat.broker import LocalBroker
from chat.errors import (
    BadRequest,
    ChatError,
    Forbidden,
    NoSuchRoom,
    NotJoined,
    TooMany,
    Unavailable,
)
from chat.groupcommit import GroupCommit, Outcome
from chat.hub import Connection
from chat.keys import BROKER, HUB, LIMITS, METRICS, PRESENCE, SETTINGS, STORE
from chat.protocol import Chat, ClientFrame, Delete, Join, Leave, Read, Typing

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# What ends the read loop (as it ends `async for msg in ws`).
_CLOSED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})

# How many of one socket's chat messages may be waiting for their commit while its read loop
# goes on (see SocketSession.chat); at this many, reading waits until they are all stored.
MAX_IN_FLIGHT = 32
# When a client may send again a message the database failed to store (`unavailable`).
STORE_RETRY_SECONDS = 2.0
# What the database raises when it fails (PostgreSQL restarting, a full disk, a lost
# connection): the frame gets `unavailable`, the socket stays open.
STORE_ERRORS = (SQLAlchemyError, sqlite3.Error, OSError)


def origin_allowed(request: web.Request) -> bool:
    """Browsers always send Origin on a WebSocket upgrade; a foreign one is a cross-site attempt
    to ride the user's cookie (CSWSH). Clients that are not browsers may omit it."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    settings = request.app[SETTINGS]
    if origin in settings.allowed_origins:
        return True
    if settings.public_url is not None:
        # The site's address is configured: the Host header (which a proxy may rewrite, and a
        # client may choose) is not what an origin is compared with.
        return origin.lower() == settings.public_url
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == request.host.lower()


@routes.get("/ws", name="ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not origin_allowed(request):
        log.warning("refused /ws upgrade from origin %r", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="This origin may not open a chat socket.")
    user = await current_user(request)
    if user is None:
        if await is_banned(request):
            raise web.HTTPForbidden(text="This account is banned.")
        raise web.HTTPUnauthorized(text="Log in before opening a chat socket.")
    if user.must_change_password:
        raise web.HTTPForbidden(text="Choose a new password on /account first.")
    hub = request.app[HUB]
    tabs = tuple(hub.of_user(user.id))
    if len(tabs) >= settings.max_connections_per_user:
        request.app[METRICS].rate_limited.labels("connections").inc()
        raise web.HTTPTooManyRequests(
            text=f"At most {settings.max_connections_per_user} open connections per user.",
            headers={"Retry-After": "5"},
        )
    # A person's tabs share one User record rather than each holding its own copy.
    user = next((tab.user for tab in tabs if tab.user == user), user)
    ws = web.WebSocketResponse(
        # Liveness is the hub's (Hub.keep_alive): aiohttp's heartbeat re-arms a timer per
        # socket on every frame received. So pings and pongs come to the read loop below.
        heartbeat=None,
        autoping=False,
        max_msg_size=settings.max_frame_bytes,
        # Compression would cost one deflate per recipient per frame and defeat encode-once.
        compress=False,
        timeout=5.0,
    )
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="Expected a WebSocket upgrade.")
    writer = await ws.prepare(request)

    sid = await session_id(request) or ""
    forget_upgrade(request)
    conn = Connection(
        ws,
        user,
        sid,
        settings.send_queue_size,
        # Frames are written straight to the transport (chat.hub): framed once per message.
        transport=request.transport,
        drain=writer.drain,
    )
    hub.register(conn)
    socket = SocketSession(request.app, conn)
    log.info(
        "connection %s opened by %s",
        conn.id,
        user.username,
        extra={"event": "ws_open", "connection": conn.id, "username": user.username},
    )
    try:
        await request.app[PRESENCE].changed()
        # receive() rather than `async for`: one coroutine frame less per idle socket.
        while (msg := await ws.receive()).type not in _CLOSED:
            conn.heard = True
            if msg.type is WSMsgType.TEXT:
                await socket.handle(msg.data)
                if conn.queued > conn.queue_limit // 2:  # checked here: a call less per frame
                    await _let_writer_catch_up(conn, ws)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
                break
    finally:
        # Synchronous, so it happens even if this handler is being torn down; the leave
        # announcements may await, so they run as a task the hub keeps until it finishes.
        left = hub.unregister(conn)
        hub.spawn(socket.announce_left(left))
        if next(hub.of_user(user.id), None) is None:
            # The typing limit is per user, across their tabs here; with the last one gone
            # its bucket is never needed again (a first tab starts afresh, as every tab did).
            request.app[LIMITS].typing.forget(user.id)
        log.info(
            "connection %s of %s closed (%s)",
            conn.id,
            user.username,
            ws.close_code,
            extra={
                "event": "ws_close",
                "connection": conn.id,
                "username": user.username,
                "code": ws.close_code,
            },
        )
    return ws


def forget_upgrade(request: web.BaseRequest) -> None:
    """Drop what only the upgrade needed. The request lives as long as its socket, and idle
    sockets are counted by the thousand. (Private attributes of aiohttp: tests/test_ws.py
    checks that they are still there to be released.)"""
    # The session and the cached user. dict.clear() also frees the table, which popping the
    # keys one by one (MutableMapping.clear, what `request.clear()` does) would keep.
    request._state.clear()
    # Values parsed from the upgrade request on demand (cookies, host, URL...).
    request._cache.clear()
    # The HTTP parser and its buffers (about 1.7 KiB): once the upgrade is accepted the
    # WebSocket reader gets every byte, but aiohttp only drops the parser when the connection
    # is lost, as this does now.
    protocol = request.protocol
    if getattr(protocol, "_parser", None) is not None:
        protocol._parser = None


async def _let_writer_catch_up(conn: Connection, ws: web.WebSocketResponse) -> None:
    """Backpressure on a client's own input. Frames already buffered are read without ever
    yielding to the writer, so a client that floods (and is answered `rate_limited` each time)
    would overflow its own send queue and be closed with 1013. Reading pauses instead until
    its writer has caught up; TCP then slows the flooder down, and others are not affected."""
    pause = 0.0
    while conn.queued > conn.queue_limit // 2 and not conn.closing and not ws.closed:
        await asyncio.sleep(pause)
        pause = 0.01


class SocketSession:
    """What one connection may do: join, leave, chat, typing, read."""

    # One per open socket: slots keep idle connections small.
    __slots__ = (
        "_all_stored",
        "app",
        "broker",
        "conn",
        "group_commit",
        "hub",
        "in_flight",
        "limits",
        "metrics",
        "presence",
        "settings",
        "store",
    )

    def __init__(self, app: web.Application, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        self.settings = app[SETTINGS]
        self.store = app[STORE]
        self.hub = app[HUB]
        self.broker = app[BROKER]
        self.presence = app[PRESENCE]
        self.limits = app[LIMITS]
        self.metrics = app[METRICS]
        # In one process on SQLite, storing and publishing a chat message happen in the group
        # commit's callback (see `chat`); elsewhere (Redis, PostgreSQL) the handler awaits them.
        self.group_commit: GroupCommit | None = (
            self.store.group_commit if isinstance(self.broker, LocalBroker) else None
        )
        self.in_flight = 0  # chat messages handed over and not yet stored
        self._all_stored: asyncio.Future[None] | None = None

    async def handle(self, data: str) -> None:
        self.hub.stats.frames_in += 1
        try:
            frame = protocol.parse(data, max_text_chars=self.settings.max_text_chars)
            await self.dispatch(frame)
        except ChatError as exc:
            self.conn.send(protocol.error_frame(exc))

    async def dispatch(self, frame: ClientFrame) -> None:
        if self.in_flight and not isinstance(frame, Chat):
            # Whatever follows a message is done after it is stored and published, as when
            # the handler awaited it: a `leave` right after a `chat` still gets the ack.
            await self.stored()
        try:
            match frame:
                case Join():
                    await self.join(frame)
                case Leave():
                    await self.leave(frame)
                case Chat():
                    await self.chat(frame)
                case Typing():
                    await self.typing(frame)
                case Read():
                    await self.read(frame)
                case Delete():
                    await moderation.delete_message(self.app, self.conn.user, frame.room, frame.seq)
        except ChatError as exc:
            exc.ref = exc.ref or frame.ref
            raise
        except STORE_ERRORS as exc:
            log.warning("the database failed a %s frame: %r", type(frame).__name__.lower(), exc)
            message = (
                "The message could not be stored."
                if isinstance(frame, Chat)
                else "The server could not do that just now."
            )
            raise Unavailable(message, retry_after=STORE_RETRY_SECONDS, ref=frame.ref) from exc

    def _require_joined(self, room: str) -> None:
        if room not in self.conn.rooms:
            raise NotJoined(f"Join {room!r} first.")

    async def join(self, frame: Join) -> None:
        conn, room = self.conn, frame.room
        if room not in conn.rooms and len(conn.rooms) >= self.settings.max_rooms_per_connection:
            raise BadRequest(
                f"At most {self.settings.max_rooms_per_connection} rooms per connection."
            )
        found = await self.store.room_by_name(room)
        if found is None:
            raise NoSuchRoom(f"There is no room named {room!r}.")
        if not await self.store.can_enter(found, conn.user):
            raise Forbidden(f"#{room} is a private room you are not a member of.")
        if frame.since is not None:
            self.metrics.history_resumes.inc()
        if not await self.presence.user_in_room(conn.username, room):
            # Announced before this socket is in the room: the joiner learns of itself from the
            # presence frame, the others from this.
            await self.broker.publish(room, protocol.membership_frame("join", room, conn.username))
        # Register first, read second: whatever is published meanwhile is held, not lost.
        self.hub.begin_join(conn, room)
        try:
            messages, complete, last_seq = await self.store.history(room, frame.since)
        except BaseException:
            self.hub.leave(conn, room)
            raise
        # A `since` beyond the room's last seq: the database is not the one the client saw
        # (restored from a backup, a lagging replica). The history is then the room's whole
        # kept history (`complete` as on a fresh page), which the client shows afresh.
        reset = frame.since is not None and frame.since > last_seq
        history = protocol.history_frame(
            room, messages, complete=complete, last_seq=last_seq, reset=reset
        )
        self.hub.finish_join(conn, room, history, last_seq)
        # Published before the joiner hears it is in: by then every node's lists include it.
        await self.presence.changed()
        users = await self.presence.room_users(room)
        # Read markers ride along so a (re)joining page can draw "seen by N" without a gap.
        read = await self.store.read_markers(room)
        conn.send(protocol.presence_frame(room, users, read))

    async def leave(self, frame: Leave) -> None:
        if not self.hub.leave(self.conn, frame.room):
            raise NotJoined(f"You are not in {frame.room!r}.")
        await self.announce_left([frame.room])

    async def chat(self, frame: Chat) -> None:
        self._require_joined(frame.room)
        wait = self.limits.chat.take(self.conn.user.id)
        if wait:
            self.metrics.rate_limited.labels("chat").inc()
            raise TooMany("You are sending messages too fast.", retry_after=wait)
        if self.group_commit is not None:
            # Handed over, not awaited: the read loop goes on to the next frame while the
            # message waits for its commit, and the commit publishes it (`_stored`), without
            # waking this handler up for that. In a burst, that is a task step less per message,
            # and each message is published as soon as its batch is committed.
            if self.in_flight >= MAX_IN_FLIGHT:
                await self.stored()
            self.in_flight += 1
            self.group_commit.submit(
                frame.room,
                self.conn.user,
                frame.text,
                frame.client_id,
                functools.partial(self._stored, frame),
            )
            return
        message, is_new = await self.store.append_message(
            frame.room, self.conn.user, frame.text, frame.client_id
        )
        payload = protocol.chat_frame(message)
        if is_new:
            self.hub.stats.messages_in += 1
            await self.broker.publish(frame.room, payload, message.seq)
        else:
            # A resend of something already stored: ack it again to the sender only, in its
            # place in this socket's seq order.
            self.conn.send_stored_copy(frame.room, payload, message.seq)

    def _stored(self, frame: Chat, outcome: Outcome) -> None:
        """The group commit's outcome for a message `chat` handed over: what the handler would
        have done after awaiting `append_message`, errors turned into frames as `handle` does."""
        self.in_flight -= 1
        if not self.in_flight and self._all_stored is not None:
            if not self._all_stored.done():
                self._all_stored.set_result(None)
            self._all_stored = None
        if isinstance(outcome, Exception):
            if isinstance(outcome, ChatError):
                error = outcome
            else:  # logged by the group commit; the client may send it again
                error = Unavailable(
                    "The message could not be stored.", retry_after=STORE_RETRY_SECONDS
                )
            error.ref = error.ref or frame.ref
            self.conn.send(protocol.error_frame(error))
            return
        message, is_new = outcome
        payload = protocol.chat_frame(message)
        if is_new:
            self.hub.stats.messages_in += 1
            assert isinstance(self.broker, LocalBroker)
            self.broker.publish_now(frame.room, payload, message.seq)
        else:
            self.conn.send_stored_copy(frame.room, payload, message.seq)

    async def stored(self) -> None:
        """Wait until every chat message this socket handed over is stored and published."""
        if not self.in_flight:
            return
        if self._all_stored is None:
            self._all_stored = asyncio.get_running_loop().create_future()
        await self._all_stored

    async def typing(self, frame: Typing) -> None:
        self._require_joined(frame.room)
        # Per user, not per socket: more tabs are no licence to more typing notices.
        wait = self.limits.typing.take(self.conn.user.id)
        if wait:
            self.metrics.rate_limited.labels("typing").inc()
            raise TooMany("Typing notices are sent too often.", retry_after=wait)
        await self.broker.publish(
            frame.room, protocol.typing_frame(frame.room, self.conn.username, frame.typing)
        )

    async def read(self, frame: Read) -> None:
        self._require_joined(frame.room)
        seq = await self.store.mark_read(frame.room, self.conn.user, frame.seq)
        await self.broker.publish(
            frame.room, protocol.receipt_frame(frame.room, self.conn.username, seq)
        )

    async def announce_left(self, rooms: list[str]) -> None:
        await self.presence.changed()
        for room in rooms:
            # A person leaves a room when their last tab does, on whichever node it was.
            if not await self.presence.user_in_room(self.conn.username, room):
                await self.broker.publish(
                    room, protocol.membership_frame("leave", room, self.conn.username)
                )
