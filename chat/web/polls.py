"""Small JSON endpoints the pages poll to stay live: the rooms list and the admin page.

They answer with JSON errors (401/403) rather than the HTML error pages or login redirects the
pages get, because a script reads them. Nothing here is cached: each answer is the state now.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chat.fanout.presence import by_user
from chat.keys import PRESENCE, SETTINGS, STORE
from chat.live.protocol import message_dict, seq_from_text
from chat.web.auth import current_user
from chat.web.listing import room_lists

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store"}


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


def _refused(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@routes.get("/rooms.json", name="rooms_json")
async def rooms_json(request: web.Request) -> web.Response:
    """Each room with the people in it now and this user's unread count."""
    user = await current_user(request)
    if user is None:
        return _refused(401, "Log in first.")
    return _json(await room_lists(request, user))


@routes.get("/rooms/{name}/history.json", name="history_json")
async def history_json(request: web.Request) -> web.Response:
    """An older page of a room's kept history, for a reader scrolling up: `before` is the
    oldest seq the page has."""
    user = await current_user(request)
    if user is None:
        return _refused(401, "Log in first.")
    store = request.app[STORE]
    name = request.match_info["name"]
    room = await store.room_by_name(name)
    if room is None or not await store.can_enter(room, user):
        return _refused(404, f"There is no room named {name!r}.")
    before = seq_from_text(request.query.get("before", ""))
    if before is None:
        return _refused(400, "'before' must be a message number.")
    page = await store.history_page(name, before, request.app[SETTINGS].history_page_size)
    return _json(
        {
            "messages": [message_dict(m) for m in page.messages],
            "older": page.older,
            "forgotten": page.forgotten,
            "oldest_seq": page.oldest_seq,
        }
    )


@routes.get("/admin/online.json", name="admin_online_json")
async def admin_online_json(request: web.Request) -> web.Response:
    """Who is online (every tab on every node folded per person), for the live admin page."""
    user = await current_user(request)
    if user is None:
        return _refused(401, "Log in first.")
    if not user.is_admin:
        return _refused(403, "Only administrators can see who is online.")
    online = by_user(await request.app[PRESENCE].connections())
    return _json(
        {
            "online": [
                {
                    "username": u.username,
                    "rooms": list(u.rooms),
                    "connections": u.connections,
                    "nodes": list(u.nodes),
                    "since": int(u.since * 1000),
                }
                for u in online
            ]
        }
    )
