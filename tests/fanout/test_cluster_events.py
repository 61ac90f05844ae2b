"""Room events across nodes: an edit and a reaction made on one node while Redis is down reach
the other node's sockets exactly once when Redis is back (real redis-server, real PostgreSQL,
real server processes)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.cluster import Cluster, wait_for
from tests.helpers import join, receive, receive_type, send
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


async def test_changes_made_while_redis_is_down_reach_the_other_node_once(
    cluster: Cluster, pg_url: str, redis_server: RedisServer
) -> None:
    a, b = await cluster.start(pg_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        await send(wa, type="chat", room="general", text="before", client_id="c1")
        said = await receive_type(wa, "chat")
        assert (await receive_type(wb, "chat"))["seq"] == said["seq"] == 1

        redis_server.stop()

        async def both_noticed() -> bool:
            return all("redis lost (subscriber)" in node.log for node in (a, b))

        await wait_for(both_noticed, 10.0, "both nodes log the loss of Redis")
        await send(wa, type="edit", room="general", seq=1, text="before, edited")
        assert (await receive_type(wa, "update"))["seq"] == 2
        await send(wa, type="react", room="general", seq=1, emoji="🎉", on=True)
        assert (await receive_type(wa, "update"))["seq"] == 3
        redis_server.start()
        await cluster.wait_subscribers(2)
        await send(wa, type="chat", room="general", text="after", client_id="c2")

        # bob's socket: the two changes (as updates, or as one history when its node read
        # them from the database), each seq at most once and in order, then "after".
        state: dict[int, dict[str, Any]] = {}
        given: list[int] = []
        async with asyncio.timeout(15):
            while True:
                frame = await receive(wb)
                if frame["type"] == "update":
                    given.append(frame["seq"])
                    state[frame["message"]["seq"]] = frame["message"]
                elif frame["type"] == "history":
                    given.append(frame["last_seq"])
                    state.update({m["seq"]: m for m in frame["messages"]})
                elif frame["type"] == "chat":
                    given.append(frame["seq"])
                    if frame["text"] == "after":
                        break
        assert given == sorted(set(given)) and given[-1] == 4
        assert state[1]["text"] == "before, edited"
        assert state[1]["reactions"] == [{"emoji": "🎉", "users": ["alice"]}]
        # Nothing late, nothing twice.
        with pytest.raises(TimeoutError):
            await receive_type(wb, "update", timeout=1.0)
        with pytest.raises(TimeoutError):
            await receive_type(wa, "update", timeout=0.5)
        # What bob's socket ended up with is what a fresh join on either node shows.
        for ws in (wa, wb):
            fresh = {m["seq"]: m for m in (await join(ws, "general"))["messages"]}
            assert set(fresh) == {1, 4}
            shown = {k: v for k, v in state[1].items() if k != "client_id"}
            assert shown == {k: v for k, v in fresh[1].items() if k != "client_id"}
