"""Private rooms: only members see them, open them or join them; the creator and admins invite
and remove members, and a removal ends that member's subscription at once."""

from __future__ import annotations

import pytest
from aiohttp import web

from chat.keys import HUB, STORE
from tests.conftest import ClientFactory
from tests.helpers import Client, chat, join, post_form, receive, receive_type, send


async def create_private(client: Client, name: str) -> None:
    response = await post_form(client, "/rooms", {"name": name, "private": "1"}, page="/")
    assert response.status == 302
    assert response.headers["Location"] == f"/rooms/{name}"


async def change_member(client: Client, room: str, username: str, action: str) -> object:
    return await post_form(
        client,
        f"/rooms/{room}/members",
        {"username": username, "action": action},
        page=f"/rooms/{room}/members",
    )


@pytest.fixture
async def carol(new_client: ClientFactory) -> Client:
    return await new_client("carol")


async def test_private_room_is_invisible_and_closed_to_outsiders(
    client: Client, bob: Client, carol: Client, app: web.Application
) -> None:
    await create_private(bob, "secret")
    room = await app[STORE].room_by_name("secret")
    assert room is not None and room.is_private
    # bob (creator, a member) sees it; carol sees neither the link nor the page.
    assert 'href="/rooms/secret"' in await (await bob.get("/")).text()
    assert 'href="/rooms/secret"' not in await (await carol.get("/")).text()
    response = await carol.get("/rooms/secret")
    assert response.status == 404
    assert "There is no room named" in await response.text()  # same as a room that is not there
    assert (await carol.get("/rooms/secret/members")).status == 404
    # Nor does the live rooms list the page polls mention it.
    listed = {r["name"] for r in (await (await carol.get("/rooms.json")).json())["rooms"]}
    assert "secret" not in listed and "general" in listed
    mine = {r["name"] for r in (await (await bob.get("/rooms.json")).json())["rooms"]}
    assert "secret" in mine
    async with carol.ws_connect("/ws") as ws:
        await send(ws, type="join", room="secret", ref="j1")
        error = await receive_type(ws, "error")
        assert error["code"] == "forbidden" and error["ref"] == "j1"
        await send(ws, type="chat", room="secret", text="let me in")
        assert (await receive_type(ws, "error"))["code"] == "not_joined"
    # The admin (alice) sees and may open every room, to moderate it.
    assert 'href="/rooms/secret"' in await (await client.get("/")).text()
    assert (await client.get("/rooms/secret")).status == 200


async def test_public_rooms_stay_public(bob: Client, carol: Client) -> None:
    response = await post_form(bob, "/rooms", {"name": "open-room"}, page="/")
    assert response.status == 302
    assert 'href="/rooms/open-room"' in await (await carol.get("/")).text()
    assert (await carol.get("/rooms/open-room")).status == 200


async def test_invited_member_sees_and_joins_and_chats(
    client: Client, bob: Client, carol: Client
) -> None:
    await create_private(bob, "secret")
    response = await change_member(bob, "secret", "carol", "invite")
    assert response.status == 302  # type: ignore[attr-defined]
    assert 'href="/rooms/secret"' in await (await carol.get("/")).text()
    assert (await carol.get("/rooms/secret")).status == 200
    members = await (await carol.get("/rooms/secret/members")).text()
    assert 'data-user="bob"' in members and 'data-user="carol"' in members
    assert 'value="remove"' not in members  # carol may look, not manage
    async with bob.ws_connect("/ws") as b, carol.ws_connect("/ws") as c:
        await join(b, "secret")
        await join(c, "secret")
        await chat(c, "secret", "thanks for the invite")
        assert (await receive_type(b, "chat"))["text"] == "thanks for the invite"


async def test_only_the_creator_and_admins_manage_members(
    client: Client, bob: Client, carol: Client, new_client: ClientFactory
) -> None:
    dave = await new_client("dave")
    await create_private(bob, "secret")
    await change_member(bob, "secret", "carol", "invite")
    # carol is a member but not the creator: refused, and dave stays out.
    response = await change_member(carol, "secret", "dave", "invite")
    assert response.status == 403  # type: ignore[attr-defined]
    assert (await dave.get("/rooms/secret")).status == 404
    # An admin may.
    assert (await change_member(client, "secret", "dave", "invite")).status == 302  # type: ignore[attr-defined]
    assert (await dave.get("/rooms/secret")).status == 200
    # Unknown users are a clear error.
    response = await change_member(bob, "secret", "nobody", "invite")
    assert response.status == 404  # type: ignore[attr-defined]
    assert "There is no user named" in await response.text()  # type: ignore[attr-defined]


async def test_removal_ends_the_members_subscription_at_once(
    client: Client, bob: Client, carol: Client, app: web.Application
) -> None:
    await create_private(bob, "secret")
    await change_member(bob, "secret", "carol", "invite")
    async with (
        bob.ws_connect("/ws") as b,
        carol.ws_connect("/ws") as c1,
        carol.ws_connect("/ws") as c2,
    ):
        await join(b, "secret")
        for c in (c1, c2):
            await join(c, "secret")
            await join(c, "general")
        response = await change_member(bob, "secret", "carol", "remove")
        assert response.status == 302  # type: ignore[attr-defined]
        for c in (c1, c2):
            error = await receive_type(c, "error")
            assert error["code"] == "forbidden" and error["ref"] == "secret"
        assert (await receive_type(b, "leave"))["user"] == "carol"
        hub = app[HUB]
        assert not [m for m in hub.members("secret") if m.username == "carol"]
        # bob's next message does not reach carol; her sockets stay open for other rooms.
        await chat(b, "secret", "after carol left")
        await chat(c1, "general", "still in general")
        # c2 sees general's message, and nothing of secret's that was sent before it.
        seen = [await receive(c2)]
        while seen[-1].get("text") != "still in general":
            seen.append(await receive(c2))
        assert not [f for f in seen if f.get("room") == "secret"]
        # And she cannot come back.
        await send(c1, type="join", room="secret")
        assert (await receive_type(c1, "error"))["code"] == "forbidden"
    assert (await carol.get("/rooms/secret")).status == 404
