"""Moderation: kick, ban, unban, delete a message, and private-room membership changes. Every
action is written to the moderation log with who took it, and counted in /metrics.

Closing sockets goes through the broker's control events, so it reaches every node.
"""

from __future__ import annotations

import logging

from aiohttp import web

from chat import resets
from chat.errors import Forbidden
from chat.fanout.broker import CloseSockets
from chat.keys import BROKER, METRICS, PASSWORDS, STORE
from chat.live import protocol
from chat.models import Room, User

log = logging.getLogger(__name__)

KICK_REASON = "kicked by an admin"
BAN_REASON = "banned by an admin"
RESET_REASON = "password changed: log in again"
DETAIL_CHARS = 200  # the moderation log's detail column


async def _record(
    app: web.Application,
    actor: User,
    action: str,
    *,
    target: str | None = None,
    room: str | None = None,
    seq: int | None = None,
    detail: str = "",
) -> None:
    await app[STORE].log_moderation(
        actor.username, action, target=target, room=room, seq=seq, detail=detail
    )
    app[METRICS].moderation.labels(action).inc()
    log.warning(
        "%s: %s by %s%s%s",
        action,
        target or f"#{room} seq {seq}",
        actor.username,
        f" in #{room}" if target and room else "",
        f" ({detail})" if detail else "",
        extra={
            "event": "moderation",
            "action": action,
            "actor": actor.username,
            "target": target,
            "room": room,
            "seq": seq,
        },
    )


def _require_admin(actor: User) -> None:
    if not actor.is_admin:
        raise Forbidden("Only administrators can do that.")


async def kick(app: web.Application, actor: User, target: User, *, reason: str = "") -> None:
    _require_admin(actor)
    await app[BROKER].control(CloseSockets(_with(KICK_REASON, reason), user_id=target.id))
    await _record(app, actor, "kick", target=target.username, detail=reason)


async def ban(app: web.Application, actor: User, target: User, *, reason: str = "") -> None:
    _require_admin(actor)
    if target.id == actor.id:
        raise Forbidden("You cannot ban yourself.")
    # Banned first, closed second: a reconnect that races the close is refused already. The
    # session version moves too, so an unban later does not bring today's cookies back.
    await app[STORE].set_banned(target.id, True)
    await app[STORE].bump_session_version(target.id)
    await app[BROKER].control(CloseSockets(_with(BAN_REASON, reason), user_id=target.id))
    await _record(app, actor, "ban", target=target.username, detail=reason)


async def unban(app: web.Application, actor: User, target: User) -> None:
    _require_admin(actor)
    await app[STORE].set_banned(target.id, False)
    await _record(app, actor, "unban", target=target.username)


async def delete_message(app: web.Application, actor: User, room: str, seq: int) -> None:
    """Delete a message (its author, or an admin): an event of the room with its own seq,
    published as an `update` with the message's state (`deleted`) to every node."""
    message, now = await app[STORE].remove_message(room, seq, actor)
    # Published at once, before anything awaits: on SQLite, commit order is publish order.
    assert now.changed is not None
    app[BROKER].publish(room, protocol.update_frame(now), now.changed)
    if message.user == actor.username:
        return  # one's own message: not moderation
    # The log keeps what it said (admins only see the log), cut to the log's detail size.
    said = f"{message.user}: {message.text}"
    said = said if len(said) <= DETAIL_CHARS else said[: DETAIL_CHARS - 1] + "…"
    await _record(app, actor, "delete", target=message.user, room=room, seq=seq, detail=said)


async def reset_password(app: web.Application, actor: User, target: User) -> str:
    """A temporary password for `target` (shown once to the admin), every session and socket
    of theirs ended; they choose a new password at the next login."""
    _require_admin(actor)
    if target.id == actor.id:
        raise Forbidden("Change your own password on the Account page.")
    password = await resets.reset_password(app[STORE], app[PASSWORDS], target)
    await app[BROKER].control(CloseSockets(RESET_REASON, user_id=target.id))
    await _record(app, actor, "reset-password", target=target.username)
    return password


async def invite(app: web.Application, actor: User, room: Room, target: User) -> bool:
    await _require_manager(app, actor, room)
    added = await app[STORE].add_member(room, target)
    if added:
        await _record(app, actor, "invite", target=target.username, room=room.name)
    return added


async def remove(app: web.Application, actor: User, room: Room, target: User) -> bool:
    """Take a member out of a private room; their open subscriptions to it end at once."""
    await _require_manager(app, actor, room)
    removed = await app[STORE].remove_member(room, target)
    if removed:
        reason = f"You were removed from #{room.name}."
        await app[BROKER].control(CloseSockets(reason, user_id=target.id, room=room.name))
        app[BROKER].publish(
            room.name, protocol.membership_frame("leave", room.name, target.username)
        )
        await _record(app, actor, "remove", target=target.username, room=room.name)
    return removed


def can_manage(actor: User, room: Room) -> bool:
    if room.is_direct:  # two fixed members
        return False
    return actor.is_admin or (room.created_by is not None and room.created_by == actor.id)


async def _require_manager(app: web.Application, actor: User, room: Room) -> None:
    if room.is_direct:
        raise Forbidden("A direct conversation has two fixed members: nobody can be invited.")
    if not room.is_private:
        raise Forbidden("Only private rooms have a member list.")
    if not can_manage(actor, room):
        raise Forbidden("Only the room's creator and administrators manage its members.")


def _with(base: str, reason: str) -> str:
    # The close reason travels in a close frame (at most 123 bytes): cut on a character boundary.
    text = f"{base}: {reason}" if reason else base
    return text.encode()[:120].decode(errors="ignore")
