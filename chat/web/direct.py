"""Direct conversations: `/dm/{username}` opens (creating on first use) the private room of two
people, the same room whoever starts it; and the list of one's conversations, shown apart from
the rooms on `/` and in the sidebars, with the other person's presence and the unread count."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chat.errors import Forbidden, NoSuchUser
from chat.keys import PRESENCE, STORE
from chat.models import User
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


async def direct_list(request: web.Request, user: User) -> list[dict[str, Any]]:
    """The user's direct conversations: room name, the other person, whether they are online,
    unread messages."""
    store = request.app[STORE]
    conversations = await store.direct_rooms(user)
    if not conversations:
        return []
    online = {c.username for c in await request.app[PRESENCE].connections()}
    unread = await store.unread_counts(user)
    return [
        {
            "name": room.name,
            "with": other,
            "online": other in online,
            "unread": unread.get(room.name, 0),
        }
        for room, other in conversations
    ]
