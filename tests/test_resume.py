"""History and resume: a join gets the kept history, or exactly what it missed after `since`,
says when that is incomplete, and starts afresh (`reset`) when the database went back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from chat.app import create_app
from chat.keys import HUB, STORE
from tests.conftest import make_settings
from tests.helpers import (
    Client,
    chat,
    expect_closed_as_too_slow,
    join,
    receive,
    receive_type,
    register,
    send,
)


async def test_join_without_since_sends_the_kept_history(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        for i in range(3):
            await chat(ws, "general", f"m{i}")
    async with bob.ws_connect("/ws") as ws:
        history = await join(ws, "general")
    assert [m["text"] for m in history["messages"]] == ["m0", "m1", "m2"]
    assert history["complete"] is True
    assert {"seq", "user", "text", "ts", "room"} <= history["messages"][0].keys()


async def test_since_returns_exactly_what_was_missed(client: Client, bob: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        for i in range(4):
            await chat(a, "general", f"before {i}")
        async with bob.ws_connect("/ws") as b:
            seen = await join(b, "general")
            last_seen = seen["messages"][-1]["seq"]
        # bob is gone; alice keeps talking.
        for i in range(3):
            await chat(a, "general", f"missed {i}")
    async with bob.ws_connect("/ws") as b:
        history = await join(b, "general", since=last_seen)
    assert [m["text"] for m in history["messages"]] == ["missed 0", "missed 1", "missed 2"]
    assert [m["seq"] for m in history["messages"]] == [last_seen + 1, last_seen + 2, last_seen + 3]
    assert history["complete"] is True


async def test_since_up_to_date_returns_nothing(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        last = await chat(ws, "general", "only")
        history = await join(ws, "general", since=last["seq"])
    assert history["messages"] == [] and history["complete"] is True


@pytest.mark.parametrize("settings_env", [{"HISTORY_LIMIT": "5"}])
async def test_since_older_than_kept_history_says_incomplete(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        for i in range(10):
            await chat(ws, "general", f"m{i}")
        history = await join(ws, "general", since=2)
    assert [m["seq"] for m in history["messages"]] == [6, 7, 8, 9, 10]
    assert history["complete"] is False


async def test_messages_published_during_join_are_neither_lost_nor_doubled(
    client: Client, bob: Client
) -> None:
    """bob joins over and over while alice sends: every seq arrives exactly once, in order."""
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        total = 30

        async def alice_sends() -> None:
            for i in range(total):
                await chat(a, "general", f"n{i}")

        sender = asyncio.create_task(alice_sends())
        seen: list[int] = []
        last = 0
        while len(seen) < total:
            await send(b, type="join", room="general", since=last)
            while True:
                frame = await receive(b)
                if frame["type"] == "history":
                    # Live frames that overtook this join may be in the history too (it starts
                    # from the `since` we sent); a client keeps what it has, as chat.js does.
                    # After the history, nothing may repeat.
                    seen += [m["seq"] for m in frame["messages"] if m["seq"] > max(seen, default=0)]
                    break
                # A chat that was already on its way when the join was sent: it was committed
                # before the history was read, so the history has it too.
            last = seen[-1] if seen else 0
            while len(seen) < total:
                frame = await receive(b)
                if frame["type"] == "chat":
                    seen.append(frame["seq"])
                    last = frame["seq"]
                    break
        await sender
    assert seen == list(range(1, total + 1))


async def test_history_survives_a_new_app_on_the_same_database(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(tmp_path)
    first: TestClient[web.Request, web.Application] = await aiohttp_client(create_app(settings))
    await register(first, "alice")
    async with first.ws_connect("/ws") as ws:
        await join(ws, "general")
        for i in range(3):
            await chat(ws, "general", f"kept {i}")
    await first.close()
    second: TestClient[web.Request, web.Application] = await aiohttp_client(create_app(settings))
    from tests.helpers import login

    await login(second, "alice")
    async with second.ws_connect("/ws") as ws:
        history = await join(ws, "general")
        assert [m["text"] for m in history["messages"]] == ["kept 0", "kept 1", "kept 2"]
        assert (await chat(ws, "general", "and on"))["seq"] == 4


async def test_a_resend_whose_original_was_trimmed_is_acked_with_its_seq_not_shown_twice(
    client: Client, bob: Client, app: web.Application
) -> None:
    """The ack was lost, and the room moved on by more than HISTORY_LIMIT (50) messages before
    the client resent; bob, who saw the original, must not see it a second time."""
    limit = app[STORE].history_limit
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        async with client.ws_connect("/ws") as a:
            await join(a, "general")
            await send(a, type="chat", room="general", text="lost ack", client_id="c-lost")
        # (alice's socket closed before she read the ack)
        assert (await receive_type(b, "chat"))["seq"] == 1
        for i in range(limit + 5):
            await chat(b, "general", f"b{i}")
        last = limit + 6
        async with client.ws_connect("/ws") as a:
            history = await join(a, "general", since=0)
            assert history["complete"] is False and history["messages"][0]["seq"] == 7
            ack = await chat(a, "general", "lost ack", client_id="c-lost")
            assert (ack["type"], ack["seq"], ack["client_id"]) == ("chat", 1, "c-lost")
            after = await chat(a, "general", "next")
            assert after["seq"] == last + 1
        assert (await receive_type(b, "chat"))["text"] == "next"  # and nothing in between
    _, at = await app[STORE].history("general", None)
    stored_last = at.seq
    assert stored_last == last + 1


async def test_a_since_beyond_the_rooms_last_seq_resets_the_client_to_the_rooms_history(
    client: Client, bob: Client
) -> None:
    """The database was restored from a backup: the client holds seq 120 of a room whose last
    seq is now 3. The answer is what a fresh page load shows, and says so."""
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        for i in range(3):
            await chat(a, "general", f"m{i}")
        history = await join(a, "general", since=120)
        assert history["reset"] is True and history["last_seq"] == 3
        assert [m["seq"] for m in history["messages"]] == [1, 2, 3]
        assert history["complete"] is True  # as a fresh page: nothing before seq 1
        # From there on, the room's own seqs.
        async with bob.ws_connect("/ws") as b:
            await join(b, "general")
            await chat(b, "general", "after the restore")
        assert (await receive_type(a, "chat"))["seq"] == 4
        up_to_date = await join(a, "general", since=4)
    assert "reset" not in up_to_date and up_to_date["messages"] == []


async def test_a_socket_closed_as_too_slow_resumes_beyond_the_history_incomplete_and_once(
    client: Client, bob: Client, app: web.Application
) -> None:
    """Closed with 1013 after more than HISTORY_LIMIT messages: the resume says that some are no
    longer kept, and holds nothing twice."""
    limit = app[STORE].history_limit
    async with client.ws_connect("/ws") as sender:
        await join(sender, "general")
        async with bob.ws_connect("/ws", autoping=False) as sloth:
            await join(sloth, "general")
            await chat(sender, "general", "read this")
            seen = (await receive_type(sloth, "chat"))["seq"]
            slow = next(c for c in app[HUB].connections.values() if c.username == "bob")
            big = "x" * 3900
            count = 1
            # Bounded; and on after the close, so that the resume reaches beyond the history.
            while (not slow.closing or count < limit + 10) and count < 5000:
                count += 1
                await chat(sender, "general", f"{count} {big}")
            assert slow.closing
            await expect_closed_as_too_slow(sloth)
        async with bob.ws_connect("/ws") as back:
            history = await join(back, "general", since=seen)
            seqs = [m["seq"] for m in history["messages"]]
            assert history["complete"] is False and seqs[0] > seen + 1
            assert seqs == list(range(count - limit + 1, count + 1))  # each once, in order
            await chat(sender, "general", "live again")
            assert (await receive_type(back, "chat"))["seq"] == count + 1


@pytest.mark.parametrize("settings_env", [{"POSITION_CHECK_SECONDS": "0.2"}])
async def test_an_open_socket_is_reset_when_the_database_goes_back(
    client: Client, bob: Client, app: web.Application, tmp_path: Path
) -> None:
    """A failover to a replica that lags (or a restore) under open sockets: they are reset to
    the room as the database has it, and the room's next messages are not taken for old ones."""
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        for i in range(3):
            await chat(a, "general", f"m{i}")
        assert [(await receive_type(b, "chat"))["seq"] for _ in range(3)] == [1, 2, 3]
        # What the replica has: the first message only.
        with sqlite3.connect(tmp_path / "var" / "chat.sqlite3") as db:
            db.execute("DELETE FROM messages WHERE seq > 1")
            db.execute("UPDATE rooms SET last_seq = 1 WHERE name = 'general'")
        for ws in (a, b):
            reset = await receive_type(ws, "history", timeout=5)
            assert reset["reset"] is True and reset["last_seq"] == 1
            assert [m["text"] for m in reset["messages"]] == ["m0"]
        ack = await chat(b, "general", "after the failover")
        assert ack["seq"] == 2
        assert (await receive_type(a, "chat"))["text"] == "after the failover"
