"""The bench's WebSocket client reads what a server may send: a text message split over a first
frame and continuation frames (with a ping in between), several documents in one message
(docs/protocol.md, "Batching"), and input cut at any byte; it counts each message once."""

from __future__ import annotations

import orjson

from bench.wsclient import WSClient

UPGRADE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


def frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    masked = 0x80 if mask else 0
    if n < 126:
        head = bytes((first, masked | n))
    elif n < 65536:
        head = bytes((first, masked | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((first, masked | 127)) + n.to_bytes(8, "big")
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def chat(room: str, seq: int) -> bytes:
    doc = {"type": "chat", "room": room, "seq": seq, "user": "u", "text": f"{seq} x", "ts": 1}
    return orjson.dumps(doc)


def fragmented(message: bytes, pieces: int) -> bytes:
    """A text message as `pieces` frames, a ping after the first one."""
    size = -(-len(message) // pieces)
    parts = [message[i : i + size] for i in range(0, len(message), size)]
    out = frame(1, parts[0], fin=len(parts) == 1)
    for i, part in enumerate(parts[1:], start=2):
        if i == 2:
            out += frame(0x9, b"")  # a control frame between fragments
        out += frame(0, part, fin=i == len(parts))
    return out


def feed_bytewise(client: WSClient, data: bytes) -> None:
    for i in range(len(data)):
        client.data_received(data[i : i + 1])


async def client_counting() -> WSClient:
    client = WSClient("127.0.0.1", 1, None)
    client.data_received(UPGRADE)
    client.measure(probe=False)
    return client


async def test_a_fragmented_batch_is_counted_once_per_message() -> None:
    client = await client_counting()
    batch = b"\n".join(chat("general", seq) for seq in range(1, 6))
    feed_bytewise(client, fragmented(batch, 4))
    assert (client.chats, client.delivered, client.repeats) == (5, 5, 0)
    # The same messages again (a resume overlapping what was seen) are not new deliveries.
    feed_bytewise(client, frame(1, b"\n".join(chat("general", s) for s in (4, 5, 6))))
    assert (client.chats, client.delivered, client.repeats) == (8, 6, 2)


async def test_rooms_are_counted_apart_and_a_large_fragmented_message_is_read() -> None:
    client = await client_counting()
    docs = [chat(room, seq) for seq in range(1, 400) for room in ("a", 'b\\"c')]
    message = b"\n".join(docs)
    assert len(message) > 65536 // 2
    client.data_received(fragmented(message, 3) + frame(1, chat("a", 400), mask=b"\1\2\3\4"))
    assert (client.chats, client.delivered, client.repeats) == (799, 799, 0)
    assert client.errors == 0


async def test_setup_mode_parses_every_document_of_a_fragmented_message() -> None:
    client = WSClient("127.0.0.1", 1, None)
    client.data_received(UPGRADE)
    message = b"\n".join([orjson.dumps({"type": "history", "room": "r"}), chat("r", 1)])
    feed_bytewise(client, fragmented(message, 3))
    assert [d["type"] for d in client.docs] == ["history", "chat"]


async def test_a_continuation_without_a_first_fragment_is_an_error_not_a_count() -> None:
    client = await client_counting()
    client.data_received(frame(0, chat("general", 1)))
    assert (client.chats, client.errors) == (0, 1)
