"""The tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL. Alembic's migrations in
`migrations/` create them; `migrations/env.py` compares them with this metadata."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)

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
    # A direct conversation: "lo-hi", the two members' user ids; the same room from either side.
    Column("dm_key", String(32), nullable=True),
)

Index("uq_rooms_dm_key", rooms.c.dm_key, unique=True)

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
    # The message this one answers (its seq in the same room), if any.
    Column("reply_to", BigInteger, nullable=True),
    # When its author last edited it (ms), if ever.
    Column("edited_at", BigInteger, nullable=True),
    # The seq of the last event that changed it (edit, deletion, reaction): a `join` with
    # `since` sends the current state of every kept message changed after `since`.
    Column("changed_seq", BigInteger, nullable=True),
    # A resend with the same client_id from the same user finds the first copy instead.
    UniqueConstraint("room_id", "user_id", "client_id", name="uq_messages_client_id"),
)

# Partial: a plain message (never changed) costs its insert no entry here.
Index(
    "ix_messages_changed",
    messages.c.room_id,
    messages.c.changed_seq,
    sqlite_where=messages.c.changed_seq.is_not(None),
    postgresql_where=messages.c.changed_seq.is_not(None),
)

# Who reacted to a message with which emoji. Trimmed with their message (the foreign key).
reactions = Table(
    "reactions",
    metadata,
    Column("room_id", Integer, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("emoji", String(64), primary_key=True),
    Column("ts", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
    ),
)

# Files uploaded to a room (issue 16; docs/architecture.md, "Files"). `seq` is the message that
# carries it, set in the transaction that stores the message; until then only its uploader can
# attach it (upkeep deletes it after UPLOAD_EXPIRY_SECONDS). The foreign key to the message
# cascades: a trimmed message takes its files, and their chunks, with it.
files = Table(
    "files",
    metadata,
    # 128 random bits, url-safe base64 (secrets.token_urlsafe(16)): the URL is not guessable.
    Column("id", String(32), primary_key=True),
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False),
    Column("uploader_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("seq", BigInteger, nullable=True),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("type", String(100), nullable=False),
    Column("width", Integer, nullable=True),
    Column("height", Integer, nullable=True),
    Column("created", BigInteger, nullable=False),
    ForeignKeyConstraint(
        ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
    ),
)

# A message's files (history reads) and the trim's cascade look files up by their message.
Index("ix_files_message", files.c.room_id, files.c.seq)
# A user's stored bytes (the quota), and upkeep's look for uploads never attached.
Index("ix_files_uploader", files.c.uploader_id)
Index("ix_files_created", files.c.created)

# A file's bytes, in chunks: part 0 is the file, part 1 its thumbnail (images only).
file_chunks = Table(
    "file_chunks",
    metadata,
    Column("file_id", String(32), ForeignKey("files.id", ondelete="CASCADE"), primary_key=True),
    Column("part", Integer, primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
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

# How loud each room (or direct conversation) is for a user: "all" (every message), "mentions"
# or "nothing". No row: the default ("mentions" for rooms, "all" for direct conversations).
notification_levels = Table(
    "notification_levels",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("room_id", Integer, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True),
    Column("level", String(8), nullable=False),
)

Index("ix_notification_levels_room", notification_levels.c.room_id)

# Who a message mentions (by name or @here), among those who may read the room: the mention
# counts beside the unread counts. Trimmed with their message (the foreign key).
mentions = Table(
    "mentions",
    metadata,
    Column("room_id", Integer, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    ForeignKeyConstraint(
        ["room_id", "seq"], ["messages.room_id", "messages.seq"], ondelete="CASCADE"
    ),
)

Index("ix_mentions_user", mentions.c.user_id, mentions.c.room_id, mentions.c.seq)

# Web Push: one row per browser that asked to be notified (its push service endpoint is unique:
# the same browser subscribing again replaces its row). chat.storage.push.
push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint", String(1024), nullable=False, unique=True),
    Column("p256dh", String(128), nullable=False),
    Column("auth", String(64), nullable=False),
    Column("label", String(64), nullable=False, default="", server_default=""),
    Column("created_at", BigInteger, nullable=False),
)

Index("ix_push_subscriptions_user", push_subscriptions.c.user_id)

DEFAULT_ROOMS = ("general",)
# pg_advisory_xact_lock key serialising start-up migrations across nodes (any fixed 64-bit int).
MIGRATION_LOCK_KEY = 0x63686174_6D696772  # "chatmigr"
