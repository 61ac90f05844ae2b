"""The WebSocket protocol: parse and validate client frames, build server frames.

Everything here is pure: no I/O, so it is fuzzed and unit-tested directly. See docs/protocol.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import emoji
import orjson

from chat.errors import BadRequest, ChatError, TooLong, UnknownType
from chat.formatting import to_html
from chat.models import ROOM_NAME_RE, FileInfo, Message, Position

MAX_CLIENT_ID = 64


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    since: int | None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    room: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    room: str
    text: str
    client_id: str | None
    ref: str | None = None
    reply_to: int | None = None  # the seq of the message this one answers
    files: tuple[str, ...] = ()  # the ids of the sender's uploads it attaches


@dataclass(frozen=True, slots=True)
class Typing:
    room: str
    typing: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    room: str
    seq: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Its author (or an admin) deletes one message."""

    room: str
    seq: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Edit:
    """Its author replaces a message's text."""

    room: str
    seq: int
    text: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class React:
    """Add (`on`) or take back one's reaction to a message."""

    room: str
    seq: int
    emoji: str
    on: bool
    ref: str | None = None


ClientFrame = Join | Leave | Chat | Typing | Read | Delete | Edit | React
# A reaction is one emoji: a grapheme of at most this many code points (ZWJ families are long).
MAX_EMOJI_CHARS = 16


# An upload's id as the server hands it out (secrets.token_urlsafe): url-safe base64.
FILE_ID_RE = re.compile(r"[A-Za-z0-9_-]{16,32}")


def parse(data: str | bytes, *, max_text_chars: int, max_files: int = 10) -> ClientFrame:
    """Turn one text frame into a typed client frame or raise a `ChatError` with a code."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadRequest("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("frame must be a JSON object")
    ref = _optional_str(obj, "ref", None)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise BadRequest("missing field 'type'", ref=ref)
    try:
        if kind == "join":
            return Join(_room(obj), _optional_seq(obj, "since"), ref)
        if kind == "leave":
            return Leave(_room(obj), ref)
        if kind == "chat":
            client_id = _optional_str(obj, "client_id", ref)
            files = _files(obj, max_files)
            return Chat(
                _room(obj),
                _caption(obj, max_text_chars) if files else _text(obj, max_text_chars),
                client_id,
                ref or client_id,
                _optional_seq(obj, "reply_to"),
                files,
            )
        if kind == "typing":
            typing = obj.get("typing")
            if not isinstance(typing, bool):
                raise BadRequest("'typing' must be true or false")
            return Typing(_room(obj), typing, ref)
        if kind == "read":
            seq = _optional_seq(obj, "seq")
            if seq is None:
                raise BadRequest("missing field 'seq'")
            return Read(_room(obj), seq, ref)
        if kind == "delete":
            return Delete(_room(obj), _seq(obj), ref)
        if kind == "edit":
            return Edit(_room(obj), _seq(obj), _text(obj, max_text_chars), ref)
        if kind == "react":
            on = obj.get("on")
            if not isinstance(on, bool):
                raise BadRequest("'on' must be true or false")
            return React(_room(obj), _seq(obj), _emoji(obj), on, ref)
    except ChatError as exc:
        # Attach the client's reference so it can show the error beside what caused it.
        exc.ref = exc.ref or ref or _safe_client_id(obj)
        raise
    raise UnknownType(f"unknown frame type {kind[:32]!r}", ref=ref)


def _room(obj: Mapping[str, Any]) -> str:
    room = obj.get("room")
    if not isinstance(room, str):
        raise BadRequest("missing field 'room'")
    if not ROOM_NAME_RE.match(room):
        raise BadRequest("'room' is not a valid room name")
    return room


def _text(obj: Mapping[str, Any], max_chars: int) -> str:
    text = obj.get("text")
    if not isinstance(text, str):
        raise BadRequest("missing field 'text'")
    if not text.strip():
        raise BadRequest("'text' is empty")
    if len(text) > max_chars:
        raise TooLong(f"'text' is longer than {max_chars} characters")
    return text


def _caption(obj: Mapping[str, Any], max_chars: int) -> str:
    """The text of a message with files: optional (empty when only whitespace)."""
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    if len(text) > max_chars:
        raise TooLong(f"'text' is longer than {max_chars} characters")
    return text if text.strip() else ""


def _files(obj: Mapping[str, Any], max_files: int) -> tuple[str, ...]:
    value = obj.get("files")
    if value is None or value == []:
        return ()
    if not isinstance(value, list) or not all(
        isinstance(f, str) and FILE_ID_RE.fullmatch(f) for f in value
    ):
        raise BadRequest("'files' must be a list of upload ids")
    if len(value) > max_files:
        raise BadRequest(f"At most {max_files} files per message.")
    return tuple(dict.fromkeys(value))


def _seq(obj: Mapping[str, Any]) -> int:
    seq = _optional_seq(obj, "seq")
    if seq is None:
        raise BadRequest("missing field 'seq'")
    return seq


def _emoji(obj: Mapping[str, Any]) -> str:
    value = obj.get("emoji")
    if not isinstance(value, str):
        raise BadRequest("missing field 'emoji'")
    # The `emoji` package knows Unicode's emoji list, sequences included (flags, skin tones,
    # ZWJ families): exactly one of them, nothing around it.
    if not 0 < len(value) <= MAX_EMOJI_CHARS or not emoji.is_emoji(value):
        raise BadRequest("'emoji' must be a single emoji")
    return value


# Every seq a client names is below this: well inside the database's 64-bit integers.
MAX_SEQ = 1 << 62


def seq_from_text(text: str) -> int | None:
    """A seq written in a query string or a form field, or None if it is not one (ASCII digits
    only: `str.isdigit` also takes '²', which `int` refuses; and short enough for `int`)."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SEQ)):
        return None
    value = int(text)
    return value if value < MAX_SEQ else None


