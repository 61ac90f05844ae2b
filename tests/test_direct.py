"""Direct conversations: `/dm/{username}` from either side is the same room, with two fixed
members, a name nobody can guess, listed apart and to nobody else."""

from __future__ import annotations

import re

from tests.conftest import ClientFactory
from tests.helpers import Client, chat, join, post_form, receive_type


async def open_dm(client: Client, username: str) -> str:
    response = await client.get(f"/dm/{username}", allow_redirects=False)
    assert response.status == 303, await response.text()
    location = response.headers["Location"]
    match = re.fullmatch(r"/rooms/(dm-[0-9a-f]{24})", location)
    assert match, location
    return match.group(1)


async def test_a_dm_started_from_either_side_is_the_same_room(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    room = await open_dm(bob, "alice")
    assert await open_dm(client, "bob") == room
    assert await open_dm(bob, "alice") == room  # and on every later visit
    carol = await new_client("carol")
    other = await open_dm(carol, "bob")
    assert other != room

    # bob never opened it: what alice says there is unread for him all the same.
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, room)
        await join(b, room)
        await chat(a, room, "just between us")
        assert (await receive_type(b, "chat"))["text"] == "just between us"

    # Listed apart, with the other person and the unread count; to nobody else, admins neither.
    listed = await (await bob.get("/rooms.json")).json()
    assert room not in [r["name"] for r in listed["rooms"]]
    [dm] = [d for d in listed["direct"] if d["name"] == room]
    assert dm["with"] == "alice" and dm["unread"] == 1 and isinstance(dm["online"], bool)
    admin = await (await client.get("/rooms.json")).json()
    assert other not in [r["name"] for r in admin["rooms"]]
    assert other not in [d["name"] for d in admin["direct"]]
    carols = await (await carol.get("/rooms.json")).json()
    assert room not in str(carols)

    page = await (await bob.get(f"/rooms/{room}")).text()
    assert "@alice" in page
    home = await (await bob.get("/")).text()
    assert f"/rooms/{room}" in home and "Direct messages" in home


async def test_nobody_else_enters_or_is_invited_into_a_dm(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    room = await open_dm(client, "bob")
    carol = await new_client("carol")
    assert (await carol.get(f"/rooms/{room}")).status == 404
    async with carol.ws_connect("/ws") as c:
        await c.send_json({"type": "join", "room": room})
        error = await receive_type(c, "error")
        assert error["code"] == "forbidden"
    response = await post_form(
        client, f"/rooms/{room}/members", {"action": "invite", "username": "carol"}, page="/"
    )
    assert response.status in {403, 400}
    assert (await carol.get(f"/rooms/{room}")).status == 404


async def test_dm_with_oneself_or_nobody_is_refused(client: Client) -> None:
    assert (await client.get("/dm/alice", allow_redirects=False)).status == 403
    assert (await client.get("/dm/nobody", allow_redirects=False)).status == 404
    assert (await client.get("/dm/alice")).status == 403
