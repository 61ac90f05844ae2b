"""Mentions and notification levels (issue 15): who is told of a new message, and who is not.

Everything goes through the pages and the socket as a browser would; what the sinks are handed
is recorded by one more sink, and what open tabs get is read from their sockets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse, web

from chat.keys import CONVERSATIONS, NOTICE_SINKS, STORE
from chat.notify.notice import Notice
from tests.conftest import ClientFactory
from tests.helpers import Client, chat, create_room, join, post_form, receive, receive_type, send


class Recorder:
    """A sink that remembers what it was handed."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    def send(self, notice: Notice) -> None:
        self.notices.append(notice)

    def told(self, user_id: int) -> list[tuple[int, str]]:
        return [
            (n.seq, r.reason) for n in self.notices for r in n.recipients if r.user_id == user_id
        ]


@pytest.fixture
def recorder(app: web.Application) -> Recorder:
    recorder = Recorder()
    app[NOTICE_SINKS] = (*app[NOTICE_SINKS], recorder)
    return recorder


async def settled(app: web.Application) -> None:
    await app[CONVERSATIONS].notifier.settled()


async def user_id(client: Client, name: str) -> int:
    assert client.app is not None
    user = await client.app[STORE].user_by_name(name)
    assert user is not None
    return int(user.id)


async def set_level(client: Client, room: str, level: str) -> Any:
    response = await post_form(
        client, f"/rooms/{room}/notifications", {"level": level}, page=f"/rooms/{room}"
    )
    assert response.status == 303, await response.text()
    return response


