"""The whole way from a message to a browser that is not open: the mention rules
(chat/notify/rules.py) decide, the Web Push sink delivers, and a push service on a loopback port
decrypts what arrives (docs/architecture.md, "Notifications" and "Web Push")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.helpers import Client, chat, join
from tests.notify.push_service import Browser, PushService, push_service


@pytest.fixture
def settings_env() -> dict[str, object]:
    return {"PUSH_ENDPOINT_HOSTS": "127.0.0.1", "VAPID_SUBJECT": "mailto:ops@example.com"}


@pytest.fixture
async def push() -> AsyncIterator[PushService]:
    async for service in push_service():
        yield service


async def say(client: Client, *texts: str) -> list[int]:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        return [(await chat(ws, "general", text))["seq"] for text in texts]


async def test_a_mention_reaches_a_closed_browser_once_and_nothing_else_does(
    client: Client, bob: Client, push: PushService
) -> None:
    alice = Browser()
    assert (await alice.subscribe(client, push.endpoint("alice"))).status == 200
    plain, own, mention = await say(bob, "lunch?", "@bob note to self", "@alice lunch?")
    # alice's own mention of herself tells nobody either.
    await say(client, "@alice talking to myself")

    (request,) = await push.wait_for(1)
    await asyncio.sleep(1.0)  # anything else that was coming would have come by now
    assert len(push.received) == 1
    assert alice.decrypt(request.body) == {
        "room": "general",
        "title": "#general",
        "url": f"/rooms/general#m{mention}",
        "author": "bob",
        "excerpt": "@alice lunch?",
        "seq": mention,
        "tag": f"chat:general:{mention}",
    }
    assert request.headers["Urgency"] == "high"
    assert plain < own < mention


@pytest.mark.parametrize(
    "settings_env", [{"PUSH_ENDPOINT_HOSTS": "127.0.0.1", "NOTIFICATION_EXCERPTS": "false"}]
)
async def test_without_excerpts_a_push_names_only_the_room_and_the_author(
    client: Client, bob: Client, push: PushService
) -> None:
    alice = Browser()
    assert (await alice.subscribe(client, push.endpoint("alice"))).status == 200
    (seq,) = await say(bob, "@alice the launch code is 1234")
    (request,) = await push.wait_for(1)
    payload = alice.decrypt(request.body)
    assert payload["excerpt"] == ""
    assert payload["seq"] == seq and payload["author"] == "bob"
