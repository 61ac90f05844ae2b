"""A room with more people than a page lists (PRESENCE_LIST_MAX): a joiner is told how many
people there are and shown some of them, and nobody is sent a frame per join or leave, so that
a reconnect storm costs each join the same whatever the room's size."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ClientFactory
from tests.helpers import Client, chat, join, receive, receive_type, send


@pytest.fixture
def settings_env() -> dict[str, object]:
    return {"PRESENCE_LIST_MAX": 2}


async def test_presence_lists_some_and_counts_everyone(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    carol = await new_client("carol")
    async with (
        client.ws_connect("/ws") as a,
        bob.ws_connect("/ws") as b,
        carol.ws_connect("/ws") as c,
    ):
        await join(a, "general")
        await join(b, "general")
        await send(c, type="join", room="general")
        await receive_type(c, "history")
        presence = await receive_type(c, "presence")
        assert presence["count"] == 3
        assert len(presence["users"]) == 2 and "carol" in presence["users"]
        assert set(presence["users"]) < {"alice", "bob", "carol"}


async def test_joins_and_leaves_beyond_the_limit_are_not_announced(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    carol = await new_client("carol")
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        async with bob.ws_connect("/ws") as b:
            await join(b, "general")
            assert (await receive_type(a, "join"))["user"] == "bob"  # two people: announced
            async with carol.ws_connect("/ws") as c:
                await join(c, "general")  # a third: not announced
                await chat(b, "general", "after carol came")
                frame = await receive(a)
                assert frame["type"] == "chat" and frame["text"] == "after carol came"
            await chat(b, "general", "after carol went")  # not announced either
            frame = await receive(a)
            assert frame["type"] == "chat" and frame["text"] == "after carol went"
        # Back to two people, bob included: his leave is announced.
        assert (await receive_type(a, "leave"))["user"] == "bob"
        with pytest.raises(asyncio.TimeoutError):
            await a.receive(timeout=0.2)
