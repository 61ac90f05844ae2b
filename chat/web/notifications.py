"""The room page's notification level control: POST /rooms/{name}/notifications.

See docs/architecture.md ("Notifications"). A plain form (CSRF-checked like every form), which
the page's script posts without a reload (it asks for JSON); without script, a redirect back.
"""

from __future__ import annotations

from aiohttp import web

from chat.errors import BadRequest
from chat.keys import CONVERSATIONS
from chat.notify.levels import LEVELS, parse_level
from chat.web.auth import require_user
from chat.web.forms import read_form
from chat.web.pages import visible_room

routes = web.RouteTableDef()


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
