"""Direct conversations: `/dm/{username}` opens (creating on first use) the private room of two
people, the same room whoever starts it. The list of one's conversations is chat.web.listing's."""

from __future__ import annotations

from aiohttp import web

from chat.errors import Forbidden, NoSuchUser
from chat.keys import STORE
from chat.web.auth import require_user

routes = web.RouteTableDef()


@routes.get("/dm/{username}", name="direct")
async def open_direct(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    store = request.app[STORE]
    other = await store.user_by_name(request.match_info["username"])
    if other is None:
        raise NoSuchUser(f"There is no user named {request.match_info['username']!r}.")
    if other.id == user.id:
        raise Forbidden("A direct conversation needs someone else.")
    room = await store.direct_room(user, other)
    raise web.HTTPSeeOther(f"/rooms/{room.name}")
