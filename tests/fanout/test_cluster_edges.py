"""Exactly-once at the edge of the kept history, on several nodes (issue 18): real server
processes on one Redis and one database, at the default HISTORY_LIMIT (50)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chat.settings import Settings
from chat.storage.store import Store
from tests.cluster import Cluster, Node, chats_until, wait_for
from tests.conftest import need
from tests.helpers import join, receive, receive_type, send
from tests.servers import PostgresServer, RedisServer

pytestmark = [pytest.mark.redis]

LIMIT = Settings().history_limit


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"


async def start(cluster: Cluster, url: str, *names: str, **env: str) -> list[Node]:
    nodes = [cluster.node(name, url, **env) for name in names]
    for node in nodes:  # one after another: on SQLite, two migrations at once would collide
        node.start()
        await node.ready()
    await cluster.wait_subscribers(len(cluster.live_processes()))
    return nodes


async def commit_unpublished(url: str, username: str, texts: list[str]) -> list[int]:
    """Commit messages as a node would, and publish nothing: what a node that dies between its
    commit and its publish leaves behind."""
    store = await Store.open(url, history_limit=LIMIT)
    try:
        user = await store.user_by_name(username)
        assert user is not None
        return [(await store.append_message("general", user, t, None))[0].seq for t in texts]
    finally:
        await store.close()


class Page:
    """What chat.js shows of one room (static/resume.js): the last seq, and the notices."""

    def __init__(self, last_seq: int) -> None:
        self.last_seq = last_seq
        self.shown: list[int] = []
        self.missed: list[int] = []  # the "N messages are no longer kept" notices

    def take(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "chat":
            if frame["seq"] <= self.last_seq:
                return
            # The promise: a live socket never sees a jump.
            assert frame["seq"] == self.last_seq + 1, (self.last_seq, frame["seq"])
            self.last_seq = frame["seq"]
            self.shown.append(frame["seq"])
        elif frame["type"] == "history":
            assert frame["complete"] is False
            fresh = [m["seq"] for m in frame["messages"] if m["seq"] > self.last_seq]
            if fresh and fresh[0] > self.last_seq + 1:
                self.missed.append(fresh[0] - self.last_seq - 1)
            self.shown += fresh
            self.last_seq = max([self.last_seq, frame["last_seq"], *fresh])


async def test_an_outage_longer_than_the_history_is_told_to_live_sockets_never_jumped(
    cluster: Cluster, sqlite_url: str, redis_server: RedisServer
) -> None:
    """Defect 2: one room receives HISTORY_LIMIT + 5 messages while Redis is down; a live
    socket on the other node ends with every seq, or with the incomplete notice for the ones
    no longer kept; never with a silent jump."""
    a, b = await start(cluster, sqlite_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        await send(wa, type="chat", room="general", text="before")
        for ws in (wa, wb):
            assert [f["seq"] for f in await chats_until(ws, 1)] == [1]
        page = Page(1)

        redis_server.stop()
        await wait_for(
            lambda: _logged(b, "redis lost (subscriber)"), 10.0, "node-b notices the outage"
        )
        total = 1 + LIMIT + 5
        for i in range(LIMIT + 5):
            await send(wa, type="chat", room="general", text=f"during {i}", client_id=f"d{i}")
        acks = [await receive_type(wa, "chat") for _ in range(LIMIT + 5)]
        assert [f["seq"] for f in acks] == list(range(2, total + 1))
        redis_server.start()
        await cluster.wait_subscribers(2)

        async with asyncio.timeout(20):
            while page.last_seq < total:
                page.take(await receive(wb, timeout=20))
        await send(wa, type="chat", room="general", text="after")
        async with asyncio.timeout(10):
            while page.last_seq < total + 1:
                page.take(await receive(wb, timeout=10))
    # Every seq shown once, in order, except those it was told are no longer kept.
    assert page.shown == sorted(set(page.shown))
    assert len(page.shown) + sum(page.missed) == total  # seq 1 was shown before
    assert page.missed, "more than HISTORY_LIMIT went by: some cannot have been kept"
    assert page.shown[-1] == total + 1


async def _logged(node: Node, line: str) -> bool:
    return line in node.log


async def test_a_resends_stored_copy_waits_for_the_seqs_before_it(
    cluster: Cluster, sqlite_url: str
) -> None:
    """Defect 3: alice's node is still waiting for seq 1 (committed elsewhere, not yet here)
    when her double submit's stored copy (seq 2) comes back: the copy takes its place after
    seq 1, and she gets seq 2 once."""
    (a,) = await start(cluster, sqlite_url, "node-a", FANOUT_GAP_SECONDS="2")
    alice = await cluster.browser(a, "alice")
    await cluster.browser(a, "bob")
    async with alice.ws(a) as wa:
        await join(wa, "general")
        assert await commit_unpublished(sqlite_url, "bob", ["from elsewhere"]) == [1]
        # The same message twice at once (a double submit), on one socket.
        for _ in range(2):
            await send(wa, type="chat", room="general", text="mine", client_id="x-1")
        got = await chats_until(wa, 2, timeout=15)
        with pytest.raises(TimeoutError):
            await receive_type(wa, "chat", timeout=0.5)
    assert [(f["seq"], f.get("client_id")) for f in got] == [(1, None), (2, "x-1")]


async def test_a_message_committed_and_never_published_reaches_every_node(
    cluster: Cluster, sqlite_url: str
) -> None:
    """Also: a node commits and dies before publishing, in a quiet room. Each node's position
    check (every POSITION_CHECK_SECONDS) finds it and delivers it, in under twice that."""
    a, b = await start(cluster, sqlite_url, "node-a", "node-b", POSITION_CHECK_SECONDS="0.5")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        assert await commit_unpublished(sqlite_url, "alice", ["orphan"]) == [1]
        for ws in (wa, wb):
            frame = await receive_type(ws, "chat", timeout=5)
            assert (frame["seq"], frame["text"]) == (1, "orphan")


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_a_double_submit_on_two_nodes_is_stored_once(
    cluster: Cluster, sqlite_url: str, database: str, request: pytest.FixtureRequest
) -> None:
    """Also: the same client_id sent at the same moment on two sockets of one user, on two
    nodes: one message, acked on both sockets with its seq, seen once by everyone."""
    url = sqlite_url if database == "sqlite" else request.getfixturevalue("pg_url")
    a, b = await start(cluster, url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as on_a, alice.ws(b) as on_b, bob.ws(b) as wb:
        for ws in (on_a, on_b, wb):
            await join(ws, "general")
        await asyncio.gather(
            *(
                send(ws, type="chat", room="general", text="once", client_id="twice-1")
                for ws in (on_a, on_b)
            )
        )
        for ws in (on_a, on_b):
            ack = await receive_type(ws, "chat", timeout=10)
            assert (ack["seq"], ack["client_id"]) == (1, "twice-1")
        assert (await receive_type(wb, "chat", timeout=10))["seq"] == 1
        await send(wb, type="chat", room="general", text="next")
        for ws in (on_a, on_b, wb):  # nothing in between: no second copy anywhere
            assert [f["text"] for f in await chats_until(ws, 2)][-1] == "next"


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own: it is stopped and started again mid-test."""
    need(
        shutil.which("initdb") is not None and shutil.which("postgres") is not None,
        "PostgreSQL (initdb, postgres) is not installed",
    )
    directory = Path(tempfile.mkdtemp(prefix="chat-pg-restart-"))
    server = PostgresServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop(fast=True)
        shutil.rmtree(directory, ignore_errors=True)


