"""Durable data: tables (SQLAlchemy Core), the engine, and every query the app makes.

One code path serves SQLite (the embedded default) and PostgreSQL. A room's `last_seq` column is
the sequence counter: bumping it with `UPDATE ... RETURNING` takes the room's row lock, so the
insert that follows in the same transaction gets the next number with no gap and no twin, however
many processes write to the room at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    event,
    false,
    func,
    insert,
    null,
    or_,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from chat.errors import InvalidName, LimitReached, NameTaken, NoSuchRoom
from chat.fastread import FastReads, read_transaction
from chat.models import (
    ROOM_NAME_RE,
    USERNAME_RE,
    USERNAME_RULE,
    HistoryPage,
    Message,
    ModerationEntry,
    Room,
    User,
)

if TYPE_CHECKING:
    from chat.groupcommit import GroupCommit

log = logging.getLogger(__name__)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(32), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", BigInteger, nullable=False),
    Column("session_version", Integer, nullable=False, default=0, server_default="0"),
    Column("banned", Boolean, nullable=False, default=False, server_default=false()),
    # Set by an administrator's password reset: the temporary password must be replaced.
    Column("must_change_password", Boolean, nullable=False, default=False, server_default=false()),
)

rooms = Table(
    "rooms",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("is_private", Boolean, nullable=False, default=False, server_default=false()),
)

messages = Table(
    "messages",
    metadata,
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("text", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("client_id", String(64), nullable=True),
    # Deleted by a moderator: the text is wiped, the row stays so seq accounting stays exact.
    Column("deleted", Boolean, nullable=False, default=False, server_default=false()),
    # A resend with the same client_id from the same user finds the first copy instead.
    UniqueConstraint("room_id", "user_id", "client_id", name="uq_messages_client_id"),
)

# The client_ids of each user's recent messages, kept beyond the rooms' kept history: a resend
# whose original was trimmed meanwhile is still recognised (and acked with its seq), not stored
# a second time. Written in the transaction that stores the message; pruned by age
# (CLIENT_ID_TTL_SECONDS) and count per user (CLIENT_ID_MEMORY) by `Store.forget_client_ids`.
client_ids = Table(
    "client_ids",
    metadata,
    # No foreign keys: a check per stored message, for rows that are pruned by age anyway.
    Column("user_id", Integer, primary_key=True),
    Column("client_id", String(64), primary_key=True),
    Column("room_id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    # The primary key is the table: no second copy of every key in a rowid table.
    sqlite_with_rowid=False,
)

Index("ix_client_ids_ts", client_ids.c.ts)

read_markers = Table(
    "read_markers",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, nullable=False),
)

Index("ix_read_markers_room", read_markers.c.room_id)

room_members = Table(
    "room_members",
    metadata,
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("added_at", BigInteger, nullable=False),
)

Index("ix_room_members_user", room_members.c.user_id)

moderation_log = Table(
    "moderation_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", BigInteger, nullable=False),
    Column("actor", String(32), nullable=False),
    Column("action", String(16), nullable=False),
    Column("target", String(32), nullable=True),
    Column("room", String(32), nullable=True),
    Column("seq", BigInteger, nullable=True),
    Column("detail", String(200), nullable=False, default="", server_default=""),
)

Index("ix_moderation_log_ts", moderation_log.c.ts)

# Usernames are unique without regard to case: "Alice" cannot sit beside "alice".
Index("uq_users_username_lower", func.lower(users.c.username), unique=True)

# Sessions ended by a logout before their cookie expires: a copy of the cookie must not outlive
# the logout. Kept until `expires_at` (ms), when the cookie could no longer be used anyway.
revoked_sessions = Table(
    "revoked_sessions",
    metadata,
    Column("session_id", String(64), primary_key=True),
    Column("expires_at", BigInteger, nullable=False),
)

Index("ix_revoked_sessions_expires_at", revoked_sessions.c.expires_at)

DEFAULT_ROOMS = ("general",)
# pg_advisory_xact_lock key serialising start-up migrations across nodes (any fixed 64-bit int).
MIGRATION_LOCK_KEY = 0x63686174_6D696772  # "chatmigr"

# The reads every upgrade and join makes, built once with named parameters.
# Every request and upgrade: the user, and whether this session was revoked, in one read.
_SESSION_USER = select(
    users,
    select(revoked_sessions.c.session_id)
    .where(revoked_sessions.c.session_id == bindparam("session_id"))
    .exists()
    .label("revoked"),
).where(users.c.id == bindparam("user_id"))
_ROOM_BY_NAME = select(rooms).where(rooms.c.name == bindparam("room"))
_HISTORY = (
    select(
        messages.c.seq,
        messages.c.text,
        messages.c.ts,
        messages.c.client_id,
        messages.c.deleted,
        users.c.username,
    )
    .join(users, users.c.id == messages.c.user_id)
    .where(
        and_(
            messages.c.room_id
            == select(rooms.c.id).where(rooms.c.name == bindparam("room")).scalar_subquery(),
            messages.c.seq > bindparam("after"),
        )
    )
    .order_by(messages.c.seq.desc())
    .limit(bindparam("limit", type_=Integer))
)
# Storing a message: these statements, in one transaction, wherever it is stored (here, one
# message at a time, or in a group commit, which runs them compiled to SQLite SQL by
# `Store.compiled` for a whole batch: one seq bump and one trim per room, one insert of all rows).
_ROOM_ID = select(rooms.c.id).where(rooms.c.name == bindparam("room"))
# A resend's original: in the kept history (with its text), or only remembered (trimmed).
_BY_CLIENT_ID = union_all(
    select(messages.c.seq, messages.c.ts, messages.c.text).where(
        and_(
            messages.c.room_id == bindparam("room_id"),
            messages.c.user_id == bindparam("user_id"),
            messages.c.client_id == bindparam("client_id"),
        )
    ),
    select(client_ids.c.seq, client_ids.c.ts, null().label("text")).where(
        and_(
            client_ids.c.room_id == bindparam("room_id"),
            client_ids.c.user_id == bindparam("user_id"),
            client_ids.c.client_id == bindparam("client_id"),
        )
    ),
)
# Takes `n` seqs at once; the last one is returned.
_NEXT_SEQ = (
    update(rooms)
    .where(rooms.c.id == bindparam("room_id"))
    .values(last_seq=rooms.c.last_seq + bindparam("n", type_=Integer))
    .returning(rooms.c.last_seq)
)
_INSERT_MESSAGE = insert(messages).values(
    room_id=bindparam("room_id"),
    seq=bindparam("seq"),
    user_id=bindparam("user_id"),
    text=bindparam("text"),
    ts=bindparam("ts"),
    client_id=bindparam("client_id"),
    # Explicit: compiled for the group commit's plain sqlite3, no Python-side default would run.
    deleted=False,
)
_REMEMBER_CLIENT_ID = insert(client_ids).values(
    user_id=bindparam("user_id"),
    client_id=bindparam("client_id"),
    room_id=bindparam("room_id"),
    seq=bindparam("seq"),
    ts=bindparam("ts"),
)
# Trim in the same transaction: the room never holds more than the limit.
_TRIM = messages.delete().where(
    and_(messages.c.room_id == bindparam("room_id"), messages.c.seq <= bindparam("upto"))
)
_READ_MARKERS = (
    select(users.c.username, read_markers.c.seq)
    .join(users, users.c.id == read_markers.c.user_id)
    .join(rooms, rooms.c.id == read_markers.c.room_id)
    .where(rooms.c.name == bindparam("room"))
)


@dataclass(frozen=True, slots=True)
class Compiled:
    """A Core statement compiled once to SQLite SQL, for a plain sqlite3 connection (`FastReads`
    and `GroupCommit`): the statement is still written once, with SQLAlchemy."""

    sql: str
    names: tuple[str, ...]  # the named parameters, in the order of the SQL's "?"s
    defaults: dict[str, Any]

    def args(self, params: dict[str, Any]) -> tuple[Any, ...]:
        defaults = self.defaults
        return tuple(params[n] if n in params else defaults[n] for n in self.names)

    def __call__(self, **params: Any) -> tuple[str, tuple[Any, ...]]:
        """(SQL, positional arguments) for `sqlite3.Connection.execute`."""
        return self.sql, self.args(params)

    def rows(self) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        """A fast function from a row's parameters (all of them, defaults included) to its
        positional arguments, for `executemany`."""
        if len(self.names) == 1:
            name = self.names[0]
            return lambda row: (row[name],)
        return operator.itemgetter(*self.names)


@dataclass(frozen=True, slots=True)
class AppendStatements:
    """The statements that store messages, compiled for the group commit's sqlite3 connection."""

    room_id: Compiled
    by_client_id: Compiled
    next_seq: Compiled
    insert: Compiled
    remember: Compiled
    trim: Compiled

    @classmethod
    def compile(cls, compile: Callable[[Any], Compiled]) -> AppendStatements:
        return cls(
            room_id=compile(_ROOM_ID),
            by_client_id=compile(_BY_CLIENT_ID),
            next_seq=compile(_NEXT_SEQ),
            insert=compile(_INSERT_MESSAGE),
            remember=compile(_REMEMBER_CLIENT_ID),
            trim=compile(_TRIM),
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def resent_copy(
    rows: Sequence[Any], room: str, username: str, text: str, client_id: str
) -> Message | None:
    """The stored copy of a resend from the rows of `_BY_CLIENT_ID` (seq, ts, text), or None
    if it is new. A copy only remembered (its message trimmed) has the resend's text: the same
    message, sent again."""
    if not rows:
        return None
    kept = [r for r in rows if r[2] is not None]
    seq, ts, stored = (kept or rows)[0]
    return Message(room, int(seq), username, text if stored is None else stored, ts, client_id)


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        is_admin=bool(row.is_admin),
        password_hash=row.password_hash,
        created_at=row.created_at,
        session_version=int(row.session_version),
        banned=bool(row.banned),
        must_change_password=bool(row.must_change_password),
    )


