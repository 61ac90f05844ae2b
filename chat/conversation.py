"""The chat use case: what one connection may do (join, leave, chat, typing, read, delete), and
what happens to a chat message once it is stored. One path, whatever the backends: this module
never asks which store or broker it has (`create_app` chose them).

A chat message is handed to the store (`Store.submit`) and not awaited: the socket's read loop
goes on to its next frame while the message waits for its transaction. The store hands the
outcome to `Conversations.committed` (storage's `Committed` interface), which publishes each new
message and acks a resend to its sender alone, then starts the hub's write round. So a burst
costs a task step less per message, and each message is published as soon as its batch is
committed. See docs/architecture.md for the whole path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from chat import moderation
from chat.errors import (
    BadRequest,
    ChatError,
    Forbidden,
    NoSuchRoom,
    NotJoined,
    TooMany,
    Unavailable,
)
from chat.keys import BROKER, HUB, LIMITS, METRICS, PRESENCE, SETTINGS, STORE
from chat.live import protocol
from chat.live.connection import Connection
from chat.live.protocol import Chat, ClientFrame, Delete, Edit, Join, Leave, React, Read, Typing
from chat.notify.levels import level_of
from chat.notify.mentions import mentions_here
from chat.notify.rules import Notifier
from chat.ratelimit import TokenBuckets
from chat.storage.appending import Append, Outcome

log = logging.getLogger(__name__)

# How many of one socket's chat messages may be waiting for their commit while its read loop
# goes on (see SocketSession.chat); at this many, reading waits until they are all stored.
MAX_IN_FLIGHT = 32
# When a client may send again a message the database failed to store (`unavailable`).
STORE_RETRY_SECONDS = 2.0
# What the database raises when it fails (PostgreSQL restarting, a full disk, a lost
# connection): the frame gets `unavailable`, the socket stays open.
STORE_ERRORS = (SQLAlchemyError, sqlite3.Error, OSError)


class Conversations:
    """The app's side of the use case: the backends every connection uses, and where stored
    messages go (it implements chat.storage.appending.Committed)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.settings = app[SETTINGS]
        self.store = app[STORE]
        self.hub = app[HUB]
        self.broker = app[BROKER]
        self.presence = app[PRESENCE]
        self.limits = app[LIMITS]
        self.metrics = app[METRICS]
        # Who is told of a new message (mentions, levels): decided here, on the storing node.
        self.notifier = Notifier(app)

    def committed(self, batch: Sequence[Append], outcomes: Sequence[Outcome]) -> None:
        """A transaction is over: publish what it stored, answer what it did not, then let the
        hub write, so that the batch's acks go out before more frames are read."""
        publish = self.broker.publish
        notify = self.notifier.stored
        stats = self.hub.stats
        for item, outcome in zip(batch, outcomes, strict=True):
            session: SocketSession = item.sender
            try:
                session.in_flight -= 1
                if not session.in_flight and session.all_stored is not None:
                    if not session.all_stored.done():
                        session.all_stored.set_result(None)
                    session.all_stored = None
                if isinstance(outcome, Exception):
                    session.failed(item.ref, outcome)
                    continue
                message, is_new = outcome
                payload = protocol.chat_frame(message)
                if is_new:
                    stats.messages_in += 1
                    publish(message.room, payload, message.seq)
                    notify(message, item.user_id)
                else:
                    # A resend of something already stored: ack it again to the sender only,
                    # in its place in this socket's seq order.
                    session.conn.send_stored_copy(message.room, payload, message.seq)
            except Exception:  # a bug there must not stop the hand-over to everyone else
                log.exception("handing over a stored message failed")
        self.hub.write_now()


