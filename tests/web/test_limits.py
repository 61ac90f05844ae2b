"""Every limit and header, each with a test that fails if it is removed. (The chat rate limit,
connection cap, frame and text size limits and the slow-reader close are in test_ws.py.)

Clients that need their own IP address connect from another loopback address (127.0.0.x):
that is how "per IP" is told apart from "per username" without leaving the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.helpers import CSRF_RE, PASSWORD, Client, join, receive, receive_type, send

Browser = Callable[[str], Awaitable["FromAddress"]]


class FromAddress:
    """A browser on another loopback address, speaking the login and register forms."""

    def __init__(self, server: TestServer, address: str) -> None:
        self.server = server
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str, str | None]:
        async with self.session.get(self.server.make_url(path)) as page:
            match = CSRF_RE.search(await page.text())
            assert match
        async with self.session.post(
            self.server.make_url(path),
            data={**form, "csrf_token": match.group(1)},
            allow_redirects=False,
        ) as response:
            return response.status, await response.text(), response.headers.get("Retry-After")

    async def login(self, username: str, password: str = PASSWORD) -> int:
        status, _, _ = await self.post("/login", {"username": username, "password": password})
        return status

    async def register(self, username: str) -> tuple[int, str | None]:
        status, _, retry = await self.post(
            "/register", {"username": username, "password": PASSWORD, "confirm": PASSWORD}
        )
        return status, retry


@pytest.fixture
async def browser(server: TestServer) -> AsyncIterator[Browser]:
    opened: list[FromAddress] = []

    async def make(address: str) -> FromAddress:
        b = FromAddress(server, address)
        opened.append(b)
        return b

    yield make
    for b in opened:
        await b.session.close()


@pytest.mark.parametrize("settings_env", [{"LOGIN_ATTEMPTS_PER_MINUTE": "3"}])
async def test_login_is_throttled_per_ip_across_usernames(
    client: Client, bob: Client, browser: Browser
) -> None:
    attacker = await browser("127.0.0.2")
    for name in ("alice", "bob", "nobody"):
        assert await attacker.login(name, "guess") == 400
    status, body, retry = await attacker.post("/login", {"username": "carol", "password": "guess"})
    assert status == 429 and retry is not None and int(retry) >= 1
    assert "Too many attempts" in body
    # Even the right password is refused from that address for now...
    assert await attacker.login("bob") == 429
    # ...while bob, from his own address, logs in as usual.
    assert await (await browser("127.0.0.3")).login("bob") == 302


@pytest.mark.parametrize("settings_env", [{"LOGIN_ATTEMPTS_PER_MINUTE": "3"}])
async def test_username_throttle_spares_other_users_and_successes_never_count(
    client: Client, bob: Client, browser: Browser
) -> None:
    alice = await browser("127.0.0.4")
    for _ in range(6):  # twice the limit, all correct: never throttled
        assert await alice.login("alice") == 302
    attacker = await browser("127.0.0.2")
    for _ in range(3):
        assert await attacker.login("alice", "guess") == 400
    # alice's name is now throttled from any address (that is the point of per-username)...
    assert await (await browser("127.0.0.5")).login("alice") == 429
    # ...and bob, a different user, is not.
    assert await (await browser("127.0.0.6")).login("bob") == 302


@pytest.mark.parametrize("settings_env", [{"REGISTRATIONS_PER_HOUR": "2"}])
async def test_registration_is_limited_per_ip(client: Client, browser: Browser) -> None:
    spammer = await browser("127.0.0.2")
    assert (await spammer.register("spam1"))[0] == 302
    assert (await spammer.register("spam2"))[0] == 302
    status, retry = await spammer.register("spam3")
    assert status == 429 and retry is not None and int(retry) >= 1
    assert (await (await browser("127.0.0.3")).register("honest"))[0] == 302


@pytest.mark.parametrize("settings_env", [{"TYPING_RATE_PER_SECOND": "0.1", "TYPING_BURST": "2"}])
async def test_typing_is_throttled(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        for state in (True, False, True):
            await send(b, type="typing", room="general", typing=state)
        error = await receive_type(b, "error")
        assert error["code"] == "rate_limited" and error["retry_after"] > 0
        await send(b, type="chat", room="general", text="marker", client_id="m")
        seen = [await receive(a)]
        while seen[-1]["type"] != "chat":
            seen.append(await receive(a))
    assert [f["typing"] for f in seen if f["type"] == "typing"] == [True, False]


@pytest.mark.parametrize("settings_env", [{"MAX_ROOMS_PER_CONNECTION": "2"}])
async def test_rooms_per_connection_are_capped(client: Client) -> None:
    from tests.helpers import create_room

    await create_room(client, "second")
    await create_room(client, "third")
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        await join(ws, "second")
        await send(ws, type="join", room="third")
        error = await receive_type(ws, "error")
        assert error["code"] == "bad_request" and "At most 2 rooms" in error["message"]
        await join(ws, "general")  # re-joining a room it is in is fine


@pytest.mark.parametrize("settings_env", [{"MAX_CONNECTIONS_PER_USER": "1"}])
async def test_connection_cap_is_per_user_and_frees_up(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect("/ws")
        assert info.value.status == 429
        assert info.value.headers is not None and info.value.headers["Retry-After"]
        async with bob.ws_connect("/ws"):  # another user is not counted against alice
            pass
    async with client.ws_connect("/ws"):  # the closed one no longer counts
        pass


async def test_every_security_header_on_pages_errors_and_json(anon: Client) -> None:
    for path in ["/login", "/nowhere", "/healthz", "/static/chat.js"]:
        response = await anon.get(path)
        headers = response.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert "Strict-Transport-Security" not in headers  # only over TLS (test_tls.py)
