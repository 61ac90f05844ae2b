"""Rooms as people see them: join and leave announcements (per person, not per tab), presence,
typing, and a leave that stops delivery."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import (
    Client,
    chat,
    join,
    receive,
    receive_type,
    send,
)


async def test_join_leave_presence_and_typing(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        async with bob.ws_connect("/ws") as b:
            await send(b, type="join", room="general")
            await receive_type(b, "history")
            presence = await receive_type(b, "presence")
            assert presence["users"] == ["alice", "bob"]
            assert await receive_type(a, "join") == {
                "type": "join",
                "room": "general",
                "user": "bob",
            }
            await send(b, type="typing", room="general", typing=True)
            typing = await receive_type(a, "typing")
            assert typing == {"type": "typing", "room": "general", "user": "bob", "typing": True}
            await send(b, type="typing", room="general", typing=False)
            assert (await receive_type(a, "typing"))["typing"] is False
        leave = await receive_type(a, "leave")
        assert leave == {"type": "leave", "room": "general", "user": "bob"}


async def test_second_tab_does_not_announce_join_or_leave(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b1:
        await join(a, "general")
        await join(b1, "general")
        assert (await receive_type(a, "join"))["user"] == "bob"
        async with bob.ws_connect("/ws") as b2:
            await join(b2, "general")
        # bob's second tab came and went; bob is still in the room, so no join/leave for it.
        await chat(b1, "general", "marker")
        frame = await receive(a)
        assert frame["type"] == "chat" and frame["text"] == "marker"


async def test_explicit_leave_stops_delivery(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        await send(b, type="leave", room="general")
        assert (await receive_type(a, "leave"))["user"] == "bob"
        await chat(a, "general", "after bob left")
        with pytest.raises(asyncio.TimeoutError):
            await b.receive(timeout=0.3)