class Talker:
    """One person's socket that sends numbered messages one at a time and, like chat.js, sends
    a message again (same client_id) after `unavailable` once `retry_after` has passed."""

    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.chats: list[dict[str, Any]] = []
        self.refused = 0
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def read(self) -> None:
        while True:
            frame = await receive(self.ws, timeout=60)
            ref = frame.get("client_id") if frame["type"] == "chat" else frame.get("ref")
            if frame["type"] == "chat":
                self.chats.append(frame)
            waiting = self._acks.get(ref) if ref is not None else None
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)

    async def say(self, count: int, pause: float) -> None:
        for i in range(count):
            client_id = f"{self.name}-{i}"
            while True:
                self._acks[client_id] = asyncio.get_running_loop().create_future()
                await send(
                    self.ws, type="chat", room="general", text=client_id, client_id=client_id
                )
                answer = await asyncio.wait_for(self._acks[client_id], 30)
                if answer["type"] == "chat":
                    break
                assert answer["code"] == "unavailable", answer
                self.refused += 1
                await asyncio.sleep(answer["retry_after"])
            await asyncio.sleep(pause)


@pytest.mark.postgres
async def test_a_postgresql_restart_under_traffic_loses_and_doubles_nothing(
    cluster: Cluster, own_postgres: PostgresServer
) -> None:
    """Also: PostgreSQL is down for a few seconds while two nodes carry traffic. Senders get
    `unavailable` and send again; /readyz says 503 meanwhile; afterwards every message is
    stored once, in order, and every socket has every seq."""
    url = own_postgres.url("postgres")
    a, b = await start(cluster, url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        talkers = [Talker(wa, "alice"), Talker(wb, "bob")]
        readers = [asyncio.create_task(t.read()) for t in talkers]
        each = 30
        talking = asyncio.gather(*(t.say(each, 0.1) for t in talkers))
        try:
            await asyncio.sleep(0.8)
            own_postgres.stop(fast=True)
            async with alice.session.get(f"{a.url}/readyz") as ready:
                assert ready.status == 503
                assert (await ready.json())["checks"]["database"] != "ok"
            await asyncio.sleep(2.5)
            own_postgres.start()
            async with asyncio.timeout(90):
                await talking
            total = 2 * each
            for t in talkers:
                async with asyncio.timeout(20):
                    while not t.chats or t.chats[-1]["seq"] < total:
                        await asyncio.sleep(0.05)
        finally:
            for task in readers:
                task.cancel()
        async with alice.session.get(f"{a.url}/readyz") as ready:
            assert ready.status == 200
    assert sum(t.refused for t in talkers) > 0, "the outage refused nothing"
    for node in (a, b):  # refused with a frame, never an unhandled error (a 1006 drop)
        assert "Error handling request" not in node.log and "Unhandled" not in node.log
    for t in talkers:  # every seq, once, in order, on both nodes' sockets
        assert [f["seq"] for f in t.chats] == list(range(1, total + 1))
    assert talkers[0].chats == talkers[1].chats
    # Stored once: each text once, each person's in the order sent.
    texts = [f["text"] for f in talkers[0].chats]
    assert sorted(texts) == sorted(f"{who}-{i}" for who in ("alice", "bob") for i in range(each))
    for who in ("alice", "bob"):
        assert [x for x in texts if x.startswith(who)] == [f"{who}-{i}" for i in range(each)]
