"""Settings: one frozen dataclass, read from the environment once and validated.

A bad value raises `SettingsError` whose message is one line naming the variable and what it
expected; `python -m chat` prints that line and exits, so a typo never starts a half-working server.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chat.environment import (
    Reader,
    SettingsError,
    load_or_create_secret,
    networks,
    public_url,
    redis_urls,
    secret_from,
    tls_files,
)
from chat.notify.settings import PUSH_SERVICES, push_settings

__all__ = ["PROJECT_ROOT", "Settings", "SettingsError"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NODE_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
REDIS_PREFIX_RE = re.compile(r"[A-Za-z0-9:_-]{1,64}")

MAX_INSTANCE_NAME = 40


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str = ""
    redis_url: str | None = None
    # 32 raw bytes: aiohttp-session base64-encodes them into the Fernet key.
    secret_key: bytes = field(default=b"", repr=False)
    allowed_origins: frozenset[str] = frozenset()
    cookie_secure: bool = False
    session_max_age: int = 30 * 24 * 3600
    history_limit: int = 50
    max_frame_bytes: int = 16 * 1024
    max_text_chars: int = 4000
    send_queue_size: int = 256
    heartbeat_seconds: float = 25.0
    chat_rate_per_second: float = 10.0
    chat_burst: int = 20
    typing_rate_per_second: float = 1.0
    typing_burst: int = 5
    # Reactions (added or taken back), per user: a limit of their own, not the chat's.
    reaction_rate_per_second: float = 2.0
    reaction_burst: int = 10
    login_attempts_per_minute: int = 5
    registrations_per_hour: int = 20
    max_connections_per_user: int = 20
    max_rooms_per_connection: int = 50
    # People a presence frame lists; a room with more is not told of each join and leave.
    presence_list_max: int = 200
    # File descriptors kept back from sockets (database, Redis, files, the next accept).
    fd_reserve: int = 64
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    shutdown_timeout: float = 5.0
    node_id: str = field(default_factory=socket.gethostname)
    log_level: str = "INFO"
    log_format: str = "text"
    # Both set: serve https/wss directly (cookies are then Secure unless COOKIE_SECURE says no).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # /metrics is open to loopback; anyone else needs "Authorization: Bearer <token>".
    metrics_token: str | None = field(default=None, repr=False)
    ready_timeout: float = 2.0
    # Several nodes (REDIS_URL set): key/channel prefix, presence lease, reconnect and gap waits.
    redis_prefix: str = "chat"
    presence_ttl_seconds: float = 10.0
    presence_heartbeat_seconds: float = 3.0
    redis_backoff_max_seconds: float = 5.0
    redis_timeout_seconds: float = 1.0
    fanout_gap_seconds: float = 0.5
    publish_queue_size: int = 10000
    # How long a node keeps hearing a room after its last member here left (a reload).
    room_unsubscribe_seconds: float = 5.0
    # Reverse proxies whose X-Forwarded-For / X-Real-IP are believed (chat.web.clientip).
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # The site's own origin as browsers see it: the Origin check and redirects use it.
    public_url: str | None = None
    max_form_bytes: int = 64 * 1024
    body_timeout_seconds: float = 10.0
    password_hashes_in_flight: int = 2
    password_hash_queue: int = 16
    rooms_per_hour: int = 10
    max_public_rooms: int = 1000
    # Several nodes: how often each node compares its rooms' last seq with the database, so a
    # message committed by a node that died before publishing it is delivered anyway.
    position_check_seconds: float = 2.0
    # A resend is recognised by its client_id for this long after the message was stored, for
    # up to this many of the user's latest messages, even after the room's history trimmed it.
    client_id_ttl_seconds: int = 7 * 24 * 3600
    client_id_memory: int = 1000
    # What the pages call this chat: the header, every page title, the first-run page.
    instance_name: str = "chat"
    # Messages a room page renders at once; older kept ones (HISTORY_LIMIT) load on scrolling up.
    history_page_size: int = 50
    # Notifications (issue 15): whether a notice quotes the start of the message (false: only
    # "New message in #room", for privacy), and how many @here one person may send per hour.
    notification_excerpts: bool = True
    here_per_hour: int = 10
    # Files and images in messages (issue 16; docs/architecture.md, "Files").
    max_upload_bytes: int = 10 * 1024 * 1024
    upload_rate_per_minute: int = 20
    upload_quota_bytes: int = 500 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    thumbnail_pixels: int = 400  # the longest side of an image's thumbnail
    upload_expiry_seconds: int = 24 * 3600  # an upload never attached is deleted after this
    max_files_per_message: int = 10
    upload_timeout_seconds: float = 300.0
    images_in_flight: int = 2  # images decoded and re-encoded at once (CPU and memory)
    # Web Push (chat.notify.webpush): the VAPID key (raw P-256 private key, base64url; generated
    # into var/ unless given), who the push services may contact, and the sending limits.
    vapid_private_key: str = field(default="", repr=False)
    vapid_subject: str = "mailto:admin@localhost"
    push_endpoint_hosts: tuple[str, ...] = PUSH_SERVICES
    push_subscriptions_per_user: int = 10
    push_queue_size: int = 10000
    push_senders: int = 4
    push_timeout_seconds: float = 10.0
    push_ttl_seconds: int = 24 * 3600
    push_retries: int = 3
    push_retry_max_seconds: float = 60.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `CHAT_*`/well-known variable; raise `SettingsError` on the first bad one."""
        env = os.environ if environ is None else environ
        reader = Reader(env)
        d = cls()  # the defaults
        var_dir = Path(reader.get("CHAT_VAR_DIR", str, str(PROJECT_ROOT / "var")))
        database_url = reader.get(
            "DATABASE_URL", str, f"sqlite+aiosqlite:///{var_dir / 'chat.sqlite3'}"
        )
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise SettingsError(
                "DATABASE_URL: expected a sqlite+aiosqlite:// or postgresql+asyncpg:// URL, "
                f"got {database_url.split('://', 1)[0]!r}"
            )
        redis_url = env.get("REDIS_URL") or None
        if redis_url is not None:
            redis_urls(redis_url)  # one or several servers, each named once
        # The drivers of the optional engines are extras: say which, instead of an ImportError.
        if redis_url is not None and importlib.util.find_spec("redis") is None:
            raise SettingsError("REDIS_URL: needs the redis package (pip install 'chat[redis]')")
        if database_url.startswith("postgresql") and importlib.util.find_spec("asyncpg") is None:
            raise SettingsError(
                "DATABASE_URL: needs the asyncpg package (pip install 'chat[postgres]')"
            )
        raw_secret = env.get("SECRET_KEY")
        secret = secret_from(raw_secret) if raw_secret else load_or_create_secret(var_dir)
        origins = frozenset(
            o.strip().rstrip("/") for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
        )
        for origin in origins:
            if not origin.startswith(("http://", "https://")):
                raise SettingsError(
                    "ALLOWED_ORIGINS: expected comma-separated http(s)://host[:port], "
                    f"got {origin!r}"
                )
        node_id = reader.get("NODE_ID", str, socket.gethostname())
        if not NODE_ID_RE.fullmatch(node_id):
            raise SettingsError(
                f"NODE_ID: expected 1 to 64 letters, digits, '.', '_' or '-', got {node_id!r}"
            )
        redis_prefix = reader.get("REDIS_PREFIX", str, d.redis_prefix)
        if not REDIS_PREFIX_RE.fullmatch(redis_prefix):
            raise SettingsError(
                "REDIS_PREFIX: expected 1 to 64 letters, digits, ':', '_' or '-', "
                f"got {redis_prefix!r}"
            )
        ttl = reader.number("PRESENCE_TTL_SECONDS", float, d.presence_ttl_seconds, low=1.0)
        beat = reader.number(
            "PRESENCE_HEARTBEAT_SECONDS", float, d.presence_heartbeat_seconds, low=0.1
        )
        if beat * 2 > ttl:
            # One missed heartbeat must not make a live node's users vanish.
            raise SettingsError(
                "PRESENCE_HEARTBEAT_SECONDS: expected at most half of PRESENCE_TTL_SECONDS "
                f"({ttl:g}), got {beat:g}"
            )
        log_level = reader.get("LOG_LEVEL", str, "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR")
        log_format = reader.get("LOG_FORMAT", str, "text").lower()
        if log_format not in {"text", "json"}:
            raise SettingsError("LOG_FORMAT: expected text or json")
        tls_cert, tls_key = tls_files(env)
        instance_name = " ".join(reader.get("INSTANCE_NAME", str, d.instance_name).split())
        if not 1 <= len(instance_name) <= MAX_INSTANCE_NAME:
            raise SettingsError(f"INSTANCE_NAME: expected 1 to {MAX_INSTANCE_NAME} characters")
        metrics_token = env.get("METRICS_TOKEN") or None
        if metrics_token is not None and len(metrics_token) < 16:
            raise SettingsError("METRICS_TOKEN: expected at least 16 characters")
        return cls(
            trusted_proxies=networks(env.get("TRUSTED_PROXIES", "")),
            public_url=public_url(env.get("PUBLIC_URL", "")),
            max_form_bytes=reader.number(
                "MAX_FORM_BYTES", int, d.max_form_bytes, low=1024, high=1 << 26
            ),
            body_timeout_seconds=reader.number(
                "BODY_TIMEOUT_SECONDS", float, d.body_timeout_seconds, low=0.1, high=3600
            ),
            password_hashes_in_flight=reader.number(
                "PASSWORD_HASHES_IN_FLIGHT", int, d.password_hashes_in_flight, low=1, high=256
            ),
            password_hash_queue=reader.number(
                "PASSWORD_HASH_QUEUE", int, d.password_hash_queue, low=0, high=10000
            ),
            rooms_per_hour=reader.number("ROOMS_PER_HOUR", int, d.rooms_per_hour, low=1),
            max_public_rooms=reader.number("MAX_PUBLIC_ROOMS", int, d.max_public_rooms, low=1),
            host=reader.get("CHAT_HOST", str, d.host),
            port=reader.number("CHAT_PORT", int, d.port, low=0, high=65535),
            var_dir=var_dir,
            database_url=database_url,
            redis_url=redis_url,
            secret_key=secret,
            allowed_origins=origins,
            cookie_secure=reader.flag("COOKIE_SECURE", tls_cert is not None),
            session_max_age=reader.number("SESSION_MAX_AGE", int, d.session_max_age, low=60),
            history_limit=reader.number("HISTORY_LIMIT", int, d.history_limit, low=1, high=10000),
            max_frame_bytes=reader.number(
                "MAX_FRAME_BYTES", int, d.max_frame_bytes, low=1024, high=1 << 24
            ),
            max_text_chars=reader.number("MAX_TEXT_CHARS", int, d.max_text_chars, low=1),
            send_queue_size=reader.number("SEND_QUEUE_SIZE", int, d.send_queue_size, low=1),
            heartbeat_seconds=reader.number(
                "HEARTBEAT_SECONDS", float, d.heartbeat_seconds, low=1.0
            ),
            chat_rate_per_second=reader.number(
                "CHAT_RATE_PER_SECOND", float, d.chat_rate_per_second, low=0.01
            ),
            chat_burst=reader.number("CHAT_BURST", int, d.chat_burst, low=1),
            typing_rate_per_second=reader.number(
                "TYPING_RATE_PER_SECOND", float, d.typing_rate_per_second, low=0.01
            ),
            typing_burst=reader.number("TYPING_BURST", int, d.typing_burst, low=1),
            reaction_rate_per_second=reader.number(
                "REACTION_RATE_PER_SECOND", float, d.reaction_rate_per_second, low=0.01
            ),
            reaction_burst=reader.number("REACTION_BURST", int, d.reaction_burst, low=1),
            login_attempts_per_minute=reader.number(
                "LOGIN_ATTEMPTS_PER_MINUTE", int, d.login_attempts_per_minute, low=1
            ),
            registrations_per_hour=reader.number(
                "REGISTRATIONS_PER_HOUR", int, d.registrations_per_hour, low=1
            ),
            max_connections_per_user=reader.number(
                "MAX_CONNECTIONS_PER_USER", int, d.max_connections_per_user, low=1
            ),
            max_rooms_per_connection=reader.number(
                "MAX_ROOMS_PER_CONNECTION", int, d.max_rooms_per_connection, low=1
            ),
            presence_list_max=reader.number(
                "PRESENCE_LIST_MAX", int, d.presence_list_max, low=1, high=10_000
            ),
            fd_reserve=reader.number("FD_RESERVE", int, d.fd_reserve, low=8),
            password_time_cost=reader.number(
                "PASSWORD_TIME_COST", int, d.password_time_cost, low=1
            ),
            password_memory_kib=reader.number(
                "PASSWORD_MEMORY_KIB", int, d.password_memory_kib, low=1024
            ),
            shutdown_timeout=reader.number("SHUTDOWN_TIMEOUT", float, d.shutdown_timeout, low=0.1),
            node_id=node_id,
            log_level=log_level,
            log_format=log_format,
            tls_cert=tls_cert,
            tls_key=tls_key,
            metrics_token=metrics_token,
            ready_timeout=reader.number("READY_TIMEOUT", float, d.ready_timeout, low=0.1),
            redis_prefix=redis_prefix,
            presence_ttl_seconds=ttl,
            presence_heartbeat_seconds=beat,
            redis_backoff_max_seconds=reader.number(
                "REDIS_BACKOFF_MAX_SECONDS", float, d.redis_backoff_max_seconds, low=0.1, high=300
            ),
            redis_timeout_seconds=reader.number(
                "REDIS_TIMEOUT_SECONDS", float, d.redis_timeout_seconds, low=0.05, high=60
            ),
            fanout_gap_seconds=reader.number(
                "FANOUT_GAP_SECONDS", float, d.fanout_gap_seconds, low=0.01, high=60
            ),
            publish_queue_size=reader.number(
                "PUBLISH_QUEUE_SIZE", int, d.publish_queue_size, low=1, high=1_000_000
            ),
            room_unsubscribe_seconds=reader.number(
                "ROOM_UNSUBSCRIBE_SECONDS", float, d.room_unsubscribe_seconds, low=0, high=3600
            ),
            position_check_seconds=reader.number(
                "POSITION_CHECK_SECONDS", float, d.position_check_seconds, low=0.1, high=3600
            ),
            client_id_ttl_seconds=reader.number(
                "CLIENT_ID_TTL_SECONDS", int, d.client_id_ttl_seconds, low=60
            ),
            client_id_memory=reader.number(
                "CLIENT_ID_MEMORY", int, d.client_id_memory, low=1, high=1_000_000
            ),
            instance_name=instance_name,
            history_page_size=reader.number(
                "HISTORY_PAGE_SIZE", int, d.history_page_size, low=10, high=1000
            ),
            notification_excerpts=reader.flag("NOTIFICATION_EXCERPTS", d.notification_excerpts),
            here_per_hour=reader.number("HERE_PER_HOUR", int, d.here_per_hour, low=1),
            max_upload_bytes=reader.number(
                "MAX_UPLOAD_BYTES", int, d.max_upload_bytes, low=1024, high=1 << 31
            ),
            upload_rate_per_minute=reader.number(
                "UPLOAD_RATE_PER_MINUTE", int, d.upload_rate_per_minute, low=1
            ),
            upload_quota_bytes=reader.number(
                "UPLOAD_QUOTA_BYTES", int, d.upload_quota_bytes, low=1024
            ),
            max_image_pixels=reader.number(
                "MAX_IMAGE_PIXELS", int, d.max_image_pixels, low=10_000, high=1 << 31
            ),
            thumbnail_pixels=reader.number(
                "THUMBNAIL_PIXELS", int, d.thumbnail_pixels, low=32, high=2048
            ),
            upload_expiry_seconds=reader.number(
                "UPLOAD_EXPIRY_SECONDS", int, d.upload_expiry_seconds, low=60
            ),
            max_files_per_message=reader.number(
                "MAX_FILES_PER_MESSAGE", int, d.max_files_per_message, low=1, high=100
            ),
            upload_timeout_seconds=reader.number(
                "UPLOAD_TIMEOUT_SECONDS", float, d.upload_timeout_seconds, low=1, high=86400
            ),
            images_in_flight=reader.number(
                "IMAGES_IN_FLIGHT", int, d.images_in_flight, low=1, high=64
            ),
            **push_settings(env, reader, var_dir, d),
        )

    @property
    def redis_urls(self) -> tuple[str, ...]:
        """The Redis servers REDIS_URL lists (rooms are spread over them), or none."""
        return () if self.redis_url is None else redis_urls(self.redis_url)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"
