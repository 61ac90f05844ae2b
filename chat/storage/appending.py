"""Storing a message, written once: look a resend up, bump the room's seq, insert the message,
remember its client_id, trim the room to the history limit. `store_rows` does it for a batch of
messages inside an open transaction; how the statements run is the engine's (`Run`): through
SQLAlchemy (`CoreRun`, any engine) or compiled to SQLite SQL on a plain sqlite3 connection (the
group commit, chat.storage.sqlite).

Whoever submits a message (`Append`) names who is handed the outcome once its transaction is
over: an object that implements `Committed` (the chat use case, chat.conversation; or the
future of an awaited `Store.append_message`). Storage declares that interface and knows nothing
of sockets, hubs or brokers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy.engine import Connection

from chat.errors import NoSuchFile, NoSuchMessage, NoSuchRoom
from chat.models import FileInfo, Message, Quote
from chat.storage.statements import (
    ATTACH_FILE,
    BY_CLIENT_ID,
    FILE_TO_ATTACH,
    INSERT_MESSAGE,
    NEXT_SEQ,
    ORIGINAL,
    REMEMBER_CLIENT_ID,
    ROOM_ID,
    TRIM,
)

log = logging.getLogger(__name__)

# (the message, whether it is new), or what went wrong.
Outcome = tuple[Message, bool] | Exception


class StoreClosed(Exception):
    """The outcome of an append still queued when the store closed: it was not stored."""


class Committed(Protocol):
    """Who is handed stored messages: called once per transaction with the appends it stored
    (in the order they were submitted) and their outcomes, on the event loop."""

    def committed(self, batch: Sequence[Append], outcomes: Sequence[Outcome]) -> None: ...


@dataclass(slots=True)
class Append:
    """One message to store. `sender` and `ref` are the submitter's, handed back with it."""

    room: str
    user_id: int
    username: str
    text: str
    client_id: str | None
    to: Committed
    sender: Any = None
    ref: Any = None
    reply_to: int | None = None  # the seq of the message this one answers
    files: tuple[str, ...] = ()  # the ids of the uploads it attaches (the uploader's own)


def hand_over(batch: Sequence[Append], outcomes: Sequence[Outcome]) -> None:
    """Hand each run of appends submitted for the same `Committed` to it, in order."""
    start, n = 0, len(batch)
    while start < n:
        to = batch[start].to
        end = start + 1
        while end < n and batch[end].to is to:
            end += 1
        whole = start == 0 and end == n
        try:
            to.committed(
                batch if whole else batch[start:end], outcomes if whole else outcomes[start:end]
            )
        except Exception:  # a bug there must not stop the hand-over to everyone else
            log.exception("handing over stored messages failed")
        start = end


class Run(Protocol):
    """How one engine runs the statements of `store_rows`, inside an open transaction."""

    def room_id(self, room: str) -> int | None: ...

    def by_client_id(self, room_id: int, user_id: int, client_id: str) -> Sequence[Any]: ...

    def next_seq(self, room_id: int, n: int) -> int:
        """Take `n` seqs at once; return the last."""
        ...

    def insert(self, rows: list[dict[str, Any]]) -> None: ...

    def remember(self, rows: list[dict[str, Any]]) -> None: ...

    def original(self, room_id: int, seq: int) -> Any:
        """The kept message `seq` as (username, text, deleted), or None: what a reply quotes."""
        ...

    def trim(self, room_id: int, keep: int) -> None:
        """Delete all but the room's `keep` newest messages."""
        ...

    def file(self, file_id: str) -> Any:
        """An upload as (id, room_id, uploader_id, seq, name, size, type, width, height)."""
        ...

    def attach(self, rows: list[dict[str, Any]]) -> None:
        """Make each upload (`file_id`) its message's (`message_seq`)."""
        ...