def _optional_seq(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; `true` is not a sequence number.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= MAX_SEQ:
        raise BadRequest(f"'{key}' must be a non-negative integer")
    return value


def _optional_str(obj: Mapping[str, Any], key: str, ref: str | None) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_CLIENT_ID:
        raise BadRequest(f"'{key}' must be a string of 1 to {MAX_CLIENT_ID} characters", ref=ref)
    return value


def _safe_client_id(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("client_id")
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID else None


# --- server frames: each built once and sent as the same string to every recipient ---


def _dump(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def file_dict(info: FileInfo) -> dict[str, Any]:
    """A file as a client shows it: where to download it and, for an image, its thumbnail."""
    name = quote(info.name, safe="")
    return {
        "id": info.id,
        "name": info.name,
        "size": info.size,
        "type": info.type,
        "url": f"/files/{info.id}/{name}",
        "thumb": f"/files/{info.id}/thumb/{name}" if info.is_image else None,
        "width": info.width,
        "height": info.height,
    }


def message_dict(message: Message) -> dict[str, Any]:
    """A message as a client shows it; what a plain message lacks is left out."""
    out: dict[str, Any] = {
        "room": message.room,
        "seq": message.seq,
        "user": message.user,
        "text": message.text,
        "ts": message.ts,
    }
    if message.client_id is not None:
        out["client_id"] = message.client_id
    # Its formatting as sanitized markup (chat.formatting); absent when it has none.
    html = to_html(message.text)
    if html is not None:
        out["html"] = html
    if message.deleted:
        out["deleted"] = True
    if message.edited_at is not None:
        out["edited_at"] = message.edited_at
    if message.reply_to is not None:
        out["reply_to"] = message.reply_to
        quote = message.reply
        out["reply"] = (
            None
            if quote is None
            else {"user": quote.user, "text": quote.text, "deleted": quote.deleted}
        )
    if message.reactions:
        out["reactions"] = [{"emoji": r.emoji, "users": list(r.users)} for r in message.reactions]
    if message.files:
        out["files"] = [file_dict(f) for f in message.files]
    return out


def chat_frame(message: Message) -> str:
    return _dump({"type": "chat", **message_dict(message)})


def history_frame(room: str, messages: Iterable[Message], position: Position) -> str:
    """The messages read at `position`: its `seq` is the room's last seq as of this history (the
    tail may be deleted messages), `complete` whether nothing the client may see is missing, and
    `reset` that the client is to drop what it shows and show these messages instead (its
    `since` was beyond the room's last seq)."""
    frame: dict[str, Any] = {
        "type": "history",
        "room": room,
        "messages": [message_dict(m) for m in messages],
        "complete": position.complete,
        "last_seq": position.seq,
    }
    if position.reset:
        frame["reset"] = True
    return _dump(frame)


def presence_frame(
    room: str,
    users: Iterable[str],
    read: Mapping[str, int] | None = None,
    *,
    count: int | None = None,
) -> str:
    """Who is in the room (`count` people, of whom `users` are listed); with `read`, everyone's
    read marker (the page's "seen by N")."""
    listed = sorted(users)
    frame: dict[str, Any] = {"type": "presence", "room": room, "users": listed}
    frame["count"] = len(listed) if count is None else count
    if read is not None:
        frame["read"] = dict(read)
    return _dump(frame)


def membership_frame(kind: str, room: str, user: str) -> str:
    """`join` or `leave`: a person (not a tab) entered or left the room."""
    return _dump({"type": kind, "room": room, "user": user})


def typing_frame(room: str, user: str, typing: bool) -> str:
    return _dump({"type": "typing", "room": room, "user": user, "typing": typing})


def level_frame(room: str, level: str) -> str:
    """`level`: the reader's notification level of `room` is now `level` (set in another tab,
    say), on every socket of theirs."""
    return _dump({"type": "level", "room": room, "level": level})


def receipt_frame(room: str, user: str, seq: int) -> str:
    return _dump({"type": "receipt", "room": room, "user": user, "seq": seq})


def update_frame(message: Message) -> str:
    """A change to a kept message (edit, deletion, reaction): `seq` is the change's own seq in
    the room (gap detection covers it), `message` the message's whole state as it now stands."""
    assert message.changed is not None
    return _dump(
        {
            "type": "update",
            "room": message.room,
            "seq": message.changed,
            "message": message_dict(message),
        }
    )


def error_frame(error: ChatError) -> str:
    frame: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
    if error.ref is not None:
        frame["ref"] = error.ref
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    return _dump(frame)
