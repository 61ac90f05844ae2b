"""The pages: rooms list (and creating a room), a room, the admin page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chat.auth import require_admin, require_user
from chat.errors import ChatError, NoSuchRoom
from chat.keys import PRESENCE, SETTINGS, STORE
from chat.presence import by_user
from chat.render import render

routes = web.RouteTableDef()


async def _rooms_context(request: web.Request) -> dict[str, Any]:
    user = await require_user(request)
    store = request.app[STORE]
    counts = await request.app[PRESENCE].room_counts()
    unread = await store.unread_counts(user)
    rooms = [
        {"name": r.name, "online": counts.get(r.name, 0), "unread": unread.get(r.name, 0)}
        for r in await store.list_rooms()
    ]
    return {"rooms": rooms, "new_room": ""}


@routes.get("/", name="rooms")
async def rooms_page(request: web.Request) -> web.Response:
    return await render(request, "rooms.html", await _rooms_context(request))


@routes.post("/rooms")
async def create_room(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    form = await request.post()
    name = str(form.get("name", "")).strip().lower()
    try:
        room = await request.app[STORE].create_room(name, creator_id=user.id)
    except ChatError as exc:
        ctx = await _rooms_context(request)
        ctx.update(new_room=name, error=exc.message)
        return await render(request, "rooms.html", ctx, status=exc.status)
    raise web.HTTPFound(f"/rooms/{room.name}")


@routes.get("/rooms/{name}", name="room")
async def room_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    name = request.match_info["name"]
    store = request.app[STORE]
    room = await store.room_by_name(name)
    if room is None:
        raise NoSuchRoom(f"There is no room named {name!r}.")
    messages, complete, last_seq = await store.history(name, None)
    markers = await store.read_markers(name)
    users = sorted(await request.app[PRESENCE].room_users(name))
    return await render(
        request,
        "room.html",
        {
            "room": room,
            "messages": messages,
            "complete": complete,
            "last_seq": last_seq,
            "users": users,
            "read_seq": markers.get(user.username, 0),
            "max_text_chars": request.app[SETTINGS].max_text_chars,
        },
    )


@routes.get("/admin", name="admin")
async def admin_page(request: web.Request) -> web.Response:
    await require_admin(request)
    online = by_user(await request.app[PRESENCE].connections())
    return await render(request, "admin.html", {"online": online})
