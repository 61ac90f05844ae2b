"""The pages: rooms list (and creating a room), a room and its members, the admin page."""

from __future__ import annotations

import math
import re
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from chat import moderation
from chat.errors import ChatError, NoSuchMessage, NoSuchRoom, NoSuchUser, Retryable, TooMany
from chat.fanout.presence import by_user
from chat.keys import LIMITS, METRICS, PRESENCE, SETTINGS, STORE
from chat.live.protocol import seq_from_text
from chat.models import Room, User
from chat.notify.levels import LABELS, level_of
from chat.settings import Settings
from chat.web.auth import WELCOME, current_user, require_admin, require_user
from chat.web.listing import room_lists
from chat.web.render import render

routes = web.RouteTableDef()
ROOM_PATH_RE = re.compile(r"/rooms/[a-z0-9_-]{1,32}")


async def _rooms_context(request: web.Request) -> dict[str, Any]:
    user = await require_user(request)
    return {**await room_lists(request, user), "new_room": ""}


@routes.get("/", name="rooms")
async def rooms_page(request: web.Request) -> web.Response:
    user = await current_user(request)
    if user is None and not await request.app[STORE].has_users():
        raise web.HTTPFound("/register")  # the first run: create the administrator
    ctx = await _rooms_context(request)
    # Once, right after registering: who the administrator is (or that it is you).
    if (await get_session(request)).pop(WELCOME, False):
        ctx["welcome"] = {"admins": await request.app[STORE].admin_names()}
    return await render(request, "rooms.html", ctx)