def _room(row: Any) -> Room:
    return Room(
        id=row.id,
        name=row.name,
        last_seq=row.last_seq,
        created_at=row.created_at,
        is_private=bool(row.is_private),
        created_by=row.created_by,
    )


class Store:
    """Every query the app makes, over one async engine."""

    def __init__(self, engine: AsyncEngine, *, history_limit: int) -> None:
        self.engine = engine
        self.history_limit = history_limit
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer at a time; queueing writers here instead of in SQLite's busy loop
        # keeps latency flat and commit order equal to seq order.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # SQLite on a file: messages are stored by group commit (chat.groupcommit).
        self._group: GroupCommit | None = None
        # ...and the reads every connect makes take one thread hop (chat.fastread).
        self._fast: FastReads | None = None
        self._compiled: dict[Any, Compiled] = {}

    # --- lifecycle ---

    @classmethod
    async def open(cls, database_url: str, *, history_limit: int) -> Store:
        engine = create_engine(database_url)
        store = cls(engine, history_limit=history_limit)
        await store.migrate()
        await store.ensure_default_rooms()
        path = engine.url.database
        if store._write_lock is not None and path and path != ":memory:":
            from chat.groupcommit import GroupCommit

            store._group = GroupCommit(
                path,
                AppendStatements.compile(store.compiled),
                history_limit=history_limit,
                lock=store._write_lock,
            )
            store._fast = FastReads(path)
        return store

    @property
    def group_commit(self) -> GroupCommit | None:
        """SQLite's group commit (None on PostgreSQL or in memory), for a caller that would
        rather hand a message over and be called back than await `append_message`."""
        return self._group

    async def close(self) -> None:
        if self._group is not None:
            await self._group.close()
        if self._fast is not None:
            await self._fast.close()
        await self.engine.dispose()

    async def migrate(self) -> None:
        from chat.migrate import upgrade_to_head

        async with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Nodes starting together take turns; the lock goes with the transaction.
                await conn.execute(
                    sql_text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            await conn.run_sync(upgrade_to_head)

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    # --- users ---

    async def create_user(self, username: str, password_hash: str, *, admin: bool = False) -> User:
        """Create an account; the very first account becomes the admin."""
        if not USERNAME_RE.match(username):
            raise InvalidName(USERNAME_RULE)
        async with self._write() as conn:
            first = (await conn.execute(select(func.count()).select_from(users))).scalar_one() == 0
            try:
                result = await conn.execute(
                    insert(users).values(
                        username=username,
                        password_hash=password_hash,
                        is_admin=admin or first,
                        created_at=now_ms(),
                    )
                )
            except IntegrityError:
                raise NameTaken(f"The username {username!r} is taken.") from None
            user_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
        return _user(row)

    async def user_by_name(self, username: str) -> User | None:
        """The account with this name, whatever its case."""
        query = select(users).where(func.lower(users.c.username) == username.lower())
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _user(row)

    async def session_user(self, user_id: int, session_id: str) -> User | None:
        """The user of a session cookie, or None if there is no such user or that session was
        revoked (a logout): one read, made once per request or upgrade."""
        params = {"user_id": user_id, "session_id": session_id}
        if self._fast is not None:
            row = await self._fast.one(*self.sql(_SESSION_USER, params))
        else:
            async with self.engine.connect() as conn:
                row = (await conn.execute(_SESSION_USER, params)).first()
        return None if row is None or row.revoked else _user(row)

    async def revoke_session(self, session_id: str, expires_at: int) -> None:
        """End one session everywhere, until `expires_at` (ms); forget expired revocations."""
        try:
            async with self._write() as conn:
                await conn.execute(
                    revoked_sessions.delete().where(revoked_sessions.c.expires_at < now_ms())
                )
                await conn.execute(
                    insert(revoked_sessions).values(session_id=session_id, expires_at=expires_at)
                )
        except IntegrityError:
            pass  # revoked already (the same session logged out twice at once)

    async def set_admin(self, user_id: int, admin: bool) -> None:
        async with self._write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(is_admin=admin))

    async def set_password_hash(
        self, user_id: int, password_hash: str, *, temporary: bool = False
    ) -> None:
        """A new password; `temporary` (an administrator's reset) must be changed at the next
        login. Either way, a password set here is the one the user now has."""
        async with self._write() as conn:
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=password_hash, must_change_password=temporary)
            )

    async def bump_session_version(self, user_id: int) -> int:
        """Invalidate every session of the user issued so far; return the new version."""
        async with self._write() as conn:
            version = (
                await conn.execute(
                    update(users)
                    .where(users.c.id == user_id)
                    .values(session_version=users.c.session_version + 1)
                    .returning(users.c.session_version)
                )
            ).scalar_one()
        return int(version)

    async def set_banned(self, user_id: int, banned: bool) -> None:
        async with self._write() as conn:
            await conn.execute(update(users).where(users.c.id == user_id).values(banned=banned))

    async def banned_users(self) -> list[User]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users).where(users.c.banned == True).order_by(users.c.username)  # noqa: E712
                )
            ).all()
        return [_user(r) for r in rows]

    async def has_users(self) -> bool:
        """Whether any account exists (none: the first run, which creates the admin)."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(users.c.id).limit(1))).first() is not None

    async def admin_names(self) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users.c.username)
                    .where(users.c.is_admin == True)  # noqa: E712
                    .order_by(users.c.username)
                )
            ).all()
        return [r.username for r in rows]

    # --- rooms ---

    async def ensure_default_rooms(self) -> None:
        for name in DEFAULT_ROOMS:
            if await self.room_by_name(name) is None:
                # Another process may create it between our look and our insert.
                with contextlib.suppress(NameTaken):
                    await self.create_room(name, creator_id=None)

    async def create_room(
        self,
        name: str,
        *,
        creator_id: int | None,
        private: bool = False,
        max_public: int | None = None,
    ) -> Room:
        """Create a room; with `max_public`, a public one only while there are fewer."""
        if not ROOM_NAME_RE.match(name):
            raise InvalidName(
                "Room names are 1 to 32 lowercase letters, digits, '-' or '_', starting with a "
                "letter or digit."
            )
        async with self._write() as conn:
            if not private and max_public is not None:
                public = (
                    select(func.count()).select_from(rooms).where(rooms.c.is_private == false())
                )
                if (await conn.execute(public)).scalar_one() >= max_public:
                    raise LimitReached(
                        f"This chat already has {max_public} public rooms, the most it allows. "
                        "Create a private room, or ask an administrator."
                    )
            try:
                await conn.execute(
                    insert(rooms).values(
                        name=name,
                        last_seq=0,
                        created_by=creator_id,
                        created_at=now_ms(),
                        is_private=private,
                    )
                )
            except IntegrityError:
                raise NameTaken(f"A room named {name!r} already exists.") from None
            row = (await conn.execute(select(rooms).where(rooms.c.name == name))).one()
            if private and creator_id is not None:
                await conn.execute(
                    insert(room_members).values(
                        room_id=row.id, user_id=creator_id, added_at=now_ms()
                    )
                )
        return _room(row)

    async def room_by_name(self, name: str) -> Room | None:
        params = {"room": name}
        if self._fast is not None:  # every join asks
            row = await self._fast.one(*self.sql(_ROOM_BY_NAME, params))
            return None if row is None else _room(row)
        async with self.engine.connect() as conn:
            row = (await conn.execute(_ROOM_BY_NAME, params)).first()
        return None if row is None else _room(row)

    def compiled(self, query: Any) -> Compiled:
        """A Core query compiled once for this database's dialect (see `Compiled`)."""
        hit = self._compiled.get(query)
        if hit is None:
            compiled = query.compile(dialect=self.engine.dialect)
            # The dialect may add parameters of its own (SQLite: OFFSET with LIMIT).
            hit = self._compiled[query] = Compiled(
                str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params)
            )
        return hit

    def sql(self, query: Any, params: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """A Core query as SQLite SQL and its positional parameters (see `Compiled`)."""
        compiled = self.compiled(query)
        return compiled.sql, compiled.args(params)

    async def list_rooms(self, viewer: User | None = None) -> list[Room]:
        """Every room, or the ones `viewer` may see: public ones and private ones they are in
        (an admin sees all, to moderate them)."""
        query = select(rooms).order_by(rooms.c.name)
        if viewer is not None and not viewer.is_admin:
            mine = select(room_members.c.room_id).where(room_members.c.user_id == viewer.id)
            query = query.where(or_(rooms.c.is_private == False, rooms.c.id.in_(mine)))  # noqa: E712
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_room(r) for r in rows]

    # --- private rooms ---

    async def is_member(self, room: Room, user: User) -> bool:
        async with self.engine.connect() as conn:
            found = (
                await conn.execute(
                    select(room_members.c.user_id).where(
                        and_(room_members.c.room_id == room.id, room_members.c.user_id == user.id)
                    )
                )
            ).first()
        return found is not None

    async def can_enter(self, room: Room, user: User) -> bool:
        """Public rooms are open to all; a private one to its members and the admins."""
        return not room.is_private or user.is_admin or await self.is_member(room, user)

    async def members(self, room: Room) -> list[str]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(users.c.username)
                    .join(room_members, room_members.c.user_id == users.c.id)
                    .where(room_members.c.room_id == room.id)
                    .order_by(users.c.username)
                )
            ).all()
        return [r.username for r in rows]

    async def add_member(self, room: Room, user: User) -> bool:
        """Add a member; False if they already were one."""
        async with self._write() as conn:
            try:
                await conn.execute(
                    insert(room_members).values(room_id=room.id, user_id=user.id, added_at=now_ms())
                )
            except IntegrityError:
                return False
        return True

    async def remove_member(self, room: Room, user: User) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                room_members.delete().where(
                    and_(room_members.c.room_id == room.id, room_members.c.user_id == user.id)
                )
            )
        return bool(result.rowcount)

    # --- messages ---

    async def append_message(
        self, room_name: str, user: User, text: str, client_id: str | None
    ) -> tuple[Message, bool]:
        """Store a message with the room's next seq and trim the room to the history limit.

        Returns the message and whether it is new; a resend (same user, room and client_id)
        returns the stored copy and False, so the caller acks it again without re-broadcasting.
        """
        if self._group is not None:
            return await self._group.append(room_name, user, text, client_id)
        for attempt in range(3):
            try:
                return await self._append_one(room_name, user, text, client_id)
            except IntegrityError:
                if client_id is None or attempt == 2:
                    raise
            # The same message (a resend racing its original) was stored meanwhile; this
            # transaction, seq bump included, was rolled back. Ack the stored copy.
            async with self.engine.connect() as conn:
                room_id = await self._room_id(conn, room_name)
                stored = await self._by_client_id(conn, room_id, room_name, user, text, client_id)
            if stored is not None:
                return stored, False
        raise AssertionError("unreachable")

    async def _append_one(
        self, room_name: str, user: User, text: str, client_id: str | None
    ) -> tuple[Message, bool]:
        async with self._write() as conn:
            room_id = await self._room_id(conn, room_name)
            if client_id is not None:
                stored = await self._by_client_id(conn, room_id, room_name, user, text, client_id)
                if stored is not None:
                    return stored, False
            seq = (await conn.execute(_NEXT_SEQ, {"room_id": room_id, "n": 1})).scalar_one()
            ts = now_ms()
            row = {
                "room_id": room_id,
                "seq": seq,
                "user_id": user.id,
                "text": text,
                "ts": ts,
                "client_id": client_id,
            }
            await conn.execute(_INSERT_MESSAGE, row)
            if client_id is not None:
                await conn.execute(_REMEMBER_CLIENT_ID, row)
            await conn.execute(_TRIM, {"room_id": room_id, "upto": seq - self.history_limit})
        return Message(room_name, seq, user.username, text, ts, client_id), True

    async def _by_client_id(
        self,
        conn: AsyncConnection,
        room_id: int,
        room_name: str,
        user: User,
        text: str,
        client_id: str,
    ) -> Message | None:
        params = {"room_id": room_id, "user_id": user.id, "client_id": client_id}
        rows = (await conn.execute(_BY_CLIENT_ID, params)).all()
        return resent_copy(rows, room_name, user.username, text, client_id)

    async def forget_client_ids(self, *, older_than: int, keep: int, active_since: int) -> int:
        """Prune the remembered client_ids: those stored before `older_than` (ms), and beyond
        the newest `keep` of each user who sent something since `active_since` (ms; only they
        can have gone over). Returns how many were forgotten."""
        over = (
            select(client_ids.c.user_id)
            .where(
                client_ids.c.user_id.in_(
                    select(client_ids.c.user_id).where(client_ids.c.ts >= active_since)
                )
            )
            .group_by(client_ids.c.user_id)
            .having(func.count() > keep)
        )
        async with self.engine.connect() as conn:
            heavy = list((await conn.execute(over)).scalars())
        async with self._write() as conn:
            forgotten = (
                await conn.execute(delete(client_ids).where(client_ids.c.ts < older_than))
            ).rowcount
            for user_id in heavy:
                newest = (
                    select(client_ids.c.ts)
                    .where(client_ids.c.user_id == user_id)
                    .order_by(client_ids.c.ts.desc())
                    .offset(keep - 1)
                    .limit(1)
                    .scalar_subquery()
                )
                forgotten += (
                    await conn.execute(
                        delete(client_ids).where(
                            and_(client_ids.c.user_id == user_id, client_ids.c.ts < newest)
                        )
                    )
                ).rowcount
        return int(forgotten)

    async def last_seqs(self, names: Sequence[str]) -> dict[str, int]:
        """The rooms' last seq in the database (for the position check of chat.sequencer)."""
        if not names:
            return {}
        query = select(rooms.c.name, rooms.c.last_seq).where(rooms.c.name.in_(list(names)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {r.name: int(r.last_seq) for r in rows}

    async def _room_id(self, conn: AsyncConnection, room_name: str) -> int:
        room_id = (await conn.execute(_ROOM_ID, {"room": room_name})).scalar_one_or_none()
        if room_id is None:
            raise NoSuchRoom(f"There is no room named {room_name!r}.")
        return int(room_id)

    async def history(self, room_name: str, since: int | None) -> tuple[list[Message], bool, int]:
        """Messages after `since` (or the whole kept history), whether that is everything the
        client missed, and the room's last seq.

        `complete` is False when `since` reaches further back than what is kept, so the client
        can say so instead of pretending nothing was missed; and when `since` is beyond the
        room's last seq (the database was restored from a backup, or is a replica that lags):
        then the answer is the whole kept history, which the client shows instead of what it
        has (see `reset` in docs/protocol.md).
        """
        after = since or 0
        room_params = {"room": room_name}
        rows_params = {"room": room_name, "after": after, "limit": self.history_limit}
        rows: Sequence[Any]
        if self._fast is not None:  # every join asks: one thread hop, one snapshot
            room_sql = self.sql(_ROOM_BY_NAME, room_params)
            rows_sql = self.sql(_HISTORY, rows_params)
            room, rows = await self._fast.run(
                lambda db: read_transaction(
                    db,
                    lambda db: (db.execute(*room_sql).fetchone(), db.execute(*rows_sql).fetchall()),
                )
            )
        else:
            async with self.engine.connect() as conn:
                room = (await conn.execute(_ROOM_BY_NAME, room_params)).first()
                rows = (await conn.execute(_HISTORY, rows_params)).all()
        if room is None:
            raise NoSuchRoom(f"There is no room named {room_name!r}.")
        rows = list(reversed(rows))
        # A message committed after the room row was read can still be in `rows` (on the
        # PostgreSQL path the two reads are not one snapshot): the bound the hub filters held
        # and live frames with must cover it.
        last_seq = max(int(room.last_seq), rows[-1].seq if rows else 0)
        if after > last_seq:
            # Ahead of the database: what the client holds is not what the room holds.
            return await self.history(room_name, None)
        if after == last_seq:
            return [], True, last_seq
        # Deleted messages still count here: the client missed nothing it is allowed to see.
        complete = bool(rows) and rows[0].seq == after + 1
        found = [
            Message(room_name, r.seq, r.username, r.text, r.ts, r.client_id)
            for r in rows
            if not r.deleted
        ]
        return found, complete, last_seq

    async def history_page(self, room_name: str, before: int | None, limit: int) -> HistoryPage:
        """Up to `limit` kept messages older than `before` (the newest ones when None), oldest
        first: what a room page shows, and what it loads as its reader scrolls up."""
        async with self.engine.connect() as conn:
            room = (await conn.execute(_ROOM_BY_NAME, {"room": room_name})).first()
            if room is None:
                raise NoSuchRoom(f"There is no room named {room_name!r}.")
            bound = messages.c.seq < before if before is not None else true()
            rows = (
                await conn.execute(
                    select(
                        messages.c.seq,
                        messages.c.text,
                        messages.c.ts,
                        messages.c.deleted,
                        users.c.username,
                    )
                    .join(users, users.c.id == messages.c.user_id)
                    .where(and_(messages.c.room_id == room.id, bound))
                    .order_by(messages.c.seq.desc())
                    .limit(limit + 1)  # one more: whether older ones are kept
                )
            ).all()
        older = len(rows) > limit
        rows = list(reversed(rows[:limit]))
        last_seq = max(int(room.last_seq), rows[-1].seq if rows else 0)
        # Where the next older page ends: this page's first row, else where this one began.
        start = before if before is not None else last_seq + 1
        oldest = int(rows[0].seq) if rows else start
        return HistoryPage(
            messages=[
                Message(room_name, r.seq, r.username, r.text, r.ts) for r in rows if not r.deleted
            ],
            older=older,
            # Nothing older is kept, yet the room's first messages are gone: HISTORY_LIMIT.
            forgotten=not older and oldest > 1,
            oldest_seq=oldest,
            last_seq=last_seq,
        )

    async def message_at(self, room_name: str, seq: int) -> Message | None:
        """One kept message (not deleted), e.g. to show it before an admin deletes it."""
        async with self.engine.connect() as conn:
            room_id = await self._room_id(conn, room_name)
            return await self._message_at(conn, room_name, room_id, seq)

    async def _message_at(
        self, conn: AsyncConnection, room_name: str, room_id: int, seq: int
    ) -> Message | None:
        row = (
            await conn.execute(
                select(messages.c.text, messages.c.ts, users.c.username)
                .join(users, users.c.id == messages.c.user_id)
                .where(
                    and_(
                        messages.c.room_id == room_id,
                        messages.c.seq == seq,
                        messages.c.deleted == False,  # noqa: E712
                    )
                )
            )
        ).first()
        return None if row is None else Message(room_name, seq, row.username, row.text, row.ts)

    async def delete_message(self, room_name: str, seq: int) -> Message | None:
        """Wipe a message's text and hide it from history; return it as it was (for the
        moderation log), or None if there is no such message."""
        async with self._write() as conn:
            room_id = await self._room_id(conn, room_name)
            before = await self._message_at(conn, room_name, room_id, seq)
            if before is None:
                return None
            result = await conn.execute(
                update(messages)
                .where(
                    and_(
                        messages.c.room_id == room_id,
                        messages.c.seq == seq,
                        messages.c.deleted == False,  # noqa: E712
                    )
                )
                .values(deleted=True, text="")
            )
        return before if result.rowcount else None

    # --- moderation log ---

    async def log_moderation(
        self,
        actor: str,
        action: str,
        *,
        target: str | None = None,
        room: str | None = None,
        seq: int | None = None,
        detail: str = "",
    ) -> None:
        async with self._write() as conn:
            await conn.execute(
                insert(moderation_log).values(
                    ts=now_ms(),
                    actor=actor,
                    action=action,
                    target=target,
                    room=room,
                    seq=seq,
                    detail=detail[:200],
                )
            )

    async def moderation_entries(self, limit: int = 100) -> list[ModerationEntry]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(moderation_log).order_by(moderation_log.c.id.desc()).limit(limit)
                )
            ).all()
        return [
            ModerationEntry(
                id=r.id,
                ts=r.ts,
                actor=r.actor,
                action=r.action,
                target=r.target,
                room=r.room,
                seq=r.seq,
                detail=r.detail,
            )
            for r in rows
        ]

    # --- read markers ---

    async def mark_read(self, room_name: str, user: User, seq: int) -> int:
        """Move the user's read marker forward (never back); return where it now stands."""
        async with self._write() as conn:
            room = (await conn.execute(select(rooms).where(rooms.c.name == room_name))).first()
            if room is None:
                raise NoSuchRoom(f"There is no room named {room_name!r}.")
            seq = min(seq, int(room.last_seq))
            current = (
                await conn.execute(
                    select(read_markers.c.seq).where(
                        and_(read_markers.c.user_id == user.id, read_markers.c.room_id == room.id)
                    )
                )
            ).scalar_one_or_none()
            if current is None:
                await conn.execute(
                    insert(read_markers).values(user_id=user.id, room_id=room.id, seq=seq)
                )
                return seq
            if seq > current:
                await conn.execute(
                    update(read_markers)
                    .where(
                        and_(read_markers.c.user_id == user.id, read_markers.c.room_id == room.id)
                    )
                    .values(seq=seq)
                )
                return seq
            return int(current)

    async def read_markers(self, room_name: str) -> dict[str, int]:
        params = {"room": room_name}
        rows: Sequence[Any]
        if self._fast is not None:  # every join asks
            sql = self.sql(_READ_MARKERS, params)
            rows = await self._fast.run(lambda db: db.execute(*sql).fetchall())
        else:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(_READ_MARKERS, params)).all()
        return {r.username: int(r.seq) for r in rows}

    async def unread_counts(self, user: User) -> dict[str, int]:
        """Per room, how many messages came after the user's read marker (0 if never read:
        an unopened room is not a wall of unread noise)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(rooms.c.name, rooms.c.last_seq, read_markers.c.seq).join(
                        read_markers,
                        and_(
                            read_markers.c.room_id == rooms.c.id,
                            read_markers.c.user_id == user.id,
                        ),
                    )
                )
            ).all()
        return {r.name: max(0, int(r.last_seq) - int(r.seq)) for r in rows}


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            _create_private(Path(url.database))
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600, like the secret key) before
    SQLite opens it: SQLite creates the -wal and -shm files with the database file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # an existing database keeps the mode its operator gave it
    os.close(fd)


# Every writing connection to the SQLite file, SQLAlchemy's and the group commit's alike.
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()
