"""Room events over the socket: edits, deletions by their authors, reactions and replies reach
everyone as `update` frames with the room's next seq, a client that was away gets the current
state of what changed, and every refusal has its code."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import (
    Client,
    chat,
    create_room,
    join,
    post_form,
    receive_type,
    update,
)


async def test_edits_reactions_and_deletions_reach_everyone_with_the_next_seq(
    client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        said = await chat(b, "general", "helo")
        assert (await receive_type(a, "chat"))["seq"] == said["seq"]
        seq = said["seq"]

        edited = await update(b, type="edit", room="general", seq=seq, text="hello")
        assert edited["type"] == "update" and edited["seq"] == seq + 1
        assert edited["message"]["text"] == "hello" and edited["message"]["edited_at"] > 0
        assert (await receive_type(a, "update")) == edited

        reacted = await update(a, type="react", room="general", seq=seq, emoji="👍🏽", on=True)
        assert reacted["seq"] == seq + 2
        assert reacted["message"]["reactions"] == [{"emoji": "👍🏽", "users": ["alice"]}]
        assert (await receive_type(b, "update")) == reacted
        taken = await update(a, type="react", room="general", seq=seq, emoji="👍🏽", on=False)
        assert taken["seq"] == seq + 3 and "reactions" not in taken["message"]
        await receive_type(b, "update")

        reply = await chat(a, "general", "welcome", reply_to=seq)
        assert reply["seq"] == seq + 4 and reply["reply_to"] == seq
        assert reply["reply"] == {"user": "bob", "text": "hello", "deleted": False}

        deleted = await update(b, type="delete", room="general", seq=seq)
        assert deleted["seq"] == seq + 5
        assert deleted["message"]["deleted"] is True and deleted["message"]["text"] == ""
        after = await chat(b, "general", "next")
        assert after["seq"] == seq + 6


async def test_a_client_that_was_away_gets_the_current_state_of_what_changed(
    client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        kept = await chat(a, "general", "to be edited")
        doomed = await chat(a, "general", "to be deleted")
        liked = await chat(a, "general", "to be liked")
        async with bob.ws_connect("/ws") as b:
            since = (await join(b, "general"))["last_seq"]
        # bob is away: an edit, a deletion and a reaction happen.
        await update(a, type="edit", room="general", seq=kept["seq"], text="edited")
        await update(a, type="delete", room="general", seq=doomed["seq"])
        await update(a, type="react", room="general", seq=liked["seq"], emoji="🎉", on=True)
    async with bob.ws_connect("/ws") as b:
        resumed = await join(b, "general", since=since)
        fresh = await join(b, "general")
    assert resumed["complete"] is True and resumed["last_seq"] == since + 3
    by_seq = {m["seq"]: m for m in resumed["messages"]}
    assert by_seq[kept["seq"]]["text"] == "edited"
    assert by_seq[doomed["seq"]]["deleted"] is True
    assert by_seq[liked["seq"]]["reactions"] == [{"emoji": "🎉", "users": ["alice"]}]
    # What a client that was away shows equals what a fresh join shows.
    shown = {m["seq"]: m for m in [kept, doomed, liked]}
    for m in resumed["messages"]:
        if m.get("deleted"):
            shown.pop(m["seq"], None)
        else:
            shown[m["seq"]] = m
    strip = ("client_id", "room")
    assert [{k: v for k, v in m.items() if k not in strip} for m in shown.values()] == [
        {k: v for k, v in m.items() if k not in strip} for m in fresh["messages"]
    ]


async def test_every_refusal_has_its_code(client: Client, bob: Client) -> None:
    await create_room(client, "elsewhere")  # a room bob has not joined
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        alices = await chat(a, "general", "alice's")
        bobs = await chat(b, "general", "bob's")

        async def refused(ws: Any, **frame: Any) -> str:
            got = await update(ws, ref="r", **frame)
            assert got["type"] == "error" and got["ref"] == "r", got
            return str(got["code"])

        edit = {"type": "edit", "room": "general"}
        assert await refused(b, **edit, seq=alices["seq"], text="mine now") == "forbidden"
        # Admins delete anyone's message, but edit only their own.
        assert await refused(a, **edit, seq=bobs["seq"], text="no") == "forbidden"
        assert await refused(b, type="delete", room="general", seq=alices["seq"]) == "forbidden"
        assert await refused(b, **edit, seq=9999, text="x") == "no_such_message"
        assert await refused(b, **edit, seq=bobs["seq"], text="x" * 4001) == "too_long"
        assert await refused(b, **edit, seq=bobs["seq"], text="  ") == "bad_request"
        react = {"type": "react", "room": "general", "seq": bobs["seq"], "on": True}
        for bad in ("a", "👍👍", "👍 ", ""):
            assert await refused(b, **react, emoji=bad) == "bad_request"
        assert await refused(b, type="chat", room="general", text="re", reply_to=9999) == (
            "no_such_message"
        )
        assert await refused(b, type="react", room="elsewhere", seq=1, emoji="👍", on=True) == (
            "not_joined"
        )
        await update(a, type="delete", room="general", seq=bobs["seq"])
        assert (await receive_type(b, "update"))["message"]["deleted"] is True
        assert await refused(b, **edit, seq=bobs["seq"], text="back") == "no_such_message"
        assert await refused(b, **react, emoji="👍") == "no_such_message"


async def test_reacting_in_a_private_room_one_may_not_enter_is_forbidden(
    client: Client, bob: Client
) -> None:
    await post_form(client, "/rooms", {"name": "hidden", "private": "1"}, page="/")
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "hidden")
        said = await chat(a, "hidden", "members only")
        for frame in (
            {"type": "react", "emoji": "👍", "on": True},
            {"type": "edit", "text": "x"},
            {"type": "delete"},
        ):
            got = await update(b, room="hidden", seq=said["seq"], ref="r", **frame)
            assert got["type"] == "error" and got["code"] == "forbidden"


@pytest.mark.parametrize(
    "settings_env", [{"REACTION_BURST": "2", "REACTION_RATE_PER_SECOND": "0.01"}]
)
async def test_reactions_have_their_own_rate_limit(client: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        said = await chat(a, "general", "react to me")
        for emoji in ("👍", "🎉"):
            got = await update(
                a, type="react", room="general", seq=said["seq"], emoji=emoji, on=True
            )
            assert got["type"] == "update"
        got = await update(a, type="react", room="general", seq=said["seq"], emoji="❤️", on=True)
        assert got["type"] == "error" and got["code"] == "rate_limited" and got["retry_after"] > 0
        # The chat limit is another one: messages still go.
        assert (await chat(a, "general", "still talking"))["type"] == "chat"
