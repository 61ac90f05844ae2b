"""The frame parser and builders, without a socket."""

from __future__ import annotations

import orjson
import pytest

from chat.errors import BadRequest, ChatError, TooLong, UnknownType
from chat.live import protocol
from chat.live.protocol import MAX_SEQ, seq_from_text
from chat.models import Message, Position


def parse(raw: str) -> protocol.ClientFrame:
    return protocol.parse(raw, max_text_chars=10)


def test_parses_every_client_frame() -> None:
    assert parse('{"type":"join","room":"general"}') == protocol.Join("general", None)
    assert parse('{"type":"join","room":"general","since":7}') == protocol.Join("general", 7)
    assert parse('{"type":"leave","room":"a-b_c"}') == protocol.Leave("a-b_c")
    assert parse('{"type":"chat","room":"r","text":"hi","client_id":"c1"}') == protocol.Chat(
        "r", "hi", "c1", "c1"
    )
    assert parse('{"type":"typing","room":"r","typing":false}') == protocol.Typing("r", False)
    assert parse('{"type":"read","room":"r","seq":3}') == protocol.Read("r", 3)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("", BadRequest),
        ("{", BadRequest),
        ('"join"', BadRequest),
        ("{}", BadRequest),
        ('{"type": 5}', BadRequest),
        ('{"type":"nope"}', UnknownType),
        ('{"type":"join"}', BadRequest),
        ('{"type":"join","room":""}', BadRequest),
        ('{"type":"join","room":"UPPER"}', BadRequest),
        ('{"type":"join","room":"r","since":1.5}', BadRequest),
        ('{"type":"join","room":"r","since":"3"}', BadRequest),
        ('{"type":"chat","room":"r","text":5}', BadRequest),
        ('{"type":"chat","room":"r","text":"12345678901"}', TooLong),
        ('{"type":"chat","room":"r","text":"hi","client_id":""}', BadRequest),
        ('{"type":"chat","room":"r","text":"hi","client_id":"' + "x" * 65 + '"}', BadRequest),
        ('{"type":"typing","room":"r"}', BadRequest),
        ('{"type":"read","room":"r","seq":-1}', BadRequest),
    ],
)
def test_rejects_bad_frames_with_a_code(raw: str, error: type[ChatError]) -> None:
    with pytest.raises(error) as info:
        parse(raw)
    assert info.value.message


def test_error_ref_is_the_client_id_of_a_rejected_chat() -> None:
    with pytest.raises(TooLong) as info:
        parse('{"type":"chat","room":"r","text":"' + "y" * 11 + '","client_id":"m1"}')
    frame = orjson.loads(protocol.error_frame(info.value))
    assert frame == {
        "type": "error",
        "code": "too_long",
        "message": "'text' is longer than 10 characters",
        "ref": "m1",
    }


def test_server_frames() -> None:
    message = Message("r", 4, "ann", "<b>hi</b>", 1700000000000, "c9")
    assert orjson.loads(protocol.chat_frame(message)) == {
        "type": "chat",
        "room": "r",
        "seq": 4,
        "user": "ann",
        "text": "<b>hi</b>",
        "ts": 1700000000000,
        "client_id": "c9",
    }
    history = orjson.loads(protocol.history_frame("r", [message], Position(4, complete=False)))
    assert history["type"] == "history" and history["complete"] is False
    assert history["messages"][0]["seq"] == 4
    assert orjson.loads(protocol.presence_frame("r", {"b", "a"}))["users"] == ["a", "b"]
    assert orjson.loads(protocol.receipt_frame("r", "a", 3)) == {
        "type": "receipt",
        "room": "r",
        "user": "a",
        "seq": 3,
    }


def test_a_seq_from_a_query_or_form_is_ascii_digits_below_the_bound() -> None:
    assert seq_from_text("0") == 0 and seq_from_text("42") == 42
    assert seq_from_text(str(MAX_SEQ - 1)) == MAX_SEQ - 1
    for text in ("", "-1", "+1", " 1", "1.0", "²", "١٢", str(MAX_SEQ), "9" * 5000):
        assert seq_from_text(text) is None, text
