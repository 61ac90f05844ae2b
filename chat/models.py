"""Plain records passed between the store, the hub and the views."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

# Room and user names appear in URLs, logs and the UI: keep them boring and unambiguous.
ROOM_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$")
USERNAME_RULE = (
    "Usernames are 2 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit."
)


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    is_admin: bool
    password_hash: str
    created_at: int
    # Bumped by a password change or "log out everywhere": a session cookie that carries an
    # older number is no longer honoured.
    session_version: int = 0
    banned: bool = False
    # An administrator reset the password: every page asks for a new one first.
    must_change_password: bool = False


@dataclass(frozen=True, slots=True)
class Room:
    id: int
    name: str
    last_seq: int
    created_at: int
    is_private: bool = False
    created_by: int | None = None
    # A direct conversation between two people ("lo-hi" user ids): two fixed members, listed
    # apart, never invited into.
    dm_key: str | None = None

    @property
    def is_direct(self) -> bool:
        return self.dm_key is not None


@dataclass(frozen=True, slots=True)
class Message:
    room: str
    seq: int
    user: str
    text: str
    ts: int  # milliseconds since the epoch, UTC
    client_id: str | None = None
    # Its state beyond the text (issue 14): every change to it is an event with the room's
    # next seq, and `changed` is the seq of the last one (None: never changed).
    deleted: bool = False
    edited_at: int | None = None
    reply_to: int | None = None
    reply: Quote | None = None  # what `reply_to` said, when it is still kept
    reactions: tuple[Reaction, ...] = ()
    changed: int | None = None
    files: tuple[FileInfo, ...] = ()  # what was attached to it (issue 16)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A file attached to a message (or uploaded and not yet attached): what a client shows.
    `type` was decided from the content; an image (`width`, `height` set) was re-encoded and
    has a thumbnail."""

    id: str
    name: str
    size: int
    type: str
    width: int | None = None
    height: int | None = None

    @property
    def is_image(self) -> bool:
        return self.width is not None


@dataclass(frozen=True, slots=True)
class Quote:
    """The start of the message a reply answers, as it stands."""

    user: str
    text: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on a message and who chose it, in the order they did."""

    emoji: str
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a room stands for a reader, as of one read of the database: the room's last `seq`
    (the highest a reader has been given once it has what came with this position), whether the
    messages read with it reach back to what the reader had (`complete`: nothing it may see is
    missing), and whether the reader is to drop what it shows and show these instead (`reset`:
    it was ahead of the room, whose database went back). Storage reads it, the hub counts from
    it, the sequencer fills gaps up to it, and the protocol sends it in `history` frames."""

    seq: int
    complete: bool = True
    reset: bool = False


class History(NamedTuple):
    """What a join (or a page, or a gap filled) reads: the messages and the room's position."""

    messages: list[Message]
    position: Position


@dataclass(frozen=True, slots=True)
class ModerationEntry:
    """One line of the moderation log: who did what to whom."""

    id: int
    ts: int  # milliseconds since the epoch, UTC
    actor: str
    action: str  # kick, ban, unban, delete, invite, remove
    target: str | None
    room: str | None
    seq: int | None
    detail: str


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a room's kept history, oldest first (see `Store.history_page`)."""

    messages: list[Message]
    older: bool  # older kept messages exist: the page can load them
    forgotten: bool  # nothing older is kept, but earlier messages existed (HISTORY_LIMIT)
    oldest_seq: int  # where the next older page ends (exclusive)
    last_seq: int
