"""Chat messages (chat.conversation): delivered in order with seq rising by one, stored once
whatever the resends, acked in order, refused clearly (rate, a failing database), read markers."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chat.keys import STORE
from tests.conftest import ClientFactory
from tests.helpers import (
    Client,
    chat,
    fail_batches_holding,
    join,
    receive_type,
    send,
)


async def test_two_clients_see_each_others_messages_in_order_and_a_third_room_sees_none(
    client: Client, bob: Client, new_client: ClientFactory, app: web.Application
) -> None:
    carol = await new_client("carol")
    await app[STORE].create_room("elsewhere", creator_id=None)
    async with (
        client.ws_connect("/ws") as a,
        bob.ws_connect("/ws") as b,
        carol.ws_connect("/ws") as c,
    ):
        await join(a, "general")
        await join(b, "general")
        await join(c, "elsewhere")
        expected = []
        for i in range(5):
            await send(a, type="chat", room="general", text=f"from alice {i}")
            await send(b, type="chat", room="general", text=f"from bob {i}")
            expected += [f"from alice {i}", f"from bob {i}"]
        for ws in (a, b):
            frames = await chats(ws, 10)
            # Both see all ten, in one order, with seq rising by exactly one.
            assert [f["seq"] for f in frames] == list(range(1, 11))
            assert sorted(f["text"] for f in frames) == sorted(expected)
            texts_of = {u: [f["text"] for f in frames if f["user"] == u] for u in ("alice", "bob")}
            assert texts_of["alice"] == [f"from alice {i}" for i in range(5)]
            assert texts_of["bob"] == [f"from bob {i}" for i in range(5)]
        # carol, in another room, got nothing at all.
        with pytest.raises(asyncio.TimeoutError):
            await c.receive(timeout=0.3)


async def chats(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` chat frames, skipping join/presence/typing."""
    return [await receive_type(ws, "chat") for _ in range(count)]


async def test_seq_rises_by_exactly_one_and_history_is_trimmed(
    client: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        seqs = [(await chat(ws, "general", f"m{i}"))["seq"] for i in range(51)]
    assert seqs == list(range(1, 52))
    messages, at = await app[STORE].history("general", None)
    complete = at.complete
    last_seq = at.seq
    assert [m.text for m in messages] == [f"m{i}" for i in range(1, 51)]  # m0 trimmed
    assert len(messages) == 50 and last_seq == 51 and not complete


async def test_resend_with_same_client_id_is_stored_once_and_acked_again(
    client: Client, bob: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        first = await chat(a, "general", "once", client_id="abc-123")
        again = await chat(a, "general", "once", client_id="abc-123")
        assert first == again
        after = await chat(a, "general", "next")
        assert after["seq"] == first["seq"] + 1
        seen = [await receive_type(b, "chat"), await receive_type(b, "chat")]
    assert [f["text"] for f in seen] == ["once", "next"]  # bob saw it once
    messages, _ = await app[STORE].history("general", None)
    assert [m.text for m in messages] == ["once", "next"]


async def test_messages_sent_back_to_back_are_acked_in_order_even_with_a_leave_right_after(
    client: Client,
) -> None:
    # A chat message is handed to the group commit and the socket reads on; a frame that is
    # not a chat message waits until the messages before it are stored and published.
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        for i in range(5):
            await send(ws, type="chat", room="general", text=f"m{i}", client_id=f"c{i}")
        await send(ws, type="leave", room="general")
        acks = [await receive_type(ws, "chat") for _ in range(5)]
        assert [(a["seq"], a["client_id"]) for a in acks] == [(i + 1, f"c{i}") for i in range(5)]
        refused = await chat(ws, "general", "after leaving")
        assert refused["type"] == "error" and refused["code"] == "not_joined"


async def test_a_message_the_database_fails_to_store_gets_unavailable_and_the_socket_lives_on(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_batches_holding(monkeypatch, "doomed", sqlite3.OperationalError("disk I/O error"))
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        error = await chat(ws, "general", "doomed", client_id="d-1")
        assert error == {
            "type": "error",
            "code": "unavailable",
            "message": "The message could not be stored.",
            "ref": "d-1",
            "retry_after": 2.0,
        }
        ack = await chat(ws, "general", "fine")
        assert ack["type"] == "chat" and ack["seq"] == 1


async def test_read_marker_is_stored_and_others_get_a_receipt(
    client: Client, bob: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        sent = await chat(a, "general", "read me")
        await send(b, type="read", room="general", seq=sent["seq"])
        receipt = await receive_type(a, "receipt")
    assert receipt == {"type": "receipt", "room": "general", "user": "bob", "seq": sent["seq"]}
    assert (await app[STORE].read_markers("general"))["bob"] == sent["seq"]


@pytest.mark.parametrize("settings_env", [{"CHAT_RATE_PER_SECOND": "1", "CHAT_BURST": "3"}])
async def test_chat_over_the_rate_is_refused_and_not_stored(
    client: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        results = [await chat(ws, "general", f"burst {i}") for i in range(4)]
    assert [r["type"] for r in results] == ["chat", "chat", "chat", "error"]
    assert results[3]["code"] == "rate_limited" and results[3]["retry_after"] > 0
    messages, _ = await app[STORE].history("general", None)
    assert len(messages) == 3
