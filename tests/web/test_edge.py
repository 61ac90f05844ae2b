"""Issue 11, the HTTP edge: malformed and slow request bodies, the client address behind a
trusted proxy (and only then), the Server header, malformed requests in the log, PUBLIC_URL,
the SQLite file's mode, the per-user typing limit, and the case-twin migration check."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from sqlalchemy import create_engine

from chat.settings import Settings
from chat.storage.migrate import alembic_config
from chat.web.clientip import client_address
from tests.cluster import ROOT
from tests.helpers import CSRF_RE, Client, csrf, join, receive_type, send

# --- request bodies ---


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"username=\xff\xfe\xfa&password=x"),
        ("application/x-www-form-urlencoded; charset=no-such-charset", b"username=a"),
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nthis is not multipart\r\n"),
        ("multipart/form-data", b"--xyz\r\n\r\n--xyz--\r\n"),
    ],
)
async def test_a_malformed_form_body_is_a_400_and_one_warning(
    anon: Client, caplog: pytest.LogCaptureFixture, content_type: str, body: bytes
) -> None:
    await anon.get("/login")
    caplog.clear()
    for path in ("/login", "/register", "/logout"):
        response = await anon.post(path, data=body, headers={"Content-Type": content_type})
        assert response.status == 400, (path, await response.text())
        assert "could not be read" in await response.text()
    warnings = [r for r in caplog.records if r.name == "chat.web.forms"]
    assert len(warnings) == 3 and all(r.levelno == logging.WARNING for r in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("settings_env", [{"MAX_FORM_BYTES": "2048"}])
async def test_a_form_over_max_form_bytes_is_refused(anon: Client) -> None:
    token = await csrf(anon)
    form = {"username": "x" * 4096, "password": "p", "csrf_token": token}
    response = await anon.post("/login", data=form)
    assert response.status == 413


async def raw_request(server: TestServer, data: bytes, *, trickle: bytes = b"") -> bytes:
    """Send `data`, then `trickle` one byte every 50 ms, until the server answers; return its
    answer (bounded by the test's own timeout)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(data)
        answer = asyncio.ensure_future(reader.read(65536))
        for byte in trickle:
            done, _ = await asyncio.wait([answer], timeout=0.05)
            if done:
                break
            writer.write(bytes([byte]))
        return await asyncio.wait_for(answer, 10)
    finally:
        writer.close()


@pytest.mark.parametrize("settings_env", [{"BODY_TIMEOUT_SECONDS": "0.5"}])
async def test_a_body_sent_one_byte_at_a_time_is_cut_off(
    server: TestServer, anon: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await csrf(anon)  # a session, so the request would pass everything but its body
    jar = anon.session.cookie_jar.filter_cookies(anon.make_url("/"))
    cookies = "; ".join(f"{c.key}={c.value}" for c in jar.values())
    head = (
        "POST /login HTTP/1.1\r\nHost: localhost\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Cookie: {cookies}\r\nContent-Length: 200\r\n\r\n"
    ).encode()
    start = time.monotonic()
    async with asyncio.timeout(15):
        answer = await raw_request(server, head, trickle=b"username=slow&" * 14)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"\r\nConnection: close\r\n" in answer
    assert time.monotonic() - start < 5
    assert any(r.levelno == logging.WARNING and r.name == "chat.web.forms" for r in caplog.records)


@pytest.mark.parametrize(
    ("framing", "body", "close"),
    [
        ("Content-Length: 500", b"username=gone", True),
        ("Transfer-Encoding: chunked", b"5\r\nuser=\r\nzz\r\n", False),
    ],
)
async def test_a_body_cut_off_or_misframed_is_one_warning(
    server: TestServer,
    anon: Client,
    caplog: pytest.LogCaptureFixture,
    framing: str,
    body: bytes,
    close: bool,
) -> None:
    await csrf(anon)
    jar = anon.session.cookie_jar.filter_cookies(anon.make_url("/"))
    cookies = "; ".join(f"{c.key}={c.value}" for c in jar.values())
    caplog.clear()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(
        (
            "POST /login HTTP/1.1\r\nHost: localhost\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Cookie: {cookies}\r\n{framing}\r\n\r\n"
        ).encode()
        + body
    )
    await writer.drain()
    if close:
        await asyncio.sleep(0.2)
    else:
        answer = await asyncio.wait_for(reader.read(65536), 5)
        assert answer.split(b" ", 2)[1] == b"400", answer[:80]
    writer.close()
    # Told apart by aiohttp (a chunk that is no chunk) or by our form reading (a lost client):
    # either way one WARNING line.
    async with asyncio.timeout(5):
        while not any(r.levelno == logging.WARNING for r in caplog.records):
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # anything logged after the warning would be caught below
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


# --- the client's address ---

Browser = Callable[[str], Awaitable[aiohttp.ClientSession]]


@pytest.fixture
async def from_address() -> AsyncIterator[Browser]:
    opened: list[aiohttp.ClientSession] = []

    async def make(address: str) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        opened.append(session)
        return session

    yield make
    for session in opened:
        await session.close()


_names = itertools.count()


async def failed_login(
    session: aiohttp.ClientSession, server: TestServer, forwarded_for: str | None
) -> int:
    """A wrong password, each time for another name: only the per-address limit can trip."""
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    async with session.get(server.make_url("/login"), headers=headers) as page:
        match = CSRF_RE.search(await page.text())
        assert match
    async with session.post(
        server.make_url("/login"),
        data={
            "username": f"nobody{next(_names)}",
            "password": "guess",
            "csrf_token": match.group(1),
        },
        headers=headers,
        allow_redirects=False,
    ) as response:
        return response.status


@pytest.mark.parametrize("settings_env", [{"LOGIN_ATTEMPTS_PER_MINUTE": "2"}])
async def test_forwarded_for_is_ignored_without_trusted_proxies(
    server: TestServer, from_address: Browser
) -> None:
    attacker = await from_address("127.0.0.2")
    # Each attempt claims to come from somewhere else; the limit goes by the real peer.
    statuses = [await failed_login(attacker, server, f"198.51.100.{i}") for i in range(3)]
    assert statuses == [400, 400, 429]


@pytest.mark.parametrize(
    "settings_env", [{"LOGIN_ATTEMPTS_PER_MINUTE": "2", "TRUSTED_PROXIES": "127.0.0.1/32, ::1"}]
)
async def test_behind_a_trusted_proxy_limits_go_by_the_forwarded_client(
    server: TestServer, from_address: Browser
) -> None:
    proxy = await from_address("127.0.0.1")
    # Two clients behind the proxy: one exhausts its allowance, the other keeps its own.
    assert [await failed_login(proxy, server, "203.0.113.5") for _ in range(3)] == [400, 400, 429]
    assert await failed_login(proxy, server, "203.0.113.6") == 400
    # The throttled client cannot escape by forging a hop in front of the one the proxy added:
    # the rightmost untrusted address counts.
    assert await failed_login(proxy, server, "192.0.2.77, 203.0.113.5") == 429
    # A peer that is not a trusted proxy is not believed, whatever it forwards.
    direct = await from_address("127.0.0.3")
    assert [await failed_login(direct, server, f"192.0.2.{i}") for i in range(3)] == [400, 400, 429]


PROXIES = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("2001:db8::/64"))


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("192.0.2.1", {"X-Forwarded-For": "198.51.100.1"}, "192.0.2.1"),  # untrusted peer
        ("10.0.0.5", {}, "10.0.0.5"),  # a proxy's own request
        ("10.0.0.5", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
        # Two proxies in a row, and a forged hop in front: the rightmost untrusted one counts.
        ("10.0.0.5", {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.0.0.7"}, "198.51.100.1"),
        ("10.0.0.5", {"X-Forwarded-For": "10.0.0.8, 10.0.0.7"}, "10.0.0.8"),  # all trusted
        ("10.0.0.5", {"X-Forwarded-For": "garbage, 10.0.0.7"}, "10.0.0.7"),
        ("10.0.0.5", {"X-Real-IP": "198.51.100.2"}, "198.51.100.2"),
        ("2001:db8::9", {"X-Forwarded-For": "[2001:db8:1::1]:4711"}, "2001:db8:1::1"),
        ("::ffff:10.0.0.5", {"X-Forwarded-For": "198.51.100.3:5000"}, "198.51.100.3"),
    ],
)
def test_the_client_address_rules(peer: str, headers: dict[str, str], client: str) -> None:
    assert client_address(peer, CIMultiDictProxy(CIMultiDict(headers)), PROXIES) == client


@pytest.mark.parametrize("settings_env", [{"TRUSTED_PROXIES": "127.0.0.1"}])
async def test_metrics_are_not_loopback_for_a_forwarded_client(
    server: TestServer, from_address: Browser
) -> None:
    proxy = await from_address("127.0.0.1")
    async with proxy.get(server.make_url("/metrics")) as response:
        assert response.status == 200
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    async with proxy.get(server.make_url("/metrics"), headers=forwarded) as response:
        assert response.status == 403
    async with proxy.get(server.make_url("/metrics"), headers={"X-Real-IP": "203.0.113.9"}) as r:
        assert r.status == 403


# --- headers, logs, PUBLIC_URL ---


async def test_server_header_names_no_versions(
    server: TestServer, anon: Client, caplog: pytest.LogCaptureFixture
) -> None:
    response = await anon.get("/login")
    assert response.headers["Server"] == "chat"
    caplog.clear()
    # aiohttp refuses these itself, before any handler: still no versions, and one WARNING.
    for bad in (
        b"GET /login HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        async with asyncio.timeout(10):
            answer = await raw_request(server, bad)
        assert answer.split(b" ", 2)[1] == b"400", answer[:80]
        assert b"\r\nServer: chat\r\n" in answer
        assert b"Python" not in answer and b"aiohttp/" not in answer
    logged = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(logged) == 2
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in logged)


@pytest.mark.parametrize("settings_env", [{"PUBLIC_URL": "https://chat.example.com/"}])
async def test_public_url_is_the_origin_and_the_redirect_base(client: Client, anon: Client) -> None:
    response = await anon.get("/", allow_redirects=False)
    assert response.headers["Location"] == "https://chat.example.com/login?next=/"
    # The Host header no longer decides which origin may open a socket.
    own_host = f"http://{client.host}:{client.port}"
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": own_host})
    assert refused.value.status == 403
    async with client.ws_connect("/ws", headers={"Origin": "https://chat.example.com"}) as ws:
        await join(ws, "general")


# --- storage, sockets, migrations ---


async def test_the_sqlite_file_and_its_wal_are_private(
    client: Client, settings: Settings, app: web.Application
) -> None:
    database = Path(settings.database_url.split("///", 1)[1])
    for path in (database, Path(f"{database}-wal")):
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize("settings_env", [{"TYPING_RATE_PER_SECOND": "0.1", "TYPING_BURST": "2"}])
async def test_the_typing_limit_is_per_user_not_per_tab(client: Client) -> None:
    async with client.ws_connect("/ws") as one, client.ws_connect("/ws") as two:
        await join(one, "general")
        await join(two, "general")
        await send(one, type="typing", room="general", typing=True)
        await send(one, type="typing", room="general", typing=False)
        # A fresh tab is no fresh allowance.
        await send(two, type="typing", room="general", typing=True)
        error = await receive_type(two, "error")
        assert error["code"] == "rate_limited"


def test_the_migration_refuses_case_twins_naming_them(tmp_path: Path) -> None:
    from alembic import command

    database = tmp_path / "old.sqlite3"
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0002")
    with sqlite3.connect(database) as db:
        db.executemany(
            "INSERT INTO users (username, password_hash, is_admin, created_at) VALUES (?, ?, 0, 0)",
            [("alice", "h"), ("Alice", "h"), ("bob", "h"), ("Carol", "h"), ("carol", "h")],
        )
    engine.dispose()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "CHAT_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test secret key, long enough",
    }
    done = subprocess.run(
        [sys.executable, "-m", "chat", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'Alice' and 'alice'" in lines[0] and "'Carol' and 'carol'" in lines[0]
    assert "bob" not in lines[0]
    # Nothing was changed: the twins are still there, the schema still at 0002.
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 5
        assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0002"
