"""Accounts: register, log in, log out, the first admin, CSRF, cookie flags, Argon2id."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from chat.app import create_app
from chat.keys import STORE
from tests.conftest import ClientFactory, make_settings
from tests.helpers import PASSWORD, Client, csrf, login, post_form, register


async def test_logged_out_visitor_is_sent_to_login(client: Client, anon: Client) -> None:
    response = await anon.get("/", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"].startswith("/login")


async def test_first_account_is_admin_and_second_is_not(
    client: Client, bob: Client, app: web.Application
) -> None:
    alice = await app[STORE].user_by_name("alice")
    second = await app[STORE].user_by_name("bob")
    assert alice is not None and alice.is_admin
    assert second is not None and not second.is_admin


async def test_first_admin_is_logged(
    new_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    await new_client("founder")
    assert "first account 'founder' registered: it is the administrator" in caplog.text


async def test_passwords_are_argon2id(client: Client, app: web.Application) -> None:
    user = await app[STORE].user_by_name("alice")
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash


async def test_register_errors_are_shown_beside_the_form(anon: Client) -> None:
    cases = [
        ({"username": "ok-name", "password": "short", "confirm": "short"}, "8 to 1024"),
        ({"username": "ok-name", "password": PASSWORD, "confirm": "other pass"}, "do not match"),
        ({"username": "<b>", "password": PASSWORD, "confirm": PASSWORD}, "Usernames are"),
    ]
    for form, message in cases:
        response = await post_form(anon, "/register", form)
        assert response.status == 400
        body = await response.text()
        assert message in body
        assert 'class="form-error"' in body
    assert "<b>" not in body  # echoed back escaped


async def test_taken_username_is_refused(client: Client, anon: Client) -> None:
    response = await post_form(
        anon, "/register", {"username": "alice", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status == 409
    assert "taken" in await response.text()


async def test_login_and_logout(client: Client, anon: Client) -> None:
    response = await login(anon, "alice")
    assert response.status == 302
    assert (await anon.get("/", allow_redirects=False)).status == 200
    token = await csrf(anon, "/")
    response = await anon.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login"
    assert (await anon.get("/", allow_redirects=False)).status == 302


async def test_wrong_password_is_refused(client: Client, anon: Client) -> None:
    response = await login(anon, "alice", "not the password")
    assert response.status == 400
    assert "Wrong username or password" in await response.text()
    response = await login(anon, "nobody", "not the password")
    assert response.status == 400
    assert (await anon.get("/", allow_redirects=False)).status == 302


async def test_login_redirects_to_next_but_never_off_site(client: Client, anon: Client) -> None:
    token = await csrf(anon)
    for target, expected in [("/admin", "/admin"), ("//evil.example/x", "/"), ("http://e.x", "/")]:
        response = await anon.post(
            "/login",
            data={"username": "alice", "password": PASSWORD, "next": target, "csrf_token": token},
            allow_redirects=False,
        )
        assert response.headers["Location"] == expected
        token = await csrf(anon, "/login")


async def test_post_without_csrf_token_is_refused(client: Client, anon: Client) -> None:
    for path, data in [
        ("/login", {"username": "alice", "password": PASSWORD}),
        ("/register", {"username": "mallory", "password": PASSWORD, "confirm": PASSWORD}),
        ("/rooms", {"name": "sneaky"}),
        ("/logout", {}),
    ]:
        for extra in ({}, {"csrf_token": "forged"}):
            who = client if path in {"/rooms", "/logout"} else anon
            response = await who.post(path, data={**data, **extra}, allow_redirects=False)
            assert response.status == 403, path
            assert "security token" in await response.text()
    # Nothing happened: alice is still logged in, mallory does not exist, no room was made.
    assert (await client.get("/", allow_redirects=False)).status == 200
    assert (await client.get("/rooms/sneaky")).status == 404


async def test_session_cookie_flags(anon: Client) -> None:
    response = await anon.get("/login")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


async def test_secure_cookie_when_configured(tmp_path: Path, aiohttp_client: object) -> None:
    app = create_app(make_settings(tmp_path, COOKIE_SECURE="1"))
    client = await aiohttp_client(app)  # type: ignore[operator]
    response = await client.get("/login")
    assert "Secure" in response.headers["Set-Cookie"]


async def test_login_starts_a_new_session(client: Client, anon: Client) -> None:
    before = await csrf(anon)
    await login(anon, "alice")
    after = await csrf(anon, "/")
    assert before != after  # a token planted before login is worthless after it


async def test_session_survives_restart(tmp_path: Path, aiohttp_client: object) -> None:
    """The key lives in var/ (or SECRET_KEY): a new app accepts the old cookie."""
    env = {"SECRET_KEY": "", "PASSWORD_TIME_COST": "1"}
    app1 = create_app(make_settings(tmp_path, **env))
    c1 = await aiohttp_client(app1)  # type: ignore[operator]
    await register(c1, "alice")
    cookies = {
        k: v.value for k, v in c1.session.cookie_jar.filter_cookies(c1.make_url("/")).items()
    }
    app2 = create_app(make_settings(tmp_path, **env))
    c2 = await aiohttp_client(app2)  # type: ignore[operator]
    response = await c2.get("/", cookies=cookies, allow_redirects=False)
    assert response.status == 200
    assert "alice" in await response.text()
    key_file = tmp_path / "var" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600


async def test_login_is_throttled_per_username(client: Client, new_client: ClientFactory) -> None:
    attacker = await new_client()
    for _ in range(5):
        assert (await login(attacker, "alice", "guess")).status == 400
    response = await login(attacker, "alice", "guess")
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many attempts" in await response.text()