def store_rows(
    run: Run, batch: Sequence[Append], history_limit: int, ts: int, *, look_up: bool
) -> list[Outcome]:
    """Store the batch in the open transaction: per room one seq bump for all its new messages
    (seq order is batch order), one insert of every row, and one trim per room; a resend gets
    its stored copy. With `look_up` False, client_ids are not looked up first: the unique
    (room, user, client_id) keys of the messages and of the remembered client_ids then refuse a
    resend (IntegrityError), and the caller stores the batch again with `look_up`."""
    outcomes: list[Outcome | None] = [None] * len(batch)
    fresh: dict[int, list[int]] = {}  # room id -> positions of its new messages
    first: dict[tuple[int, int, str], int] = {}  # a client_id's first position here
    resent: list[tuple[int, int]] = []  # (position, position of the same message here)
    quotes: dict[int, Quote] = {}  # position -> what its reply quotes
    attached: dict[int, tuple[FileInfo, ...]] = {}  # position -> the files it attaches
    claimed: set[str] = set()  # uploads attached by this batch
    for i, item in enumerate(batch):
        room_id = run.room_id(item.room)
        if room_id is None:
            outcomes[i] = NoSuchRoom(f"There is no room named {item.room!r}.")
            continue
        if item.client_id is not None:
            key = (room_id, item.user_id, item.client_id)
            if key in first:
                resent.append((i, first[key]))
                continue
            first[key] = i
            # A message with files is always looked up (they are rare): its resend would find
            # its files attached already and be refused, not acked.
            if look_up or item.files:
                found = resent_copy(
                    run.by_client_id(room_id, item.user_id, item.client_id),
                    item.room,
                    item.username,
                    item.text,
                    item.client_id,
                )
                if found is not None:
                    if item.reply_to is not None:  # the same reply, sent again
                        quote = original_quote(run, room_id, item.reply_to)
                        found = replace(found, reply_to=item.reply_to, reply=quote)
                    if item.files:  # what the first copy attached
                        found = replace(found, files=resent_files(run, item.files, found.seq))
                    outcomes[i] = (found, False)
                    continue
        if item.reply_to is not None:
            # Rare: only a reply costs this look-up. It answers a kept message, or nothing.
            quote = original_quote(run, room_id, item.reply_to)
            if quote is None or quote.deleted:
                outcomes[i] = NoSuchMessage(
                    f"There is no message {item.reply_to} in #{item.room} to reply to."
                )
                continue
            quotes[i] = quote
        if item.files:
            # Rare too: only a message with files looks them up (and attaches them below).
            found_files = attachable(run, room_id, item, claimed)
            if isinstance(found_files, Exception):
                outcomes[i] = found_files
                continue
            attached[i] = found_files
        fresh.setdefault(room_id, []).append(i)
    rows = []
    remembered = []  # the rows of those that have a client_id
    attaching: list[dict[str, Any]] = []  # (file_id, message_seq) of the files attached
    trims = []  # the rooms to trim to the limit, once all the rows are in
    # Rooms in id order: two nodes storing batches for the same rooms take their row locks in
    # the same order (PostgreSQL), so neither waits for the other in a cycle.
    for room_id in sorted(fresh) if len(fresh) > 1 else fresh:
        positions = fresh[room_id]
        last = run.next_seq(room_id, len(positions))
        trims.append(room_id)
        for seq, i in enumerate(positions, last - len(positions) + 1):
            item = batch[i]
            message = Message(item.room, seq, item.username, item.text, ts, item.client_id)
            if item.reply_to is not None:
                message = replace(message, reply_to=item.reply_to, reply=quotes.get(i))
            if item.files:
                message = replace(message, files=attached[i])
                attaching.extend({"file_id": f.id, "message_seq": seq} for f in attached[i])
            outcomes[i] = (message, True)
            row = {
                "room_id": room_id,
                "seq": seq,
                "user_id": item.user_id,
                "text": item.text,
                "ts": ts,
                "client_id": item.client_id,
                "reply_to": item.reply_to,
                "deleted": False,
            }
            rows.append(row)
            if item.client_id is not None:
                remembered.append(row)
    if rows:
        run.insert(rows)
    if attaching:  # after the messages' rows: the files' foreign key names them
        run.attach(attaching)
    if remembered:
        # Refuses (IntegrityError) a resend whose original was trimmed from the history.
        run.remember(remembered)
    for room_id in trims:
        run.trim(room_id, history_limit)
    for i, j in resent:
        stored = outcomes[j]
        outcomes[i] = (stored[0], False) if isinstance(stored, tuple) else stored
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(batch)
    return done


QUOTE_CHARS = 140  # how much of the original a reply's quote carries (the page cuts it to a line)


