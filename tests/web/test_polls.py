"""The JSON endpoints the pages poll: /rooms.json and /admin/online.json."""

from __future__ import annotations

from tests.helpers import Client, chat, join, receive_type


async def test_admin_online_json_lists_who_is_online_and_where(client: Client, bob: Client) -> None:
    async with bob.ws_connect("/ws") as ws:
        await join(ws, "general")
        response = await client.get("/admin/online.json")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        online = (await response.json())["online"]
        assert [(u["username"], u["rooms"], u["connections"]) for u in online] == [
            ("bob", ["general"], 1)
        ]
        assert isinstance(online[0]["since"], int) and online[0]["nodes"]
    response = await client.get("/admin/online.json")
    assert (await response.json())["online"] == []


async def test_admin_online_json_is_for_admins_only(
    client: Client, bob: Client, anon: Client
) -> None:
    assert (await client.get("/admin/online.json")).status == 200  # alice, the first, is admin
    refused = await bob.get("/admin/online.json")
    assert refused.status == 403
    assert "administrators" in (await refused.json())["error"]
    anonymous = await anon.get("/admin/online.json", allow_redirects=False)
    assert anonymous.status == 401
    assert (await anonymous.json())["error"] == "Log in first."


async def test_rooms_json_counts_people_and_unread(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as alice_ws, bob.ws_connect("/ws") as bob_ws:
        await join(alice_ws, "general")
        first = await chat(alice_ws, "general", "one")
        history = await join(bob_ws, "general")
        assert [m["text"] for m in history["messages"]] == ["one"]
        await bob_ws.send_json({"type": "read", "room": "general", "seq": first["seq"]})
        await chat(alice_ws, "general", "two")
        await chat(alice_ws, "general", "three")
        response = await bob.get("/rooms.json")
        assert response.status == 200
        rooms = {r["name"]: r for r in (await response.json())["rooms"]}
        assert rooms["general"] == {
            "name": "general",
            "online": 2,
            "unread": 2,
            "mentions": 0,
            "private": False,
        }


async def test_rooms_json_needs_a_login(anon: Client) -> None:
    response = await anon.get("/rooms.json", allow_redirects=False)
    assert response.status == 401


async def test_presence_carries_read_markers(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as alice_ws:
        await join(alice_ws, "general")
        sent = await chat(alice_ws, "general", "hello")
        await alice_ws.send_json({"type": "read", "room": "general", "seq": sent["seq"]})
    async with bob.ws_connect("/ws") as bob_ws:
        await bob_ws.send_json({"type": "join", "room": "general"})
        presence = await receive_type(bob_ws, "presence")
        assert presence["read"] == {"alice": sent["seq"]}
