"""Who is told of a new message, decided once, on the node that stored it.

See docs/architecture.md ("Notifications"). `Conversations.committed` calls `Notifier.stored`
for each NEW message (never for a resend; edits take another path and notify nobody). In a
room this node knows to be quiet (chat.notify.levels.Loudness) a message without "@" costs a
set look-up and returns. Anything else is worked out off the message path, in a task: the
people mentioned who may read the room (public: anyone not banned; private room or direct
conversation: its members), those present for an @here, and those whose level is "every
message"; never the author, never anyone at "nothing". The mentions are stored (the counts on
`/`), and one `Notice` goes to every sink (chat.notify.notice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import web

from chat.errors import Forbidden, TooMany
from chat.keys import BROKER, HUB, METRICS, NOTICE_SINKS, PRESENCE, SETTINGS, STORE
from chat.live import protocol
from chat.models import Message, Room, User
from chat.notify import mentions
from chat.notify.levels import ALL, NOTHING, Level, Loudness, level_of
from chat.notify.notice import Notice, Reason, Recipient
from chat.ratelimit import TokenBuckets
from chat.tasks import TaskSet

log = logging.getLogger(__name__)

# How long a node trusts what it learned of quiet rooms: a level change whose signal was lost
# (Redis away at that moment) is heard at most this late. Relearning costs one read per room.
QUIET_MEMORY_SECONDS = 60.0
# Messages of one room waiting for the rules; beyond this (the database far behind), dropped.
MAX_QUEUED = 1000
# The broker signal that someone set a level: {"room": name, "user_id": id, "level": level}.
LEVELS_SIGNAL = "notify-levels"


def notice_url(room: str, seq: int) -> str:
    """The room page, opened at the message (static/notify.js scrolls to it)."""
    return f"/rooms/{room}#m{seq}"


class Notifier:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.store = app[STORE]
        self.presence = app[PRESENCE]
        self.settings = app[SETTINGS]
        self.broker = app[BROKER]
        self.metrics = app[METRICS]
        self.loudness = Loudness()
        self.quiet = self.loudness.quiet  # read on every message: one attribute less
        self.tasks = TaskSet("notifying")
        self._queued: dict[str, deque[tuple[Message, int]]] = {}
        self.here_limit = TokenBuckets(
            self.settings.here_per_hour / 3600.0, self.settings.here_per_hour
        )
        self.broker.on_signal(LEVELS_SIGNAL, self._level_changed)
        self._forgetting = asyncio.get_running_loop().call_later(
            QUIET_MEMORY_SECONDS, self._forget_quiet
        )

    def _forget_quiet(self) -> None:
        self.loudness.quiet.clear()
        self._forgetting = asyncio.get_running_loop().call_later(
            QUIET_MEMORY_SECONDS, self._forget_quiet
        )

    # --- on the message path ---

    def stored(self, message: Message, author_id: int) -> None:
        """A new message was committed here. Cheap unless someone may have to be told."""
        room = message.room
        if room in self.quiet and "@" not in message.text:
            return
        # One worker per room at a time, in order: a burst in a room not yet known to be quiet
        # waits for one read of its levels, not one task and read each.
        queued = self._queued.get(room)
        if queued is not None:
            if len(queued) < MAX_QUEUED:
                queued.append((message, author_id))
            else:
                log.warning("notifications for #%s are behind: one dropped", room)
            return
        self._queued[room] = deque([(message, author_id)])
        self.tasks.spawn(self._work(room))

    async def _work(self, room: str) -> None:
        queued = self._queued[room]
        try:
            while queued:
                message, author_id = queued.popleft()
                if room in self.quiet and "@" not in message.text:
                    continue  # learned meanwhile
                try:
                    await self._notify(message, author_id)
                except Exception:  # the database down, say: the next message tries again
                    log.exception("notifying of #%s %s failed", room, message.seq)
        finally:
            del self._queued[room]

    async def settled(self) -> None:
        """Until every message stored so far has been worked out (tests, shutdown)."""
        await self.tasks.wait()

    async def close(self) -> None:
        """At shutdown: let what is being worked out finish, briefly, then drop the rest."""
        self._forgetting.cancel()
        if len(self.tasks):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.tasks.wait()
        await self.tasks.cancel()

    # --- @here, checked before the message is stored ---

    async def may_say_here(self, user: User, room_name: str) -> None:
        """Raise unless `user` may send an @here to the room now: admins and the room's
        creator may, within HERE_PER_HOUR."""
        room = await self.store.room_by_name(room_name)
        if room is None or not (user.is_admin or room.created_by == user.id):
            raise Forbidden("Only administrators and the room's creator may use @here.")
        wait = self.here_limit.take(user.id)
        if wait:
            self.metrics.rate_limited.labels("here").inc()
            raise TooMany("@here is sent too often; try again later.", retry_after=wait)

    # --- levels ---

    async def set_level(self, room: Room, user: User, level: Level) -> None:
        await self.store.set_notification_level(room, user, level)
        # Every node: the person's other tabs show the new level, and a room someone set to
        # "every message" is quiet no more.
        self.broker.signal(LEVELS_SIGNAL, {"room": room.name, "user_id": user.id, "level": level})

    def _level_changed(self, body: dict[str, object]) -> None:
        room, user_id, level = body.get("room"), body.get("user_id"), body.get("level")
        if not isinstance(room, str):
            return
        if level == ALL or level is None:  # None: from a node that signalled only "all"
            self.loudness.changed(room)
        if isinstance(user_id, int) and isinstance(level, str):
            hub = self.app[HUB]
            frame = None
            for conn in hub.of_user(user_id):
                frame = frame or protocol.level_frame(room, level)
                conn.send(frame)
            hub.write_now()

    # --- off the message path ---

    async def _notify(self, message: Message, author_id: int) -> None:
        generation = self.loudness.generation(message.room)
        room = await self.store.room_by_name(message.room)
        if room is None:
            return
        levels = await self.store.room_levels(room.id)
        loud = room.is_direct or ALL in levels.values()
        self.loudness.learned(room.name, not loud, generation)
        said = mentions.parse(message.text)
        if not loud and not said.names and not said.here:
            return
        members = await self.store.member_ids(room.id) if room.is_private else None

        def may_read(user_id: int) -> bool:
            return user_id != author_id and (members is None or user_id in members)

        reasons: dict[int, Reason] = {}
        if said.names:
            for user_id in (await self.store.users_named(said.names)).values():
                if may_read(user_id):
                    reasons[user_id] = "mention"
        if said.here:
            present = await self.presence.room_users(room.name)
            for user_id in (await self.store.users_named(present)).values():
                if may_read(user_id):
                    reasons.setdefault(user_id, "here")
        await self.store.add_mentions(room.id, message.seq, list(reasons))
        if room.is_direct:
            assert members is not None  # a direct conversation is private
            for user_id in members:
                if may_read(user_id) and level_of(levels.get(user_id), True) == ALL:
                    reasons.setdefault(user_id, "direct")
        else:
            for user_id, level in levels.items():
                if level == ALL and may_read(user_id):
                    reasons.setdefault(user_id, "message")
        recipients = tuple(
            Recipient(user_id, reason)
            for user_id, reason in sorted(reasons.items())
            if level_of(levels.get(user_id), room.is_direct) != NOTHING
        )
        # Deleted in the meantime (its author's slip, a moderator): nobody is told of it.
        if recipients and not await self.store.was_deleted(room.id, message.seq):
            self.send(self.notice(room, message, recipients))

    def notice(self, room: Room, message: Message, recipients: tuple[Recipient, ...]) -> Notice:
        return Notice(
            room=room.name,
            # A direct conversation is named after the other person: to its reader, the author.
            title=message.user if room.is_direct else f"#{room.name}",
            url=notice_url(room.name, message.seq),
            seq=message.seq,
            author=message.user,
            excerpt=mentions.excerpt(message.text) if self.settings.notification_excerpts else "",
            recipients=recipients,
        )

    def send(self, notice: Notice) -> None:
        self.metrics.notices.inc()
        self.metrics.notice_recipients.inc(len(notice.recipients))
        for sink in self.app[NOTICE_SINKS]:
            try:
                sink.send(notice)
            except Exception:  # one failing way of telling must not stop the others
                log.exception("a notice sink failed")