class SocketSession:
    """What one connection may do: join, leave, chat, typing, read."""

    # One per open socket: slots keep idle connections small.
    __slots__ = (
        "all_stored",
        "app",
        "broker",
        "conn",
        "conversations",
        "hub",
        "in_flight",
        "limits",
        "metrics",
        "presence",
        "settings",
        "store",
        "submit",
    )

    def __init__(self, conversations: Conversations, conn: Connection) -> None:
        self.conversations = conversations
        self.conn = conn
        self.app = conversations.app
        self.settings = conversations.settings
        self.store = conversations.store
        self.submit = conversations.store.submit
        self.hub = conversations.hub
        self.broker = conversations.broker
        self.presence = conversations.presence
        self.limits = conversations.limits
        self.metrics = conversations.metrics
        self.in_flight = 0  # chat messages handed over and not yet stored
        self.all_stored: asyncio.Future[None] | None = None

    async def handle(self, data: str) -> None:
        self.hub.stats.frames_in += 1
        try:
            frame = protocol.parse(
                data,
                max_text_chars=self.settings.max_text_chars,
                max_files=self.settings.max_files_per_message,
            )
            await self.dispatch(frame)
        except ChatError as exc:
            self.conn.send(protocol.error_frame(exc))

    async def dispatch(self, frame: ClientFrame) -> None:
        if self.in_flight and not isinstance(frame, Chat):
            # Whatever follows a message is done after it is stored and published: a `leave`
            # right after a `chat` still gets the ack.
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
                    await self._may_change(frame.room, self.limits.chat, "chat")
                    await moderation.delete_message(self.app, self.conn.user, frame.room, frame.seq)
                case Edit():
                    await self.edit(frame)
                case React():
                    await self.react(frame)
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

    async def _may_change(self, room: str, limit: TokenBuckets, kind: str) -> None:
        """The checks an edit, deletion or reaction passes: joined (a room one may not enter
        is `forbidden`, not merely `not_joined`), then the rate limit."""
        if room not in self.conn.rooms:
            found = await self.store.room_by_name(room)
            if found is None:
                raise NoSuchRoom(f"There is no room named {room!r}.")
            if not await self.store.can_enter(found, self.conn.user):
                raise Forbidden(f"#{room} is a private room you are not a member of.")
            raise NotJoined(f"Join {room!r} first.")
        wait = limit.take(self.conn.user.id)
        if wait:
            self.metrics.rate_limited.labels(kind).inc()
            raise TooMany("You are doing that too fast.", retry_after=wait)

    async def edit(self, frame: Edit) -> None:
        await self._may_change(frame.room, self.limits.chat, "chat")
        message = await self.store.edit_message(frame.room, frame.seq, self.conn.user, frame.text)
        # Published at once, nothing awaited in between: on SQLite commit order is publish order.
        self.broker.publish(frame.room, protocol.update_frame(message), message.changed)

    async def react(self, frame: React) -> None:
        await self._may_change(frame.room, self.limits.reaction, "reaction")
        message = await self.store.react(
            frame.room, frame.seq, self.conn.user, frame.emoji, frame.on
        )
        if message is not None:  # None: it already stood so, nothing changed
            self.broker.publish(frame.room, protocol.update_frame(message), message.changed)

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
            # presence frame, the others from this (in a room small enough to list its people:
            # a reconnect storm must not cost every member a frame per joiner).
            await self.announce(room, "join")
        # Register first, read second: whatever is published meanwhile is held, not lost.
        self.hub.begin_join(conn, room)
        try:
            # This node hears the room from here on (at once if it already does).
            await self.broker.follow(room)
            # A `since` beyond the room's last seq: the database is not the one the client saw
            # (restored from a backup, a lagging replica). The history is then the room's whole
            # kept history (`complete` as on a fresh page) with `reset`: shown afresh.
            messages, position = await self.store.history(room, frame.since)
        except BaseException:
            self.hub.leave(conn, room)
            raise
        history = protocol.history_frame(room, messages, position)
        self.hub.finish_join(conn, room, history, position)
        self.broker.joined(room, position.seq)
        # Published before the joiner hears it is in: by then every node's lists include it.
        await self.presence.changed()
        # Who is here, as far as a page lists people, and how many in all: the same cost in a
        # room of ten thousand as in a room of two.
        users, count = await self.presence.glimpse(
            room, self.settings.presence_list_max, conn.username
        )
        # Read markers ride along so a (re)joining page can draw "seen by N" without a gap.
        read = await self.store.read_markers(room)
        conn.send(protocol.presence_frame(room, users, read, count=count))
        if frame.since is not None:
            # A page coming back: its notification level may have been set elsewhere while it
            # was away, which a fresh page load would show (a live page hears `level` frames).
            chosen = await self.store.notification_level(found, conn.user)
            conn.send(protocol.level_frame(room, level_of(chosen, found.is_direct)))

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
        if "@" in frame.text and mentions_here(frame.text):
            # Refused before it is stored: an @here from someone who may not send one.
            await self.conversations.notifier.may_say_here(self.conn.user, frame.room)
        # Handed over, not awaited: the read loop goes on to the next frame while the message
        # waits for its commit, and `Conversations.committed` publishes it without waking this
        # handler up for that.
        if self.in_flight >= MAX_IN_FLIGHT:
            await self.stored()
        self.in_flight += 1
        user = self.conn.user
        self.submit(
            Append(
                frame.room,
                user.id,
                user.username,
                frame.text,
                frame.client_id,
                self.conversations,
                self,
                frame,
                frame.reply_to,
                frame.files,
            )
        )

    def failed(self, frame: Chat, error: Exception) -> None:
        """The store's answer to a message it did not store, turned into a frame as `handle`
        and `dispatch` turn errors."""
        if not isinstance(error, ChatError):  # logged by the store; the client may send again
            log.warning("the database failed a chat frame: %r", error)
            error = Unavailable("The message could not be stored.", retry_after=STORE_RETRY_SECONDS)
        error.ref = error.ref or frame.ref
        self.conn.send(protocol.error_frame(error))

    async def stored(self) -> None:
        """Wait until every chat message this socket handed over is stored and published."""
        if not self.in_flight:
            return
        if self.all_stored is None:
            self.all_stored = asyncio.get_running_loop().create_future()
        await self.all_stored

    async def typing(self, frame: Typing) -> None:
        self._require_joined(frame.room)
        # Per user, not per socket: more tabs are no licence to more typing notices.
        wait = self.limits.typing.take(self.conn.user.id)
        if wait:
            self.metrics.rate_limited.labels("typing").inc()
            raise TooMany("Typing notices are sent too often.", retry_after=wait)
        self.broker.publish(
            frame.room, protocol.typing_frame(frame.room, self.conn.username, frame.typing)
        )

    async def read(self, frame: Read) -> None:
        self._require_joined(frame.room)
        seq = await self.store.mark_read(frame.room, self.conn.user, frame.seq)
        self.broker.publish(frame.room, protocol.receipt_frame(frame.room, self.conn.username, seq))

    async def announce_left(self, rooms: list[str]) -> None:
        await self.presence.changed()
        for room in rooms:
            # A person leaves a room when their last tab does, on whichever node it was.
            if not await self.presence.user_in_room(self.conn.username, room):
                await self.announce(room, "leave")

    async def announce(self, room: str, kind: str) -> None:
        """Tell the room that this person joined or left, unless the room, this person
        counted in, has more people than a page lists (PRESENCE_LIST_MAX): there, pages learn
        the count at their next join. Called while this person is not counted in the room."""
        _, others = await self.presence.glimpse(room, 0, self.conn.username)
        # Sockets still joining count too: in a reconnect storm they are most of the room.
        others = max(others, self.hub.sockets_in(room))
        if others < self.settings.presence_list_max:
            self.broker.publish(room, protocol.membership_frame(kind, room, self.conn.username))