def quote_text(text: str) -> str:
    return text if len(text) <= QUOTE_CHARS else text[: QUOTE_CHARS - 1] + "…"


def original_quote(run: Run, room_id: int, seq: int) -> Quote | None:
    """What a reply to message `seq` quotes, or None when that is not kept."""
    found = run.original(room_id, seq)
    if found is None:
        return None
    username, text, deleted = found
    return Quote(username, "" if deleted else quote_text(text), bool(deleted))


def file_info(row: Any) -> FileInfo:
    """An upload's row (as `FILE_TO_ATTACH`) as a client shows it."""
    return FileInfo(
        str(row[0]),
        row[4],
        int(row[5]),
        row[6],
        None if row[7] is None else int(row[7]),
        None if row[8] is None else int(row[8]),
    )


def attachable(
    run: Run, room_id: int, item: Append, claimed: set[str]
) -> tuple[FileInfo, ...] | Exception:
    """The uploads a new message attaches, in its order, or why it cannot: each must be its
    sender's own, uploaded to this room, and not attached to any message yet."""
    found = []
    for file_id in dict.fromkeys(item.files):  # the same id twice is the file once
        row = run.file(file_id)
        if (
            row is None
            or int(row[1]) != room_id
            or int(row[2]) != item.user_id
            or row[3] is not None
            or file_id in claimed
        ):
            return NoSuchFile(
                f"There is no upload {file_id[:40]!r} of yours to attach in #{item.room} "
                "(it expired, or is attached already): upload it again."
            )
        found.append(file_info(row))
    claimed.update(f.id for f in found)
    return tuple(found)


def resent_files(run: Run, file_ids: Sequence[str], seq: int) -> tuple[FileInfo, ...]:
    """What a resend's first copy attached."""
    rows = (run.file(f) for f in dict.fromkeys(file_ids))
    return tuple(file_info(r) for r in rows if r is not None and r[3] is not None and r[3] == seq)


def resent_copy(
    rows: Sequence[Any], room: str, username: str, text: str, client_id: str
) -> Message | None:
    """The stored copy of a resend from the rows of `BY_CLIENT_ID` (seq, ts, text), or None
    if it is new. A copy only remembered (its message trimmed) has the resend's text: the same
    message, sent again."""
    if not rows:
        return None
    kept = [r for r in rows if r[2] is not None]
    seq, ts, stored = (kept or rows)[0]
    return Message(room, int(seq), username, text if stored is None else stored, ts, client_id)


class CoreRun:
    """`Run` through SQLAlchemy, on the synchronous side of an async connection (`run_sync`)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def room_id(self, room: str) -> int | None:
        found = self.conn.execute(ROOM_ID, {"room": room}).scalar_one_or_none()
        return None if found is None else int(found)

    def by_client_id(self, room_id: int, user_id: int, client_id: str) -> Sequence[Any]:
        params = {"room_id": room_id, "user_id": user_id, "client_id": client_id}
        return self.conn.execute(BY_CLIENT_ID, params).all()

    def next_seq(self, room_id: int, n: int) -> int:
        return int(self.conn.execute(NEXT_SEQ, {"room_id": room_id, "n": n}).scalar_one())

    def insert(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(INSERT_MESSAGE, rows)

    def remember(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(REMEMBER_CLIENT_ID, rows)

    def original(self, room_id: int, seq: int) -> Any:
        return self.conn.execute(ORIGINAL, {"room_id": room_id, "seq": seq}).first()

    def trim(self, room_id: int, keep: int) -> None:
        self.conn.execute(TRIM, {"room_id": room_id, "skip": keep - 1})

    def file(self, file_id: str) -> Any:
        return self.conn.execute(FILE_TO_ATTACH, {"file_id": file_id}).first()

    def attach(self, rows: list[dict[str, Any]]) -> None:
        self.conn.execute(ATTACH_FILE, rows)


class _Settle:
    """`Committed` for an awaited append: the outcome settles its future (`sender`)."""

    def committed(self, batch: Sequence[Append], outcomes: Sequence[Outcome]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            future: asyncio.Future[tuple[Message, bool]] = item.sender
            if future.done():  # its sender went away meanwhile
                continue
            if isinstance(outcome, StoreClosed):
                future.cancel()
            elif isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)


SETTLE = _Settle()