@routes.post("/rooms")
async def create_room(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()
    private = form.get("private") in {"1", "on", "true"}
    settings = request.app[SETTINGS]
    try:
        # Administrators set a chat up, so only others are held to ROOMS_PER_HOUR.
        wait = 0.0 if user.is_admin else request.app[LIMITS].create_room.take(user.id)
        if wait:
            request.app[METRICS].rate_limited.labels("create_room").inc()
            raise TooMany(
                f"You can create {settings.rooms_per_hour} rooms an hour. "
                f"Try again in {max(1, math.ceil(wait))} seconds.",
                retry_after=wait,
            )
        room = await request.app[STORE].create_room(
            name, creator_id=user.id, private=private, max_public=settings.max_public_rooms
        )
    except ChatError as exc:
        ctx = await _rooms_context(request)
        ctx.update(new_room=name, error=exc.message)
        response = await render(request, "rooms.html", ctx, status=exc.status)
        if isinstance(exc, Retryable):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    raise web.HTTPFound(f"/rooms/{room.name}")


async def visible_room(request: web.Request, user: User) -> Room:
    """The room in the URL, if this user may see it; a private room is a 404 to outsiders
    (a 403 would tell them it exists)."""
    name = request.match_info["name"]
    store = request.app[STORE]
    room = await store.room_by_name(name)
    if room is None or not await store.can_enter(room, user):
        raise NoSuchRoom(f"There is no room named {name!r}.")
    return room


@routes.get("/rooms/{name}", name="room")
async def room_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    room = await visible_room(request, user)
    name = room.name
    store = request.app[STORE]
    # The last page only; older kept messages load as the reader scrolls up (history.json).
    page = await store.history_page(name, None, request.app[SETTINGS].history_page_size)
    markers = await store.read_markers(name)
    if user.username not in markers:
        # Opened once, even empty: from now on what is said here counts as unread.
        await store.mark_read(name, user, 0)
    users = sorted(await request.app[PRESENCE].room_users(name))
    rooms_context = await _rooms_context(request)
    return await render(
        request,
        "room.html",
        {
            "room": room,
            # A direct conversation is titled with the other person ("@bob"); an admin who is
            # not in it sees its name.
            "partner": await store.direct_partner(room, user) if room.is_direct else None,
            "messages": page.messages,
            "page": page,
            "last_seq": page.last_seq,
            "users": users,
            "read_seq": markers.get(user.username, 0),
            # The rooms sidebar: switching rooms without going back to the list.
            "rooms": rooms_context["rooms"],
            "direct": rooms_context["direct"],
            "max_text_chars": request.app[SETTINGS].max_text_chars,
            "max_upload_bytes": request.app[SETTINGS].max_upload_bytes,
            "max_files": request.app[SETTINGS].max_files_per_message,
            # The limits the page keeps to by design (static/outbox.js, static/typing.js).
            "limits": _client_limits(request.app[SETTINGS]),
            # How loud this room is for the reader (chat.notify.levels), and the choices.
            "notify_level": level_of(await store.notification_level(room, user), room.is_direct),
            "notify_levels": LABELS,
        },
    )


def _client_limits(settings: Settings) -> dict[str, float]:
    return {
        "chat_rate": settings.chat_rate_per_second,
        "chat_burst": settings.chat_burst,
        "typing_rate": settings.typing_rate_per_second,
        "typing_burst": settings.typing_burst,
    }


@routes.get("/rooms/{name}/members", name="room_members")
async def members_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    room = await visible_room(request, user)
    return await render(request, "members.html", await _members_context(request, user, room))


async def _members_context(request: web.Request, user: User, room: Room) -> dict[str, Any]:
    if not room.is_private:
        raise NoSuchRoom(f"#{room.name} is public: everyone may join it.")
    return {
        "room": room,
        "members": await request.app[STORE].members(room),
        "can_manage": moderation.can_manage(user, room),
        "invitee": "",
    }


@routes.post("/rooms/{name}/members")
async def change_members(request: web.Request) -> web.StreamResponse:
    """Invite (action=invite) or remove (action=remove) one member."""
    user = await require_user(request)
    room = await visible_room(request, user)
    form = await request.post()
    username = str(form.get("username", "")).strip()
    action = form.get("action")
    store = request.app[STORE]
    target = await store.user_by_name(username) if username else None
    try:
        if target is None:
            raise NoSuchUser(f"There is no user named {username!r}.")
        if action == "invite":
            await moderation.invite(request.app, user, room, target)
        elif action == "remove":
            await moderation.remove(request.app, user, room, target)
        else:
            raise ChatError("Unknown action.")
    except ChatError as exc:
        ctx = await _members_context(request, user, room)
        ctx.update(invitee=username, error=exc.message)
        return await render(request, "members.html", ctx, status=exc.status)
    raise web.HTTPFound(f"/rooms/{room.name}/members")


@routes.get("/admin", name="admin")
async def admin_page(request: web.Request) -> web.Response:
    await require_admin(request)
    return await render(request, "admin.html", await _admin_context(request))


async def _admin_context(request: web.Request) -> dict[str, Any]:
    store = request.app[STORE]
    return {
        "online": by_user(await request.app[PRESENCE].connections()),
        "banned": await store.banned_users(),
        "log": await store.moderation_entries(),
    }


@routes.post("/admin/moderate", name="moderate")
async def moderate(request: web.Request) -> web.StreamResponse:
    """One form endpoint for kick, ban, unban and delete, so the admin page stays simple."""
    admin = await require_admin(request)
    form = await request.post()
    action = str(form.get("action", ""))
    store = request.app[STORE]
    app = request.app
    try:
        if action == "delete":
            room = str(form.get("room", "")).strip().lstrip("#").lower()
            seq_text = str(form.get("seq", "")).strip()
            seq = seq_from_text(seq_text)
            if seq is None:
                raise ChatError("The message number must be a whole number.")
            if await store.room_by_name(room) is None:
                raise NoSuchRoom(f"There is no room named {room!r}.")
            await moderation.delete_message(app, admin, room, seq)
        elif action in {"kick", "ban", "unban", "reset-password"}:
            username = str(form.get("username", "")).strip()
            reason = str(form.get("reason", "")).strip()[:80]
            target = await store.user_by_name(username) if username else None
            if target is None:
                raise NoSuchUser(f"There is no user named {username!r}.")
            if action == "reset-password":
                password = await moderation.reset_password(app, admin, target)
                # Shown once, here, and never stored in the clear: no redirect to lose it.
                response = await render(
                    request,
                    "password_reset.html",
                    {"username": target.username, "password": password},
                )
                response.headers["Cache-Control"] = "no-store"
                return response
            if action == "kick":
                await moderation.kick(app, admin, target, reason=reason)
            elif action == "ban":
                await moderation.ban(app, admin, target, reason=reason)
            else:
                await moderation.unban(app, admin, target)
        else:
            raise ChatError("Unknown moderation action.")
    except ChatError as exc:
        ctx = await _admin_context(request)
        ctx["error"] = exc.message
        return await render(request, "admin.html", ctx, status=exc.status)
    raise web.HTTPFound(_back_to(form.get("next")))


@routes.get("/admin/confirm", name="confirm")
async def confirm_page(request: web.Request) -> web.Response:
    """Kick, ban and delete are asked twice: this page names what will happen (and shows the
    message to delete) above the one button that does it. Works without JavaScript."""
    await require_admin(request)
    query = request.query
    store = request.app[STORE]
    action = query.get("action", "")
    ctx: dict[str, Any] = {
        "action": action,
        "next": _back_to(query.get("next")),
        "reason": query.get("reason", "").strip()[:80],
    }
    try:
        if action in {"kick", "ban", "reset-password"}:
            username = query.get("username", "").strip()
            target = await store.user_by_name(username) if username else None
            if target is None:
                raise NoSuchUser(f"There is no user named {username!r}.")
            ctx["username"] = target.username
        elif action == "delete":
            room = query.get("room", "").strip().lstrip("#").lower()
            seq_text = query.get("seq", "").strip()
            seq = seq_from_text(seq_text)
            if seq is None:
                raise ChatError("The message number must be a whole number.")
            if await store.room_by_name(room) is None:
                raise NoSuchRoom(f"There is no room named {room!r}.")
            message = await store.message_at(room, seq)
            if message is None:
                raise NoSuchMessage(f"There is no message {seq_text} in #{room}.")
            ctx["message"] = message
        else:
            raise ChatError("Unknown moderation action.")
    except ChatError as exc:
        ctx = await _admin_context(request)
        ctx["error"] = exc.message
        return await render(request, "admin.html", ctx, status=exc.status)
    return await render(request, "confirm.html", ctx)


def _back_to(value: object) -> str:
    """Where a moderation form returns: the room it came from, or the admin page."""
    if isinstance(value, str) and ROOM_PATH_RE.fullmatch(value):
        return value
    return "/admin#moderation"
