"""Several nodes on one Redis and one database: real server processes, real redis-server, real
PostgreSQL (or one SQLite file), clients speaking HTTP and WebSocket to them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import WSCloseCode, WSMsgType

from chat.fanout.broker import CloseSockets
from chat.fanout.redis_broker import RedisBroker
from chat.live.hub import Hub
from chat.storage.store import Store
from tests.cluster import ROOT, Cluster, chats_until, online, wait_for
from tests.conftest import make_settings
from tests.helpers import join, post_form, receive_type, send
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"


@pytest.mark.postgres
@pytest.mark.parametrize("cluster", [1, 2], indirect=True, ids=["one-redis", "two-redis"])
async def test_messages_reach_every_node_once_and_in_seq_order(
    cluster: Cluster, pg_url: str
) -> None:
    a, b, c = await cluster.start(pg_url, "node-a", "node-b", "node-c")
    people = [
        await cluster.browser(a, "alice"),
        await cluster.browser(b, "bob"),
        await cluster.browser(c, "carol"),
    ]
    nodes = [a, b, c]
    async with (
        people[0].ws(a) as wa,
        people[1].ws(b) as wb,
        people[2].ws(c) as wc,
    ):
        sockets = [wa, wb, wc]
        for ws in sockets:
            await join(ws, "general")
        # All three write at the same moment, without waiting for acks, from three nodes.
        each = 10
        await asyncio.gather(
            *(
                send(ws, type="chat", room="general", text=f"{node.name} {i}")
                for i in range(each)
                for ws, node in zip(sockets, nodes, strict=True)
            )
        )
        total = each * len(sockets)
        seen = [await chats_until(ws, total) for ws in sockets]
    for frames in seen:
        assert [f["seq"] for f in frames] == list(range(1, total + 1))
        for node in nodes:
            mine = [f["text"] for f in frames if f["text"].startswith(node.name)]
            assert mine == [f"{node.name} {i}" for i in range(each)]
    # Every node saw one and the same history.
    assert seen[0] == seen[1] == seen[2]


@pytest.mark.parametrize("cluster", [1, 2], indirect=True, ids=["one-redis", "two-redis"])
async def test_presence_is_the_union_of_nodes_and_a_killed_node_expires(
    cluster: Cluster, sqlite_url: str
) -> None:
    a, b = await cluster.start(sqlite_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")  # the first account: the admin
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa:
        await join(wa, "general")
        bob_ws = await bob.ws(b).__aenter__()
        await send(bob_ws, type="join", room="general")
        await receive_type(bob_ws, "history")
        presence = await receive_type(bob_ws, "presence")
        # bob, on node-b, sees alice, who is on node-a.
        assert set(presence["users"]) == {"alice", "bob"} and presence["count"] == 2
        # alice hears bob arrive, though he joined on another node.
        joined = await receive_type(wa, "join")
        assert joined["user"] == "bob"
        assert await online(alice, a) == {"alice": ["node-a"], "bob": ["node-b"]}
        assert 'data-user="bob"' in await alice.page(a, "/admin")
        room_page = await alice.page(a, "/rooms/general")
        assert 'data-user="bob"' in room_page

        b.kill()

        async def bob_gone() -> bool:
            return "bob" not in await online(alice, a)

        await wait_for(bob_gone, 15.0, "bob, whose node was SIGKILLed, leaves the admin page")
        assert 'data-user="bob"' not in await alice.page(a, "/rooms/general")
        # A dead node says nothing; alice's node tells her once bob's lease has expired.
        left = await receive_type(wa, "leave", timeout=15.0)
        assert left == {"type": "leave", "room": "general", "user": "bob"}
        await bob_ws.close()


@pytest.mark.postgres
@pytest.mark.parametrize("cluster", [1, 2], indirect=True, ids=["one-redis", "two-redis"])
async def test_a_redis_restart_loses_nothing_and_doubles_nothing(
    cluster: Cluster, pg_url: str, redis_server: RedisServer
) -> None:
    a, b = await cluster.start(pg_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    pids = [a.proc.pid if a.proc else 0, b.proc.pid if b.proc else 0]
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        await send(wa, type="chat", room="general", text="before")
        for ws in (wa, wb):
            assert [f["text"] for f in await chats_until(ws, 1)] == ["before"]

        redis_server.stop()

        async def both_noticed() -> bool:
            # "(subscriber)", or with several servers "(subscriber host:port)"
            return all("redis lost (subscriber" in node.log for node in (a, b))

        await wait_for(both_noticed, 10.0, "both nodes log the loss of Redis")
        async with alice.session.get(f"{a.url}/readyz") as ready:  # fan-out is down
            assert ready.status == 503 and (await ready.json())["checks"]["database"] == "ok"
        # Both keep chatting; each message is committed and acked by its own node.
        for i in range(4):
            await send(wa, type="chat", room="general", text=f"alice during {i}")
            await receive_type(wa, "chat")
        for i in range(3):
            await send(wb, type="chat", room="general", text=f"bob during {i}")
        redis_server.start()
        await cluster.wait_subscribers(2)
        async with alice.session.get(f"{a.url}/readyz") as ready:
            assert ready.status == 200
        await send(wa, type="chat", room="general", text="after")

        got_a = await chats_until(wa, 9)
        got_b = await chats_until(wb, 9)
        for ws in (wa, wb):  # and nothing after: no late duplicate
            with pytest.raises(TimeoutError):
                await receive_type(ws, "chat", timeout=0.5)
    # alice already read seq 2..5 (her own acks) above; the rest arrive exactly once, in order.
    assert [f["seq"] for f in got_a] == list(range(6, 10))
    assert [f["seq"] for f in got_b] == list(range(2, 10))
    texts = [f["text"] for f in got_b]
    assert texts[:4] == [f"alice during {i}" for i in range(4)]
    # bob's last sends and alice's "after" may commit in either order; bob's keep theirs.
    assert [t for t in texts[4:] if t != "after"] == [f"bob during {i}" for i in range(3)]
    assert "after" in texts[4:] and [f["text"] for f in got_a] == texts[4:]
    for node, pid in zip((a, b), pids, strict=True):
        assert node.alive and node.proc is not None and node.proc.pid == pid
        assert "redis lost (subscriber" in node.log and "redis back (subscriber" in node.log


@pytest.mark.postgres
async def test_a_client_whose_node_dies_resumes_on_another_without_loss(
    cluster: Cluster, pg_url: str
) -> None:
    a, b = await cluster.start(pg_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa:
        await join(wa, "general")
        async with bob.ws(b) as wb:
            await join(wb, "general")
            for i in range(3):
                await send(wa, type="chat", room="general", text=f"m{i}")
            last_seen = (await chats_until(wb, 3))[-1]["seq"]
            b.kill()
            msg = await wb.receive(timeout=10)
            assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR)
        for i in range(3, 6):
            await send(wa, type="chat", room="general", text=f"m{i}")
        await chats_until(wa, 6)
        # The browser reconnects to a node that is alive, with the last seq it saw.
        async with bob.ws(a) as moved:
            history = await join(moved, "general", since=last_seen)
            assert [m["seq"] for m in history["messages"]] == [4, 5, 6]
            assert history["complete"] is True
            await send(wa, type="chat", room="general", text="welcome back")
            assert [f["seq"] for f in await chats_until(moved, 7)] == [7]


async def test_logout_closes_that_sessions_sockets_on_every_node(
    cluster: Cluster, sqlite_url: str
) -> None:
    a, b = await cluster.start(sqlite_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as on_a, alice.ws(b) as on_b, bob.ws(b) as bobs:
        for ws in (on_a, on_b, bobs):
            await join(ws, "general")
        response = await post_form(alice.client, "/logout", {}, page="/")
        assert response.status == 302
        for ws in (on_a, on_b):
            msg = await ws.receive(timeout=10)
            while msg.type is WSMsgType.TEXT:  # frames queued before the close
                msg = await ws.receive(timeout=10)
            assert msg.type is WSMsgType.CLOSE
            assert msg.data == WSCloseCode.POLICY_VIOLATION
        # Only that session: bob, on the same node, chats on.
        await send(bobs, type="chat", room="general", text="still here")
        assert [f["text"] for f in await chats_until(bobs, 1)] == ["still here"]


async def test_a_kick_closes_every_socket_of_the_user_on_every_node(
    cluster: Cluster, sqlite_url: str, tmp_path: Path
) -> None:
    a, b = await cluster.start(sqlite_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with bob.ws(a) as bob_a, bob.ws(b) as bob_b, alice.ws(b) as alices:
        for ws in (bob_a, bob_b, alices):
            await join(ws, "general")
        # What an admin's kick does on the node that handles it (issue 6 adds the page for it):
        # one control event for every socket of the user, through Redis to every node.
        settings = make_settings(
            tmp_path,
            REDIS_URL=cluster.redis_url,
            REDIS_PREFIX=cluster.prefix,
            DATABASE_URL=sqlite_url,
            NODE_ID="admin-tool",
        )
        store = await Store.open(settings.database_url, history_limit=settings.history_limit)
        broker = RedisBroker(Hub(), store, settings)
        try:
            await broker.start()
            user = await store.user_by_name("bob")
            assert user is not None
            await broker.control(CloseSockets("kicked by an admin", user_id=user.id))
            for ws in (bob_a, bob_b):
                msg = await ws.receive(timeout=10)
                while msg.type is WSMsgType.TEXT:
                    msg = await ws.receive(timeout=10)
                assert msg.type is WSMsgType.CLOSE
                assert msg.data == WSCloseCode.POLICY_VIOLATION
                assert msg.extra == "kicked by an admin"
        finally:
            await broker.stop()
            await store.close()
        await send(alices, type="chat", room="general", text="alice stays")
        assert [f["text"] for f in await chats_until(alices, 1)] == ["alice stays"]


def test_workers_without_redis_refuse_with_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CHAT_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "chat", "serve", "--workers", "2"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers 2 needs REDIS_URL" in lines[0]


async def test_workers_share_one_port_and_stop_together(cluster: Cluster, sqlite_url: str) -> None:
    node = cluster.node("host", sqlite_url, "--workers", "2")
    node.start()
    await node.ready()
    # Two processes, each with its one subscriber.
    await cluster.wait_subscribers(2)
    people = [await cluster.browser(node, name) for name in ("alice", "bob", "carol", "dave")]
    sockets = [await p.ws(node).__aenter__() for p in people]
    try:
        for ws in sockets:
            await join(ws, "general")
        for i, ws in enumerate(sockets):
            await send(ws, type="chat", room="general", text=f"from {i}")
        for ws in sockets:
            assert [f["seq"] for f in await chats_until(ws, 4)] == [1, 2, 3, 4]
    finally:
        for ws in sockets:
            await ws.close()
    assert node.stop() == 0
    await cluster.wait_subscribers(0)  # every worker is gone, not just the parent
    assert "worker 1 started" in node.log and "worker 2 started" in node.log
