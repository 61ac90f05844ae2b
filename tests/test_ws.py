"""The `/ws` socket: upgrade checks, live chat, history and resume, bad input, slow readers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient

from chat.app import create_app
from chat.keys import HUB, STORE
from tests.conftest import ClientFactory, make_settings
from tests.helpers import (
    Client,
    chat,
    expect_closed_as_too_slow,
    fail_batches_holding,
    join,
    receive,
    receive_type,
    register,
    send,
)


async def test_upgrade_without_session_is_401(anon: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await anon.ws_connect("/ws")
    assert info.value.status == 401


async def test_upgrade_from_foreign_origin_is_403(client: Client) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
    assert info.value.status == 403


async def test_upgrade_from_own_origin_is_accepted(client: Client) -> None:
    origin = f"http://{client.host}:{client.port}"
    async with client.ws_connect("/ws", headers={"Origin": origin}) as ws:
        history = await join(ws, "general")
        assert history["room"] == "general"


@pytest.mark.parametrize("settings_env", [{"ALLOWED_ORIGINS": "https://chat.example.com"}])
async def test_upgrade_from_allowed_origin_is_accepted(client: Client) -> None:
    async with client.ws_connect("/ws", headers={"Origin": "https://chat.example.com"}) as ws:
        await join(ws, "general")


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


BAD_INPUT = [
    ("not json at all", "bad_request"),
    ("[1, 2, 3]", "bad_request"),
    ('{"room": "general"}', "bad_request"),
    ('{"type": "dance", "room": "general"}', "unknown_type"),
    ('{"type": "chat", "room": "general"}', "bad_request"),
    ('{"type": "chat", "room": "general", "text": "   "}', "bad_request"),
    ('{"type": "chat", "room": "general", "text": "' + "x" * 4001 + '"}', "too_long"),
    ('{"type": "join", "room": "nowhere"}', "no_such_room"),
    ('{"type": "join", "room": "Bad Name!"}', "bad_request"),
    ('{"type": "join", "room": "general", "since": -1}', "bad_request"),
    ('{"type": "join", "room": "general", "since": true}', "bad_request"),
    ('{"type": "chat", "room": "random", "text": "hi"}', "not_joined"),
    ('{"type": "typing", "room": "random", "typing": true}', "not_joined"),
    ('{"type": "typing", "room": "general", "typing": "yes"}', "bad_request"),
    ('{"type": "leave", "room": "random"}', "not_joined"),
    ('{"type": "read", "room": "general"}', "bad_request"),
]


async def test_bad_input_gets_an_error_frame_and_the_socket_stays_usable(
    client: Client, app: web.Application
) -> None:
    await app[STORE].create_room("random", creator_id=None)
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        for raw, code in BAD_INPUT:
            await ws.send_str(raw)
            frame = await receive_type(ws, "error")
            assert frame["code"] == code, raw
            assert frame["message"]
        ack = await chat(ws, "general", "still here")
        assert ack["type"] == "chat" and ack["seq"] == 1


async def test_error_carries_the_client_id_as_ref(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        await send(ws, type="chat", room="general", text="y" * 4001, client_id="msg-7")
        frame = await receive_type(ws, "error")
    assert frame == {
        "type": "error",
        "code": "too_long",
        "message": "'text' is longer than 4000 characters",
        "ref": "msg-7",
    }


async def test_binary_frame_closes_with_1003(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_bytes(b"\x00\x01")
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.UNSUPPORTED_DATA


async def test_oversized_frame_closes_with_1009(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await ws.send_str('{"type":"chat","room":"general","text":"' + "x" * 20000 + '"}')
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_bad_input_from_one_client_does_not_disturb_another(
    client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        await b.send_str("garbage")
        await b.send_bytes(b"binary")
        sent = await chat(a, "general", "unaffected")
        assert sent["seq"] == 1
    # bob was closed for the binary frame; alice's message is stored regardless.
    async with bob.ws_connect("/ws") as b:
        history = await join(b, "general")
    assert [m["text"] for m in history["messages"]] == ["unaffected"]


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


@pytest.mark.parametrize(
    "settings_env",
    [{"SEND_QUEUE_SIZE": "16", "CHAT_RATE_PER_SECOND": "100000", "CHAT_BURST": "100000"}],
)
async def test_a_client_that_never_reads_is_closed_without_delaying_the_others(
    client: Client, bob: Client, new_client: ClientFactory, app: web.Application
) -> None:
    """The never-reading socket fills the kernel buffers, then its queue: it alone is closed
    with 1013, while every message reaches the reader in order."""
    sloth = await new_client("sloth")
    async with (
        client.ws_connect("/ws") as sender,
        bob.ws_connect("/ws") as reader,
        sloth.ws_connect("/ws", autoping=False) as never_reads,
    ):
        await join(sender, "general")
        await join(reader, "general")
        await join(never_reads, "general")
        hub = app[HUB]
        slow_conn = next(c for c in hub.connections.values() if c.username == "sloth")
        big = "x" * 3900
        received: list[int] = []
        count = 0
        # The sender reads its own echoes too, or it would be the slow one.
        drain = asyncio.create_task(_drain(sender))
        # Bounded: the slow socket must be closed long before this many messages.
        while not slow_conn.closing and count < 3000:
            count += 1
            await send(sender, type="chat", room="general", text=f"{count} {big}")
            while True:
                frame = await receive(reader)
                if frame["type"] == "chat":
                    received.append(frame["seq"])
                    break
        assert slow_conn.closing, "the slow reader was never closed"
        # While it is being closed the others go on undelayed.
        for _ in range(20):
            count += 1
            await send(sender, type="chat", room="general", text=f"{count} after")
            received.append((await receive_type(reader, "chat"))["seq"])
        assert received == list(range(1, count + 1))
        async with asyncio.timeout(10):
            while slow_conn.id in hub.connections:
                await asyncio.sleep(0.05)
        drain.cancel()
        await expect_closed_as_too_slow(never_reads)


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:
        pass


async def test_shutdown_closes_every_socket_with_going_away(
    tmp_path: Path, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    app = create_app(make_settings(tmp_path))
    server = await aiohttp_server(app)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(server)
    await register(client, "alice")
    ws = await client.ws_connect("/ws")
    await join(ws, "general")
    await server.close()
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == aiohttp.WSCloseCode.GOING_AWAY
    await ws.close()


@pytest.mark.parametrize("settings_env", [{"MAX_CONNECTIONS_PER_USER": "2"}])
async def test_connections_per_user_are_capped(client: Client) -> None:
    async with client.ws_connect("/ws"), client.ws_connect("/ws"):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await client.ws_connect("/ws")
        assert info.value.status == 429


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


async def test_logout_closes_that_sessions_sockets(client: Client) -> None:
    from tests.helpers import csrf

    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        token = await csrf(client, "/")
        await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
        msg = await ws.receive(timeout=5)
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION


def _awaiting(task: asyncio.Task[Any]) -> list[Any]:
    """The coroutines a task is suspended in, outermost first."""
    chain = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        chain.append(coro)
        coro = coro.cr_await
    return chain


def _module(coro: Any) -> str:
    return str(coro.cr_frame.f_globals["__name__"])


def _socket_handler_chain() -> list[Any]:
    for task in asyncio.all_tasks():
        chain = _awaiting(task)
        if any(_module(c) == "chat.web.socket" and c.cr_code.co_name == "websocket" for c in chain):
            return chain
    raise AssertionError("no task is running the /ws handler")


async def test_an_open_socket_keeps_no_middleware_frame_and_no_upgrade_leftovers(
    client: Client,
) -> None:
    """Idle sockets are counted by the thousand: while one is open, nothing that only served
    its upgrade stays in memory (see chat.web.middlewares and chat.web.socket.forget_upgrade)."""
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        chain = _socket_handler_chain()
        modules = [_module(c) for c in chain]
        assert not {"chat.web.middlewares", "chat.web.auth", "aiohttp_session"} & set(modules), (
            modules
        )
        handler = next(c for c in chain if _module(c) == "chat.web.socket")
        request = handler.cr_frame.f_locals["request"]
        assert len(request) == 0  # the session and the cached user
        # aiohttp's HTTP parser (a private attribute: if aiohttp renames it, this says so).
        assert request.protocol._parser is None
        # ...and the socket works as before.
        assert (await chat(ws, "general", "still here"))["text"] == "still here"


async def test_tabs_of_one_person_share_one_user_record(
    client: Client, app: web.Application
) -> None:
    async with client.ws_connect("/ws") as a, client.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        first, second = app[HUB].connections.values()
        assert first.user is second.user


# --- issue 18: exactly-once at the edge of the kept history ---


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