async def notifies(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    """The notify frames this socket has got so far (after a round trip: nothing in flight)."""
    await send(ws, type="typing", room="nowhere", typing=True)  # an error frame comes back
    got = []
    while True:
        frame = await receive(ws)
        if frame["type"] == "notify":
            got.append(frame)
        elif frame["type"] == "error":
            return got


async def counts(client: Client, room: str) -> tuple[int, int]:
    listed = await (await client.get("/rooms.json")).json()
    for entry in listed["rooms"] + listed["direct"]:
        if entry["name"] == room:
            return entry["unread"], entry["mentions"]
    raise AssertionError(f"{room} not listed")


async def test_a_mention_tells_the_person_named_and_nobody_else(
    app: web.Application, recorder: Recorder, client: Client, bob: Client, new_client: ClientFactory
) -> None:
    carol = await new_client("carol")
    async with (
        client.ws_connect("/ws") as a,
        bob.ws_connect("/ws") as b,
        carol.ws_connect("/ws") as c,
    ):
        await join(a, "general")
        # bob is not even in the room: his open tab (any room) is told.
        sent = await chat(a, "general", "hey @BOB, look at `@carol` and mail bob@example.com")
        await settled(app)
        [frame] = await notifies(b)
        assert frame == {
            "type": "notify",
            "room": "general",
            "title": "#general",
            "url": f"/rooms/general#m{sent['seq']}",
            "seq": sent["seq"],
            "author": "alice",
            "excerpt": "hey @BOB, look at `@carol` and mail bob@example.com",
            "reason": "mention",
        }
        # carol was named only inside code; alice, the author, never hears of her own words.
        assert await notifies(c) == []
        await chat(a, "general", "note to self, @alice")
        await settled(app)
        assert await notifies(a) == []
    assert recorder.told(await user_id(client, "bob")) == [(sent["seq"], "mention")]
    assert len(recorder.notices) == 1


async def test_ordinary_messages_follow_each_persons_level(
    app: web.Application, recorder: Recorder, client: Client, bob: Client
) -> None:
    bob_id = await user_id(bob, "bob")
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        # Mentions only, the default: an ordinary message tells nobody.
        await chat(a, "general", "an ordinary message")
        await settled(app)
        assert await notifies(b) == []
        page = await (await bob.get("/rooms/general")).text()
        assert 'value="mentions" selected' in page
        # Every message: now it does, without a mention.
        await set_level(bob, "general", "all")
        loud = await chat(a, "general", "another ordinary message")
        await settled(app)
        assert [f["reason"] for f in await notifies(b)] == ["message"]
        # Nothing: not even a mention.
        await set_level(bob, "general", "nothing")
        await chat(a, "general", "@bob are you there?")
        await settled(app)
        assert await notifies(b) == []
        # Back to mentions only: the room is quiet again, and a mention still tells.
        await set_level(bob, "general", "mentions")
        await chat(a, "general", "ordinary again")
        named = await chat(a, "general", "@bob now?")
        await settled(app)
        assert [f["seq"] for f in await notifies(b)] == [named["seq"]]
    assert recorder.told(bob_id) == [(loud["seq"], "message"), (named["seq"], "mention")]


async def test_a_level_set_in_one_tab_reaches_the_persons_other_tabs_only(
    client: Client, bob: Client
) -> None:
    async with (
        client.ws_connect("/ws") as lobby,
        client.ws_connect("/ws") as room_tab,
        bob.ws_connect("/ws") as b,
    ):
        await join(room_tab, "general")
        await join(b, "general")
        await set_level(client, "general", "all")
        for tab in (lobby, room_tab):
            frame = await receive_type(tab, "level")
            assert frame == {"type": "level", "room": "general", "level": "all"}
        # Nothing for bob (after a round trip: nothing in flight), whose level is his own.
        await send(b, type="typing", room="nowhere", typing=True)
        while (frame := await receive(b))["type"] != "error":
            assert frame["type"] != "level"
    page = await (await client.get("/rooms/general")).text()
    assert 'value="all" selected' in page


async def test_a_tab_that_was_away_learns_the_level_set_meanwhile(client: Client) -> None:
    async with client.ws_connect("/ws") as tab:
        history = await join(tab, "general")
    await set_level(client, "general", "nothing")  # in another tab, while this one was away
    async with client.ws_connect("/ws") as tab:
        await send(tab, type="join", room="general", since=history["last_seq"])
        frame = await receive_type(tab, "level")
        assert frame == {"type": "level", "room": "general", "level": "nothing"}


async def test_a_bad_level_is_refused(client: Client) -> None:
    response = await post_form(
        client, "/rooms/general/notifications", {"level": "loud"}, page="/rooms/general"
    )
    assert response.status == 400
    response = await post_form(
        client, "/rooms/nowhere/notifications", {"level": "all"}, page="/rooms/general"
    )
    assert response.status == 404
    # The page's script asks for JSON.
    token_page = await (await client.get("/rooms/general")).text()
    assert 'action="/rooms/general/notifications"' in token_page


async def test_who_may_not_read_a_private_room_is_never_told_and_nothing_leaks(
    app: web.Application, recorder: Recorder, client: Client, bob: Client, new_client: ClientFactory
) -> None:
    carol = await new_client("carol")
    response = await post_form(bob, "/rooms", {"name": "secret", "private": "1"}, page="/")
    assert response.status == 302
    await set_level(carol, "general", "all")  # carol hears everything she may read
    async with bob.ws_connect("/ws") as b, carol.ws_connect("/ws") as c:
        await join(b, "secret")
        await chat(b, "secret", "@carol @alice @nobody: can you see this?")
        await settled(app)
        assert await notifies(c) == []
    assert recorder.notices == []  # alice is an admin, not a member: not told either
    assert await counts(carol, "general") == (0, 0)
    listed = await (await carol.get("/rooms.json")).json()
    assert "secret" not in str(listed)


async def test_here_is_for_admins_and_creators_and_reaches_who_is_in_the_room(
    app: web.Application, recorder: Recorder, client: Client, bob: Client, new_client: ClientFactory
) -> None:
    carol = await new_client("carol")
    dave = await new_client("dave")
    assert (await create_room(bob, "bobs")).status == 302
    async with (
        client.ws_connect("/ws") as a,
        bob.ws_connect("/ws") as b,
        carol.ws_connect("/ws") as c,
        dave.ws_connect("/ws") as d,
    ):
        await join(a, "general")
        await join(b, "general")
        await join(c, "general")
        # bob created neither general nor is he an admin: refused, and not stored.
        refused = await chat(b, "general", "@here lunch?")
        assert refused["type"] == "error" and refused["code"] == "forbidden"
        # alice is an admin: carol and bob are in the room and told, dave is not there.
        sent = await chat(a, "general", "@here standup now")
        await settled(app)
        assert [(f["seq"], f["reason"]) for f in await notifies(c)] == [(sent["seq"], "here")]
        assert [f["reason"] for f in await notifies(b)] == ["here"]
        assert await notifies(d) == []
        # bob created #bobs: he may, there.
        await join(b, "bobs")
        await join(c, "bobs")
        ok = await chat(b, "bobs", "@here welcome")
        assert ok["type"] == "chat"
        await settled(app)
        assert [f["room"] for f in await notifies(c)] == ["bobs"]
    assert (await counts(carol, "general"))[1] == 1  # the @here counts as a mention


@pytest.mark.parametrize("settings_env", [{"HERE_PER_HOUR": "1"}])
async def test_here_is_rate_limited(client: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        assert (await chat(a, "general", "@here one"))["type"] == "chat"
        again = await chat(a, "general", "@here two")
        assert again["type"] == "error" and again["code"] == "rate_limited"
        assert (await chat(a, "general", "no here, fine"))["type"] == "chat"


async def test_direct_messages_tell_the_other_person_by_default(
    app: web.Application, recorder: Recorder, client: Client, bob: Client
) -> None:
    response = await bob.get("/dm/alice", allow_redirects=False)
    room = response.headers["Location"].rsplit("/", 1)[1]
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, room)
        first = await chat(a, room, "psst")
        await settled(app)
        [frame] = await notifies(b)
        assert frame["reason"] == "direct" and frame["title"] == "alice"
        assert frame["url"] == f"/rooms/{room}#m{first['seq']}"
        await set_level(bob, room, "mentions")
        await chat(a, room, "psst again")
        await settled(app)
        assert await notifies(b) == []
    assert recorder.told(await user_id(bob, "bob")) == [(first["seq"], "direct")]


async def test_edits_and_resends_do_not_notify_again(
    app: web.Application, recorder: Recorder, client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        sent = await chat(a, "general", "hi @bob", client_id="once")
        again = await chat(a, "general", "hi @bob", client_id="once")
        assert again["seq"] == sent["seq"]
        await send(a, type="edit", room="general", seq=sent["seq"], text="hi @bob, edited")
        while (await receive(a))["type"] != "update":
            pass
        await settled(app)
        assert len(await notifies(b)) == 1
    assert len(recorder.notices) == 1


@pytest.mark.parametrize("settings_env", [{"NOTIFICATION_EXCERPTS": "false"}])
async def test_excerpts_can_be_turned_off(
    app: web.Application, recorder: Recorder, client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "@bob the secret plan")
        await settled(app)
    [notice] = recorder.notices
    assert notice.excerpt == "" and notice.author == "alice" and notice.title == "#general"


async def test_mention_counts_go_up_and_clear_on_reading(
    app: web.Application, client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "morning all")
        first = await chat(a, "general", "@bob one")
        second = await chat(a, "general", "@bob two")
        await settled(app)
    # bob never opened #general: its unread count stays 0, its mentions count.
    assert await counts(bob, "general") == (0, 2)
    async with bob.ws_connect("/ws") as b:
        await join(b, "general")
        await send(b, type="read", room="general", seq=first["seq"])
        await settled(app)
        await notifies(b)
        assert (await counts(bob, "general"))[1] == 1
        await send(b, type="read", room="general", seq=second["seq"])
        await notifies(b)
    assert (await counts(bob, "general"))[1] == 0
    home = await (await bob.get("/")).text()
    assert 'class="mentions"' in home


async def test_the_composer_is_offered_the_names_a_mention_would_reach(
    client: Client, bob: Client, new_client: ClientFactory
) -> None:
    await new_client("bobby")
    await new_client("carol")
    names = await (await client.get("/rooms/general/names.json?q=BO")).json()
    assert names == {"names": ["bob", "bobby"]}
    assert (await (await client.get("/rooms/general/names.json?q=b%25")).json())["names"] == []
    # A private room: its members only.
    assert (await create_room(bob, "quiet")).status == 302
    await post_form(bob, "/rooms", {"name": "hidden", "private": "1"}, page="/")
    hidden = await (await bob.get("/rooms/hidden/names.json?q=")).json()
    assert hidden == {"names": ["bob"]}
    carol = await new_client("carol2")
    assert (await carol.get("/rooms/hidden/names.json?q=b")).status == 404
    assert (await (await new_client()).get("/rooms/general/names.json")).status == 401


async def test_a_message_deleted_before_it_went_out_tells_nobody(
    app: web.Application, recorder: Recorder, client: Client, bob: Client
) -> None:
    notifier = app[CONVERSATIONS].notifier
    gate = asyncio.Event()
    real = notifier.store.room_levels

    async def slow_levels(room_id: int) -> dict[int, str]:
        await gate.wait()  # the rules are still at work when the deletion lands
        return await real(room_id)

    notifier.store.room_levels = slow_levels  # type: ignore[method-assign]
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        sent = await chat(a, "general", "@bob oops, wrong room")
        await send(a, type="delete", room="general", seq=sent["seq"])
        while (await receive(a))["type"] != "update":
            pass
        gate.set()
        await settled(app)
    assert recorder.notices == []
    assert (await counts(bob, "general"))[1] == 0
