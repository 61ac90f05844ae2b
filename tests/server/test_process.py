"""`python -m chat` as an operator runs it: the CLI, serving, restarting, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from chat.storage.store import Store
from chat.web.passwords import PasswordHasher
from tests.helpers import PASSWORD

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def chat_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "DATABASE_URL"))}
    env.update(
        CHAT_VAR_DIR=str(var_dir),
        CHAT_HOST="127.0.0.1",
        CHAT_PORT=str(port),
        PASSWORD_TIME_COST="1",
        PASSWORD_MEMORY_KIB="8192",
        PYTHONUNBUFFERED="1",
    )
    env.pop("SECRET_KEY", None)  # the generated one in var/ must carry sessions across restarts
    return env


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chat", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class Server:
    """A real server process; started, waited for, and always stopped."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['CHAT_PORT']}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chat"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                with socket.create_connection(("127.0.0.1", int(self.env["CHAT_PORT"])), 0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(chat_env(tmp_path / "var", free_port()), tmp_path / "server.log")
    try:
        yield srv
    finally:
        srv.kill()


async def log_in(session: aiohttp.ClientSession, base: str, username: str) -> None:
    async with session.get(f"{base}/login") as page:
        match = CSRF_RE.search(await page.text())
        assert match
    async with session.post(
        f"{base}/login",
        data={"username": username, "password": PASSWORD, "csrf_token": match.group(1)},
        allow_redirects=False,
    ) as response:
        assert response.status == 302, await response.text()


def test_create_user_makes_and_promotes_admins(tmp_path: Path) -> None:
    env = chat_env(tmp_path / "var", free_port())
    made = run_cli(env, "create-user", "root", "--admin", "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    assert "created admin 'root'" in made.stdout
    plain = run_cli(env, "create-user", "ann", "--password-stdin", stdin=PASSWORD)
    assert "created user 'ann'" in plain.stdout
    again = run_cli(env, "create-user", "ann", "--password-stdin", stdin=PASSWORD)
    assert again.returncode == 1 and "pass --admin to promote" in again.stderr
    promoted = run_cli(env, "create-user", "ann", "--admin")
    assert promoted.returncode == 0 and "'ann' is now an admin" in promoted.stdout
    weak = run_cli(env, "create-user", "bo", "--password-stdin", stdin="short")
    assert weak.returncode == 1 and "8 to 1024" in weak.stderr


def test_bad_setting_stops_startup_with_one_line(tmp_path: Path) -> None:
    env = chat_env(tmp_path / "var", free_port())
    env["HISTORY_LIMIT"] = "lots"
    result = run_cli(env)
    assert result.returncode == 2
    expected = "chat: bad setting: HISTORY_LIMIT: expected an integer, got 'lots'"
    assert result.stderr.strip() == expected


async def test_serve_restart_and_graceful_shutdown(server: Server) -> None:
    made = run_cli(server.env, "create-user", "ann", "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    server.start()
    assert f"serving on {server.url}" in server.log_path.read_text()
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        await log_in(session, server.url, "ann")
        async with session.ws_connect(f"{server.url}/ws", origin=server.url) as ws:
            await ws.send_json({"type": "join", "room": "general"})
            await ws.send_json(
                {"type": "chat", "room": "general", "text": "kept", "client_id": "k"}
            )
            async with asyncio.timeout(10):
                async for msg in ws:
                    if '"client_id":"k"' in msg.data:
                        break
            # SIGTERM: the socket is closed with 1001 Going Away and the process exits promptly.
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            msg = await ws.receive(timeout=10)
            assert msg.type is aiohttp.WSMsgType.CLOSE
            assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
        assert await asyncio.to_thread(server.proc.wait, 15) == 0  # type: ignore[union-attr]
        assert time.monotonic() - started < 10

        # Same var/, same database: the message is still there and the cookie still works.
        server.start()
        async with session.get(f"{server.url}/rooms/general", allow_redirects=False) as page:
            assert page.status == 200
            body = await page.text()
        assert ">kept</" in body  # rendered on the server, before any JavaScript
        assert server.stop(signal.SIGINT) == 0


def test_a_taken_port_is_one_line_naming_chat_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(chat_env(tmp_path / "var", port), "serve")
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "Traceback" not in out
    assert "serving on" not in out  # said only once the socket is bound
    assert result.stderr.strip().splitlines() == [
        f"chat: port {port} on 127.0.0.1 is already in use; stop what uses it or pick another "
        f"port with CHAT_PORT (e.g. CHAT_PORT={port + 1} make run)"
    ]


async def test_reset_password_from_the_shell(tmp_path: Path) -> None:
    env = chat_env(tmp_path / "var", free_port())
    run_cli(env, "create-user", "ann", "--password-stdin", stdin=PASSWORD)
    done = run_cli(env, "reset-password", "ann")
    assert done.returncode == 0, done.stderr
    match = re.search(r"temporary password for 'ann': (\S+)\n", done.stdout)
    assert match and "must change it at the next login" in done.stdout
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'var' / 'chat.sqlite3'}", history_limit=50
    )
    try:
        ann = await store.user_by_name("ann")
        assert ann is not None and ann.must_change_password and ann.session_version == 1
        hasher = PasswordHasher(time_cost=1, memory_kib=8192)
        assert await hasher.verify(ann.password_hash, match.group(1))
        assert not await hasher.verify(ann.password_hash, PASSWORD)
    finally:
        await store.close()
    missing = run_cli(env, "reset-password", "nobody")
    assert (
        missing.returncode == 1
        and missing.stderr.strip() == "chat: there is no user named 'nobody'"
    )
