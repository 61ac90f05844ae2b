"""Several real server processes sharing Redis and a database, and browsers that talk to them.

Each `Node` is `python -m chat serve` in a subprocess on its own loopback port (or, with
`--workers`, several processes on one port). A `Browser` is an aiohttp session with its own cookie
jar: cookies on 127.0.0.1 are sent to every port, and the nodes share SECRET_KEY, so one login
is good on every node, as behind a load balancer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, cast

import aiohttp
import pytest
from redis.asyncio import Redis

from tests.helpers import Client, receive_type, register
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0

# Short leases and waits, so failures show within a test's patience.
FAST_ENV = {
    "SECRET_KEY": "cluster test secret key, shared by every node",
    "PASSWORD_TIME_COST": "1",
    "PASSWORD_MEMORY_KIB": "8192",
    "CHAT_RATE_PER_SECOND": "1000",
    "CHAT_BURST": "1000",
    "PRESENCE_TTL_SECONDS": "2",
    "PRESENCE_HEARTBEAT_SECONDS": "0.5",
    "FANOUT_GAP_SECONDS": "0.2",
    "REDIS_BACKOFF_MAX_SECONDS": "0.5",
    "SHUTDOWN_TIMEOUT": "2",
    "LOG_LEVEL": "INFO",
}


class Node:
    def __init__(self, name: str, env: dict[str, str], tmp: Path, args: tuple[str, ...]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"{name}.log"
        self.args = args
        self.env = {
            **os.environ,
            **env,
            "PYTHONPATH": str(ROOT),
            "NODE_ID": name,
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.port),
            "CHAT_VAR_DIR": str(tmp / f"var-{name}"),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chat", "serve", *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        """Serving pages (migrations done, Redis tasks started)."""
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log}")
                try:
                    async with http.get(f"{self.url}/login") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"{self.name} not ready within {READY_TIMEOUT} s:\n{self.log}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if self.proc is None else self.proc.returncode


class Cluster:
    """Nodes sharing one Redis, or several listed comma-separated (under a key prefix of this
    test's own), and one database."""

    def __init__(self, tmp: Path, redis_url: str, prefix: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.prefix = prefix
        self.nodes: list[Node] = []
        self.browsers: list[Browser] = []

    def node(self, name: str, database_url: str, *args: str, **env: str) -> Node:
        merged = {
            **FAST_ENV,
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.prefix,
            **env,
        }
        node = Node(name, merged, self.tmp, args)
        self.nodes.append(node)
        return node

    async def start(self, database_url: str, *names: str) -> list[Node]:
        """Start nodes and wait until each serves pages and is subscribed to Redis.

        On SQLite they start one after another (two processes migrating one file at once would
        collide; PostgreSQL has its advisory lock and starts them together)."""
        nodes = [self.node(name, database_url) for name in names]
        if database_url.startswith("sqlite"):
            for node in nodes:
                node.start()
                await node.ready()
        else:
            for node in nodes:
                node.start()
            await asyncio.gather(*(node.ready() for node in nodes))
        await self.wait_subscribers(len(self.live_processes()))
        return nodes

    def live_processes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive]

    async def subscribers(self) -> int:
        # Every node subscribes to the control channel on the first server (and each other's).
        redis = Redis.from_url(self.redis_url.split(",")[0])
        try:
            counts = await redis.pubsub_numsub(f"{self.prefix}:control")
        finally:
            await redis.aclose()
        return int(counts[0][1])

    async def wait_subscribers(self, count: int, timeout: float = 15.0) -> None:
        await wait_for(lambda: self._has_subscribers(count), timeout, f"{count} subscribers")

    async def _has_subscribers(self, count: int) -> bool:
        return await self.subscribers() == count

    async def browser(self, node: Node, username: str | None = None) -> Browser:
        browser = Browser(node)
        self.browsers.append(browser)
        if username is not None:
            await register(browser.client, username)
        return browser

    async def close(self) -> None:
        for browser in self.browsers:
            await browser.session.close()
        for node in self.nodes:
            node.stop()


class Browser:
    """One person's cookie jar, pointed at one node (it may open sockets on others)."""

    def __init__(self, node: Node) -> None:
        self.session = aiohttp.ClientSession(
            base_url=node.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
        )

    @property
    def client(self) -> Client:
        # The helpers only use get/post/ws_connect, which a session with a base_url has too.
        return cast(Client, self.session)

    def ws(self, node: Node) -> Any:
        return self.session.ws_connect(f"{node.url}/ws")

    async def page(self, node: Node, path: str) -> str:
        async with self.session.get(f"{node.url}{path}") as response:
            assert response.status == 200, response.status
            return await response.text()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    """Poll until `check` holds; return how long it took. Fails the test after `timeout`."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.1)


async def chats_until(
    ws: aiohttp.ClientWebSocketResponse, last_seq: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Every chat frame up to and including seq `last_seq`, in arrival order."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while not frames or frames[-1]["seq"] < last_seq:
            frames.append(await receive_type(ws, "chat", timeout))
    return frames


async def online(browser: Browser, node: Node) -> dict[str, list[str]]:
    """Who the admin page lists (its JSON feed): username -> the nodes their sockets are on."""
    async with browser.session.get(f"{node.url}/admin/online.json") as response:
        assert response.status == 200, response.status
        body = await response.json()
    return {u["username"]: u["nodes"] for u in body["online"]}
