"""Real servers for the tests: redis-server and PostgreSQL, started once per session.

Both listen on a free loopback port and keep their files in a temporary directory that is removed
afterwards. Redis can be stopped and started again on the same port (the outage test). PostgreSQL
runs with fsync off (tests do not survive power cuts) and hands each test a fresh database.

tests/conftest.py loads this module as a plugin, so every test can ask for these fixtures.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import need

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {START_TIMEOUT} s")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class RedisServer:
    """A throwaway redis-server: no persistence, loopback only, restartable on its port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        log = self.directory / "redis.log"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait_for_port(self.port, self.proc, log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class PostgresServer:
    """initdb + postgres in a temporary directory; trust auth on loopback, fsync off."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.dsn = self.url("postgres")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # PostgreSQL refuses to run as root; CI containers often are root.
        self.user = _unprivileged_user() if os.geteuid() == 0 else None

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        log = self.directory / "postgres.log"
        if not (self.data / "PG_VERSION").exists():  # else: started again after a stop
            self._initdb(log)
        started_at = log.stat().st_size
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                "postgres", "-D", str(self.data), "-k", str(self.directory),
                "-p", str(self.port), "-h", "127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
            ],
            stdout=self._log, stderr=subprocess.STDOUT, user=self.user,
        )  # fmt: skip
        _wait_for_port(self.port, self.proc, log)
        # The port opens a moment before start-up ends; connections in between are refused.
        deadline = time.monotonic() + START_TIMEOUT
        while b"ready to accept connections" not in log.read_bytes()[started_at:]:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"postgres did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)

    def _initdb(self, log: Path) -> None:
        with log.open("wb") as out:
            subprocess.run(
                ["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                 "--locale=C", "--no-sync"],
                check=True, stdout=out, stderr=subprocess.STDOUT, user=self.user,
            )  # fmt: skip

    def stop(self, *, fast: bool = False) -> None:
        """Fast: SIGINT, PostgreSQL's fast shutdown (sessions are cut off, as in a crash or
        a failover), rather than waiting for every client to disconnect."""
        if fast and self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)
        _stop(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, and there is no postgres or nobody user to run as")


def _tempdir(prefix: str) -> Path:
    # Not under pytest's tmp_path: its parents are private to root, and postgres runs as postgres.
    return Path(tempfile.mkdtemp(prefix=prefix))


def running_redis(prefix: str) -> Iterator[RedisServer]:
    """A throwaway redis-server in its own folder, for as long as the generator is open."""
    directory = _tempdir(prefix)
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    yield from running_redis("chat-redis-")


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis, running (a test that stopped it and failed may have left it down)."""
    if not redis_server.running:
        redis_server.start()
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    """Keys and channels of this test only: leases of earlier tests' nodes are not ours."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    need(
        shutil.which("initdb") is not None and shutil.which("postgres") is not None,
        "PostgreSQL (initdb, postgres) is not installed",
    )
    directory = _tempdir("chat-pg-")
    server = PostgresServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _admin_sql(dsn: str, sql: str) -> None:
    """Run one statement on the maintenance database, from a thread of its own: fixtures that
    need a database may be set up from inside a running event loop or outside any."""

    async def run() -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction.
        engine = create_async_engine(dsn, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=60)


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _admin_sql(postgres_server.dsn, f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        _admin_sql(postgres_server.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
