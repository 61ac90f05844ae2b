"""Issue 11, accounts: the login redirect stays on the site, a logout ends the session for every
copy of its cookie, registration and password checks cannot be turned into unlimited Argon2
work or unlimited guesses, a ban outlives an unban's cookies, names are unique regardless of case,
and room creation is bounded.

The logout across two nodes on Redis is in test_logout_cluster.py.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from aiohttp import WSServerHandshakeError, web
from yarl import URL

from tests.conftest import ClientFactory
from tests.helpers import PASSWORD, Client, create_room, csrf, login, post_form

NEXT_RE = re.compile(r'name="next" value="([^"]*)"')

# Each would send the browser off the site if it reached the Location header as written (the
# tab, newline and carriage return are dropped by the URL parser, leaving "//evil.example").
HOSTILE_NEXT = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "/%2F%2Fevil.example",
    "/..//evil.example",
    "/%09/evil.example",
    "javascript:alert(1)",
]


@pytest.mark.parametrize("target", HOSTILE_NEXT)
async def test_login_never_redirects_off_the_site(anon: Client, bob: Client, target: str) -> None:
    # The login page a link lands on carries only a safe target into its form...
    page = await anon.get(URL("/login").with_query(next=target))
    match = NEXT_RE.search(await page.text())
    assert match and match.group(1) == "/"
    # ...and a form posted with the hostile target directly lands on the home page.
    response = await post_form(
        anon, "/login", {"username": "bob", "password": PASSWORD, "next": target}
    )
    assert response.status == 302
    assert response.headers["Location"] == "/"


async def test_percent_encoded_control_characters_in_the_link_are_refused(anon: Client) -> None:
    # Exactly as the probe sent it: the query string decodes %09 to a tab.
    for raw in ("%09", "%0a", "%0d", "%5c"):
        page = await anon.get(f"/login?next=/{raw}/evil.example")
        match = NEXT_RE.search(await page.text())
        assert match and match.group(1) == "/", raw


async def test_a_local_target_survives_login(anon: Client, bob: Client) -> None:
    target = "/rooms/general?from=link"
    page = await anon.get(URL("/login").with_query(next=target))
    match = NEXT_RE.search(await page.text())
    assert match and match.group(1).replace("&amp;", "&") == target
    response = await post_form(
        anon, "/login", {"username": "bob", "password": PASSWORD, "next": target}
    )
    assert response.headers["Location"] == target


def session_cookie(client: Client) -> str:
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return f"chat_session={cookies['chat_session'].value}"


async def test_a_cookie_copied_before_logout_is_refused_everywhere(
    bob: Client, anon: Client
) -> None:
    stolen = {"Cookie": session_cookie(bob)}
    assert (await anon.get("/", headers=stolen, allow_redirects=False)).status == 200
    await post_form(bob, "/logout", {}, page="/")
    page = await anon.get("/", headers=stolen, allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")
    assert (await anon.get("/rooms.json", headers=stolen)).status == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await anon.ws_connect("/ws", headers=stolen)
    assert refused.value.status == 401
    # Logging in again starts a new session, which works.
    assert (await login(bob, "bob")).status == 302
    assert (await bob.get("/", allow_redirects=False)).status == 200


async def test_logout_ends_only_its_own_session(new_client: ClientFactory) -> None:
    phone = await new_client("bob")
    laptop = await new_client()
    assert (await login(laptop, "bob")).status == 302
    await post_form(phone, "/logout", {}, page="/")
    assert (await laptop.get("/", allow_redirects=False)).status == 200


@pytest.mark.parametrize(
    "settings_env",
    [
        {
            "REGISTRATIONS_PER_HOUR": "1000",
            "PASSWORD_HASHES_IN_FLIGHT": "1",
            "PASSWORD_HASH_QUEUE": "2",
            "PASSWORD_TIME_COST": "2",
            "PASSWORD_MEMORY_KIB": "32768",
        }
    ],
)
async def test_a_registration_burst_is_refused_at_once_and_logins_go_on(
    bob: Client, new_client: ClientFactory
) -> None:
    flooders = [await new_client() for _ in range(24)]
    tokens = [await csrf(f, "/register") for f in flooders]
    honest = await new_client()
    login_token = await csrf(honest, "/login")

    async def flood(i: int) -> tuple[int, float, str | None]:
        start = time.monotonic()
        response = await flooders[i].post(
            "/register",
            data={
                "username": f"flood{i}",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "csrf_token": tokens[i],
            },
            allow_redirects=False,
        )
        await response.read()
        return response.status, time.monotonic() - start, response.headers.get("Retry-After")

    async def honest_login() -> int:
        await asyncio.sleep(0.05)  # into the thick of it
        response = await honest.post(
            "/login",
            data={"username": "bob", "password": PASSWORD, "csrf_token": login_token},
            allow_redirects=False,
        )
        return response.status

    login_attempt = asyncio.ensure_future(honest_login())
    results = await asyncio.gather(*(flood(i) for i in range(len(flooders))))
    assert await login_attempt == 302
    refused = [r for r in results if r[0] == 503]
    created = [r for r in results if r[0] == 302]
    assert len(refused) + len(created) == len(results)
    # One hash runs and one waits; everyone else is told to come back, with a Retry-After.
    assert len(refused) >= len(results) // 2
    assert all(retry is not None and int(retry) >= 1 for _, _, retry in refused)
    # A refusal does not wait for the hashes in front of it: it is faster than the slowest
    # accepted registration.
    assert max(t for _, t, _ in refused) < max(t for _, t, _ in created)


@pytest.mark.parametrize(
    "settings_env", [{"REGISTRATIONS_PER_HOUR": "1000", "PASSWORD_HASH_QUEUE": "100"}]
)
async def test_a_burst_within_the_hash_queue_is_served_in_full(
    new_client: ClientFactory,
) -> None:
    clients = [await new_client() for _ in range(40)]
    tokens = [await csrf(c, "/register") for c in clients]

    async def attempt(i: int) -> int:
        form = {"username": f"user{i}", "password": PASSWORD, "confirm": PASSWORD}
        response = await clients[i].post(
            "/register", data={**form, "csrf_token": tokens[i]}, allow_redirects=False
        )
        return response.status

    assert await asyncio.gather(*(attempt(i) for i in range(len(clients)))) == [302] * 40


@pytest.mark.parametrize(
    "settings_env",
    [
        {
            "REGISTRATIONS_PER_HOUR": "1000",
            "PASSWORD_HASHES_IN_FLIGHT": "1",
            "PASSWORD_HASH_QUEUE": "0",
        }
    ],
)
async def test_refused_registrations_cost_no_hash(bob: Client, new_client: ClientFactory) -> None:
    """With room for one hash and no queue, a burst that hashed first would see 503s; checked
    first, every attempt gets its real answer."""
    bad = [
        {"username": "Bob", "password": PASSWORD, "confirm": PASSWORD},  # taken, in any case
        {"username": "-dash", "password": PASSWORD, "confirm": PASSWORD},
        {"username": "fresh", "password": "short", "confirm": "short"},
        {"username": "fresh", "password": PASSWORD, "confirm": "other password"},
    ] * 4
    clients = [await new_client() for _ in bad]
    tokens = [await csrf(c, "/register") for c in clients]

    async def attempt(i: int) -> int:
        response = await clients[i].post(
            "/register", data={**bad[i], "csrf_token": tokens[i]}, allow_redirects=False
        )
        return response.status

    statuses = await asyncio.gather(*(attempt(i) for i in range(len(bad))))
    assert statuses == [409, 400, 400, 400] * 4


@pytest.mark.parametrize("settings_env", [{"REGISTRATIONS_PER_HOUR": "3"}])
async def test_failed_registrations_count_against_the_limit(anon: Client) -> None:
    mismatched = {"username": "someone", "password": PASSWORD, "confirm": "something else"}
    for _ in range(3):
        assert (await post_form(anon, "/register", mismatched)).status == 400
    fine = {"username": "someone", "password": PASSWORD, "confirm": PASSWORD}
    response = await post_form(anon, "/register", fine)
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1


async def test_usernames_are_unique_regardless_of_case(bob: Client, anon: Client) -> None:
    for twin in ("Bob", "BOB"):
        form = {"username": twin, "password": PASSWORD, "confirm": PASSWORD}
        response = await post_form(anon, "/register", form)
        assert response.status == 409
        assert "is taken" in await response.text()
    # The account answers to its name in any case.
    assert (await login(anon, "BoB")).status == 302


@pytest.mark.parametrize("settings_env", [{"LOGIN_ATTEMPTS_PER_MINUTE": "3"}])
async def test_wrong_current_passwords_count_against_the_login_limits(
    bob: Client, anon: Client
) -> None:
    guess = {"current": "wrong guess", "password": "new password 1", "confirm": "new password 1"}
    for _ in range(3):
        response = await post_form(bob, "/account/password", guess, page="/account")
        assert response.status == 400
    response = await post_form(bob, "/account/password", guess, page="/account")
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    # Even the right current password waits now, and so does a login to the account.
    right = {**guess, "current": PASSWORD}
    assert (await post_form(bob, "/account/password", right, page="/account")).status == 429
    assert (await login(anon, "bob")).status == 429


async def test_an_unban_does_not_revive_the_cookies_of_before_the_ban(
    client: Client, bob: Client, app: web.Application
) -> None:
    for action in ("ban", "unban"):
        response = await post_form(
            client, "/admin/moderate", {"action": action, "username": "bob"}, page="/admin"
        )
        assert response.status == 302
    page = await bob.get("/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"].startswith("/login")
    assert (await login(bob, "bob")).status == 302


@pytest.mark.parametrize("settings_env", [{"ROOMS_PER_HOUR": "2"}])
async def test_room_creation_is_rate_limited_per_user(client: Client, bob: Client) -> None:
    assert (await create_room(bob, "first")).status == 302
    assert (await create_room(bob, "second")).status == 302
    response = await create_room(bob, "third")
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    assert "rooms an hour" in await response.text()
    # Another user has an allowance of their own; the admin sets the chat up unhindered.
    assert (await create_room(client, "admins-1")).status == 302


@pytest.mark.parametrize("settings_env", [{"MAX_PUBLIC_ROOMS": "3"}])
async def test_public_rooms_have_a_global_cap(client: Client, bob: Client) -> None:
    # "general" is the first of the three.
    assert (await create_room(client, "two")).status == 302
    assert (await create_room(bob, "three")).status == 302
    response = await create_room(bob, "four")
    assert response.status == 409
    assert "3 public rooms" in await response.text()
    private = await post_form(bob, "/rooms", {"name": "four", "private": "on"}, page="/")
    assert private.status == 302
