"""Notifications on two nodes sharing Redis and a database: one notice per message and
recipient, decided by the node that stored it, reaching the recipient's tabs on every node; a
level changed on one node counts on the other; @here reaches who is in the room on any node
(real redis-server, real server processes)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster import Browser, Cluster, Node
from tests.helpers import join, post_form, receive, receive_type, send

pytestmark = [pytest.mark.redis]


async def notices_on(node: Node) -> tuple[int, int]:
    """How many notices this node decided, and for how many people (its /metrics)."""
    async with aiohttp.ClientSession() as session, session.get(f"{node.url}/metrics") as r:
        body = await r.text()

    def value(name: str) -> int:
        found = re.search(rf"^{name}_total (\S+)$", body, re.MULTILINE)
        assert found, name
        return int(float(found.group(1)))

    return value("chat_notices"), value("chat_notice_recipients")


async def notify_frames(ws: aiohttp.ClientWebSocketResponse, last_seq: int) -> list[Any]:
    """(seq, reason) of every notify frame up to the one for `last_seq`."""
    got: list[Any] = []
    async with asyncio.timeout(15):
        while not got or got[-1][0] < last_seq:
            frame = await receive(ws, 15)
            if frame["type"] == "notify":
                got.append((frame["seq"], frame["reason"]))
    return got


async def say(browser: Browser, ws: aiohttp.ClientWebSocketResponse, text: str) -> int:
    await send(ws, type="chat", room="general", text=text, client_id=text)
    while True:
        frame = await receive(ws, 15)
        if frame["type"] == "chat" and frame.get("client_id") == text:
            return int(frame["seq"])


async def test_one_notice_per_message_and_recipient_on_two_nodes(
    cluster: Cluster, tmp_path: Path
) -> None:
    a, b = await cluster.start(f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}", "a", "b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    carol = await cluster.browser(b, "carol")
    async with (
        alice.ws(a) as wa,
        bob.ws(a) as bob_on_a,
        bob.ws(b) as bob_on_b,
        carol.ws(b) as wc,
        carol.ws(a) as carol_on_a,
    ):
        await join(wa, "general")
        # Node a finds #general quiet (nobody at "every message") and remembers it.
        await say(alice, wa, "good morning")
        # carol asks for every message, on node b: node a must hear of it.
        response = await post_form(
            carol.client, "/rooms/general/notifications", {"level": "all"}, page="/rooms/general"
        )
        assert response.status == 303
        # Her tab on the other node shows the new level too.
        assert (await receive_type(carol_on_a, "level"))["level"] == "all"
        await asyncio.sleep(1.0)  # the signal crosses Redis in milliseconds
        # No "@" in it: node a tells carol only if it forgot that #general was quiet.
        plain = await say(alice, wa, "nothing special")
        first = await say(alice, wa, "@bob have a look")
        second = await say(alice, wa, "@bob and this")
        # bob's two tabs, one per node, each get each notice exactly once.
        assert await notify_frames(bob_on_a, second) == [(first, "mention"), (second, "mention")]
        assert await notify_frames(bob_on_b, second) == [(first, "mention"), (second, "mention")]
        assert await notify_frames(wc, second) == [
            (plain, "message"),
            (first, "message"),
            (second, "message"),
        ]
        # @here from alice (an admin) on node a reaches carol, in #general on node b, and not
        # bob, whose tabs are not in the room.
        await join(wc, "general")
        here = await say(alice, wa, "@here quick sync")
        last = await say(alice, wa, "@bob last one")
        assert await notify_frames(wc, last) == [(here, "here"), (last, "message")]
        assert await notify_frames(bob_on_b, last) == [(last, "mention")]
    # Decided once, by the node that stored the messages: 5 notices, to 1 + 2 + 2 + 1 + 2 people.
    assert await notices_on(a) == (5, 8)
    assert await notices_on(b) == (0, 0)
