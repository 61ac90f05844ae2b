"""Bad input on the socket gets an `error` frame with a code and the client's ref; the socket
stays usable, and nobody else notices."""

from __future__ import annotations

from aiohttp import web

from chat.keys import STORE
from tests.helpers import (
    Client,
    chat,
    join,
    receive_type,
    send,
)

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
