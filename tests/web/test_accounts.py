"""Password change and "log out everywhere": a per-user session version, checked on every request
and every upgrade, ends the other sessions and closes their sockets."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from chat.keys import HUB, STORE
from tests.conftest import ClientFactory
from tests.helpers import PASSWORD, Client, join, login, post_form

NEW_PASSWORD = "a brand new passphrase"


async def change_password(
    client: Client, current: str, new: str, confirm: str | None = None
) -> object:
    return await post_form(
        client,
        "/account/password",
        {"current": current, "password": new, "confirm": new if confirm is None else confirm},
        page="/account",
    )


async def second_browser(new_client: ClientFactory, username: str) -> Client:
    other = await new_client()
    assert (await login(other, username)).status == 302
    return other


async def test_password_change_ends_other_sessions_and_keeps_this_one(
    bob: Client, new_client: ClientFactory, app: web.Application
) -> None:
    laptop = await second_browser(new_client, "bob")
    async with bob.ws_connect("/ws") as mine, laptop.ws_connect("/ws") as theirs:
        await join(mine, "general")
        await join(theirs, "general")
        response = await change_password(bob, PASSWORD, NEW_PASSWORD)
        assert response.status == 302  # type: ignore[attr-defined]
        # The other session's socket is closed at once, with a reason the page shows.
        msg = await theirs.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert msg.extra and "password changed" in msg.extra
        # This browser's socket stays open and usable.
        await join(mine, "general")
    # The other session is logged out on its next request and may not open a socket.
    assert (await laptop.get("/", allow_redirects=False)).status == 302
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await laptop.ws_connect("/ws")
    assert info.value.status == 401
    assert (await bob.get("/", allow_redirects=False)).status == 200
    # The new password works, the old one does not.
    assert (await login(await new_client(), "bob", PASSWORD)).status == 400
    assert (await login(await new_client(), "bob", NEW_PASSWORD)).status == 302
    user = await app[STORE].user_by_name("bob")
    assert user is not None and user.session_version == 1
    assert not [c for c in app[HUB].connections.values() if c.username == "bob"]


async def test_password_change_checks_the_current_password_and_the_new_one(bob: Client) -> None:
    for current, new, confirm, message in [
        ("wrong current pw", NEW_PASSWORD, None, "current password is wrong"),
        (PASSWORD, "short", None, "8 to 1024"),
        (PASSWORD, NEW_PASSWORD, "something else", "do not match"),
    ]:
        response = await change_password(bob, current, new, confirm)
        assert response.status == 400  # type: ignore[attr-defined]
        assert message in await response.text()  # type: ignore[attr-defined]
    # Nothing changed: the old password still logs in.
    assert (await bob.get("/", allow_redirects=False)).status == 200


async def test_log_out_everywhere_ends_every_session_and_socket(
    bob: Client, new_client: ClientFactory
) -> None:
    laptop = await second_browser(new_client, "bob")
    async with bob.ws_connect("/ws") as a, laptop.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        response = await post_form(bob, "/account/logout-everywhere", {}, page="/account")
        assert response.status == 302
        assert response.headers["Location"] == "/login"
        for ws in (a, b):
            msg = await ws.receive(timeout=5)
            assert msg.type is WSMsgType.CLOSE
            assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert msg.extra == "logged out everywhere"
    for who in (bob, laptop):
        assert (await who.get("/", allow_redirects=False)).status == 302
    # Logging in again starts a fresh, valid session.
    assert (await login(laptop, "bob")).status == 302
    assert (await laptop.get("/", allow_redirects=False)).status == 200


async def test_an_old_cookie_replayed_after_log_out_everywhere_is_refused(
    bob: Client, anon: Client
) -> None:
    stolen = {
        k: v.value for k, v in bob.session.cookie_jar.filter_cookies(bob.make_url("/")).items()
    }
    await post_form(bob, "/account/logout-everywhere", {}, page="/account")
    anon.session.cookie_jar.update_cookies(stolen, anon.make_url("/"))
    response = await anon.get("/", allow_redirects=False)
    assert response.status == 302
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await anon.ws_connect("/ws")
    assert info.value.status == 401


async def test_account_page_needs_login_and_has_both_forms(bob: Client, anon: Client) -> None:
    assert (await anon.get("/account", allow_redirects=False)).status == 302
    body = await (await bob.get("/account")).text()
    assert 'action="/account/password"' in body
    assert 'action="/account/logout-everywhere"' in body
    assert body.count('name="csrf_token"') >= 3  # the two forms and the header's logout


async def test_an_admin_resets_a_password_to_a_temporary_one(client: Client, bob: Client) -> None:
    response = await post_form(
        client, "/admin/moderate", {"action": "reset-password", "username": "bob"}, page="/admin"
    )
    page = await response.text()
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    match = re.search(r'id="temporary-password" class="secret">([^<]+)<', page)
    assert match
    temporary = match.group(1)
    # Every session of bob ended; the old password is gone.
    assert (await bob.get("/", allow_redirects=False)).headers["Location"].startswith("/login")
    assert (await login(bob, "bob")).status == 400
    assert (await login(bob, "bob", temporary)).status == 302
    # Logged in with it, bob can only choose a new password.
    for path in ("/", "/rooms/general", "/admin"):
        moved = await bob.get(path, allow_redirects=False)
        assert moved.status == 302 and moved.headers["Location"] == "/account", path
    assert "An administrator reset your password" in await (await bob.get("/account")).text()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await bob.ws_connect("/ws")
    assert refused.value.status == 403
    changed = await post_form(
        bob,
        "/account/password",
        {"current": temporary, "password": "a brand new one", "confirm": "a brand new one"},
        page="/account",
    )
    assert changed.status == 302
    assert (await bob.get("/", allow_redirects=False)).status == 200
    log = await (await client.get("/admin")).text()
    assert '<tr data-action="reset-password">' in log
    # An admin's own password is changed on the account page, not reset.
    own = await post_form(
        client, "/admin/moderate", {"action": "reset-password", "username": "alice"}, page="/admin"
    )
    assert own.status == 403
