"""Moderation on the admin page and the socket: kick, ban, unban, delete a message; every action
is logged with who took it."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from chat.keys import HUB, STORE
from tests.conftest import ClientFactory
from tests.helpers import Client, chat, join, login, post_form, receive_type, send


async def moderate(admin: Client, **form: str) -> object:
    return await post_form(admin, "/admin/moderate", form, page="/admin")


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    msg = await ws.receive(timeout=5)
    while msg.type is WSMsgType.TEXT:
        msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    return msg.data, msg.extra or ""


async def test_kick_closes_every_socket_of_the_user_with_the_reason(
    client: Client, bob: Client, app: web.Application
) -> None:
    async with (
        bob.ws_connect("/ws") as b1,
        bob.ws_connect("/ws") as b2,
        client.ws_connect("/ws") as a,
    ):
        await join(b1, "general")
        await join(b2, "general")
        await join(a, "general")
        response = await moderate(client, action="kick", username="bob", reason="cool off")
        assert response.status == 302  # type: ignore[attr-defined]
        for ws in (b1, b2):
            code, reason = await closed_with(ws)
            assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert reason == "kicked by an admin: cool off"
        # alice is untouched.
        assert (await chat(a, "general", "still here"))["type"] == "chat"
    assert not [c for c in app[HUB].connections.values() if c.username == "bob"]
    # A kick is not a ban: bob may come back.
    async with bob.ws_connect("/ws") as again:
        await join(again, "general")


async def test_ban_closes_refuses_login_and_upgrade_until_unbanned(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        await moderate(client, action="ban", username="bob")
        code, reason = await closed_with(b)
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION and reason == "banned by an admin"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await bob.ws_connect("/ws")
    assert info.value.status == 403
    assert (await bob.get("/", allow_redirects=False)).status == 302
    fresh = await new_client()
    response = await login(fresh, "bob")
    assert response.status == 403
    assert "banned" in await response.text()
    admin_page = await (await client.get("/admin")).text()
    assert '<li data-user="bob">' in admin_page
    await moderate(client, action="unban", username="bob")
    assert (await login(fresh, "bob")).status == 302
    async with fresh.ws_connect("/ws") as b:
        await join(b, "general")


async def test_admin_deletes_a_message_over_the_socket_everywhere(
    client: Client, bob: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        keep = await chat(b, "general", "keep me")
        spam = await chat(b, "general", "buy now")
        await receive_type(a, "chat")
        await receive_type(a, "chat")
        await send(a, type="delete", room="general", seq=spam["seq"])
        for ws in (a, b):
            # The deletion is an event of the room: the next seq, the message as it now stands.
            update = await receive_type(ws, "update")
            assert update["seq"] == spam["seq"] + 1
            assert update["message"]["seq"] == spam["seq"] and update["message"]["deleted"]
            assert update["message"]["text"] == ""
        # Gone from history and from the page; the seqs still count, so nobody sees a gap.
        history = await join(b, "general", since=0)
        assert [m["text"] for m in history["messages"]] == ["keep me"]
        assert history["complete"] is True
        after = await chat(b, "general", "after")
        assert after["seq"] == spam["seq"] + 2
    body = await (await bob.get("/rooms/general")).text()
    assert "buy now" not in body and "keep me" in body
    messages, _ = await app[STORE].history("general", keep["seq"] - 1)
    assert [m.text for m in messages] == ["keep me", "after"]


async def test_non_admins_cannot_delete_and_bad_deletes_are_errors(
    client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        sent = await chat(a, "general", "mine")
        await send(b, type="delete", room="general", seq=sent["seq"])
        assert (await receive_type(b, "error"))["code"] == "forbidden"
        await send(a, type="delete", room="general", seq=999)
        assert (await receive_type(a, "error"))["code"] == "no_such_message"
        await send(a, type="delete", room="general")
        assert (await receive_type(a, "error"))["code"] == "bad_request"
    history = await (await bob.get("/rooms/general")).text()
    assert "mine" in history


async def test_delete_from_the_admin_page_reaches_open_pages(client: Client, bob: Client) -> None:
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        sent = await chat(b, "general", "oops")
        response = await moderate(client, action="delete", room="#general", seq=str(sent["seq"]))
        assert response.status == 302  # type: ignore[attr-defined]
        assert (await receive_type(b, "update"))["message"]["seq"] == sent["seq"]
    response = await moderate(client, action="delete", room="general", seq="12345")
    assert response.status == 404  # type: ignore[attr-defined]
    assert "There is no message 12345" in await response.text()  # type: ignore[attr-defined]


async def test_every_action_is_logged_with_who_did_it(client: Client, bob: Client) -> None:
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        sent = await chat(b, "general", "x")
    await moderate(client, action="kick", username="bob")
    await moderate(client, action="ban", username="bob", reason="spam")
    await moderate(client, action="unban", username="bob")
    await moderate(client, action="delete", room="general", seq=str(sent["seq"]))
    body = await (await client.get("/admin")).text()
    log = body[body.index('id="moderation-log"') :]
    for action in ("kick", "ban", "unban", "delete"):
        assert f'<tr data-action="{action}">' in log
    assert log.count('<td class="actor">alice</td>') == 4
    assert "spam" in log and "#general message" in log
    # The online table above is untouched by all this.
    assert body.index('id="online"') < body.index('id="moderation"')


async def test_moderation_is_for_admins_only_and_needs_csrf(client: Client, bob: Client) -> None:
    response = await moderate(bob, action="kick", username="alice")
    assert response.status == 403  # type: ignore[attr-defined]
    response = await client.post(
        "/admin/moderate", data={"action": "ban", "username": "bob"}, allow_redirects=False
    )
    assert response.status == 403
    assert (await bob.get("/", allow_redirects=False)).status == 200  # not banned
    response = await moderate(client, action="ban", username="alice")
    assert response.status == 403  # type: ignore[attr-defined]
    assert "cannot ban yourself" in await response.text()  # type: ignore[attr-defined]


async def test_destructive_actions_are_confirmed_on_a_page_of_their_own(
    client: Client, bob: Client
) -> None:
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        sent = await chat(b, "general", "<b>regret</b> this")
    seq = str(sent["seq"])
    # Asking is harmless: the page shows the message and a form, nothing happens yet.
    page = await client.get(
        f"/admin/confirm?action=delete&room=general&seq={seq}&next=/rooms/general"
    )
    body = await page.text()
    assert page.status == 200 and "Delete this message?" in body
    assert "&lt;b&gt;regret&lt;/b&gt; this" in body and 'name="csrf_token"' in body
    assert (await client.app[STORE].message_at("general", sent["seq"])) is not None
    kick = await (await client.get("/admin/confirm?action=kick&username=bob")).text()
    assert "Kick bob?" in kick
    assert (await client.get("/admin/confirm?action=kick&username=nobody")).status == 404
    assert (await bob.get(f"/admin/confirm?action=delete&room=general&seq={seq}")).status == 403
    # Confirmed, it goes back where it came from; the log keeps what the message said.
    response = await post_form(
        client,
        "/admin/moderate",
        {"action": "delete", "room": "general", "seq": seq, "next": "/rooms/general"},
        page="/admin",
    )
    assert response.headers["Location"] == "/rooms/general"
    log = await (await client.get("/admin")).text()
    assert "bob: &lt;b&gt;regret&lt;/b&gt; this" in log
    elsewhere = await post_form(
        client,
        "/admin/moderate",
        {"action": "kick", "username": "bob", "next": "//evil"},
        page="/admin",
    )
    assert elsewhere.headers["Location"] == "/admin#moderation"
