"""The room page's part of notifications: the level control (POST /rooms/{name}/notifications)
and the names the composer offers after an "@" (GET /rooms/{name}/names.json).

See docs/architecture.md ("Notifications"). The level is a plain form (CSRF-checked like every
form), which the page's script posts without a reload (it asks for JSON); without script, a
redirect back.
"""

from __future__ import annotations

from aiohttp import web

from chat.errors import BadRequest
from chat.keys import CONVERSATIONS, STORE
from chat.models import USERNAME_RE
from chat.notify.levels import LEVELS, parse_level
from chat.web.auth import current_user, require_user
from chat.web.forms import read_form
from chat.web.pages import visible_room

routes = web.RouteTableDef()

# Names the composer's completion is offered at once.
NAMES_LIMIT = 8


@routes.post("/rooms/{name}/notifications", name="room_notifications")
async def set_level(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    room = await visible_room(request, user)
    form = await read_form(request)
    level = parse_level(str(form.get("level", "")))
    if level is None:
        raise BadRequest(f"The level is one of {', '.join(LEVELS)}.")
    await request.app[CONVERSATIONS].notifier.set_level(room, user, level)
    if "application/json" in request.headers.get("Accept", ""):
        return web.json_response(
            {"room": room.name, "level": level}, headers={"Cache-Control": "no-store"}
        )
    raise web.HTTPSeeOther(f"/rooms/{room.name}")


@routes.get("/rooms/{name}/names.json", name="room_names_json")
async def names_json(request: web.Request) -> web.Response:
    """The people whose names start with `q` that a mention in this room would reach."""
    user = await current_user(request)
    if user is None:
        return web.json_response({"error": "Log in first."}, status=401)
    store = request.app[STORE]
    room = await store.room_by_name(request.match_info["name"])
    if room is None or not await store.can_enter(room, user):
        return web.json_response({"error": "There is no such room."}, status=404)
    prefix = request.query.get("q", "")
    # Only what could start a name: anything else matches nobody, without a query.
    if prefix and not USERNAME_RE.match(prefix + "x" * (2 - len(prefix))):
        names: list[str] = []
    else:
        names = await store.names_for(room, prefix, NAMES_LIMIT)
    return web.json_response({"names": names}, headers={"Cache-Control": "no-store"})
