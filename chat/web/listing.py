"""What `/`, the rooms sidebar and `/rooms.json` list for a user: the rooms they may see, with how
many people are in each and their unread and mention counts, and their direct conversations
apart, with the other person's presence. One place, so the page and what it polls never disagree."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chat.keys import PRESENCE, STORE
from chat.models import User


async def room_lists(request: web.Request, user: User) -> dict[str, list[dict[str, Any]]]:
    store = request.app[STORE]
    presence = request.app[PRESENCE]
    counts = await presence.room_counts()
    unread = await store.unread_counts(user)
    # Beside each unread count: the messages after the read marker that mention this user.
    mentioned = await store.mention_counts(user)
    # Only what this user may see: a private room is listed to its members (and admins).
    rooms = [
        {
            "name": r.name,
            "online": counts.get(r.name, 0),
            "unread": unread.get(r.name, 0),
            "mentions": mentioned.get(r.name, 0),
            "private": r.is_private,
        }
        for r in await store.list_rooms(user)
    ]
    direct: list[dict[str, Any]] = []
    conversations = await store.direct_rooms(user)
    if conversations:
        online = {c.username for c in await presence.connections()}
        direct = [
            {
                "name": room.name,
                "with": other,
                "online": other in online,
                "unread": unread.get(room.name, 0),
                "mentions": mentioned.get(room.name, 0),
            }
            for room, other in conversations
        ]
    return {"rooms": rooms, "direct": direct}
