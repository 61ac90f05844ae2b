"""`create_app(settings)`: wires the pieces together and nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import aiohttp_jinja2
import jinja2
import markupsafe
import orjson
from aiohttp import WSCloseCode, web
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from chat import formatting
from chat.conversation import Conversations
from chat.fanout.broker import LocalBroker
from chat.fanout.presence import LocalPresence
from chat.keys import (
    BROKER,
    CONVERSATIONS,
    HEADROOM,
    HUB,
    IMAGE_WORK,
    LIMITS,
    METRICS,
    NOTICE_SINKS,
    PASSWORDS,
    PRESENCE,
    SETTINGS,
    STORE,
    VAPID,
    Limits,
)
from chat.live import protocol
from chat.live.hub import Hub
from chat.models import Message
from chat.notify.tabs import TabSink
from chat.notify.vapid import Vapid
from chat.notify.webpush import webpush_ctx
from chat.server import logs
from chat.server.descriptors import Headroom
from chat.server.upkeep import upkeep_ctx
from chat.settings import PROJECT_ROOT, Settings
from chat.storage.store import Store
from chat.web import (
    account,
    auth,
    clientip,
    direct,
    files,
    login,
    notifications,
    ops,
    pages,
    polls,
    push,
    socket,
)
from chat.web.metrics import Metrics
from chat.web.middlewares import error_pages, hide_server_version, security_headers
from chat.web.passwords import PasswordHasher

log = logging.getLogger(__name__)

TEMPLATES_DIR = PROJECT_ROOT / "templates"
STATIC_DIR = PROJECT_ROOT / "static"


def create_app(settings: Settings) -> web.Application:
    # The largest request body (the forms'); BODY_TIMEOUT_SECONDS bounds how long it may take.
    app = web.Application(client_max_size=settings.max_form_bytes)
    app[SETTINGS] = settings
    app[HUB] = Hub()
    app[METRICS] = Metrics(app[HUB])
    app[HEADROOM] = Headroom(settings.fd_reserve)
    app[LIMITS] = Limits.from_settings(settings)
    app[IMAGE_WORK] = asyncio.Semaphore(settings.images_in_flight)
    app[VAPID] = Vapid(settings.vapid_private_key, settings.vapid_subject)
    app[PASSWORDS] = PasswordHasher(
        time_cost=settings.password_time_cost,
        memory_kib=settings.password_memory_kib,
        in_flight=settings.password_hashes_in_flight,
        queue=settings.password_hash_queue,
    )

    # Order matters: the session wraps the error pages (so they can show who is logged in), and
    # the CSRF check needs the session.
    storage = EncryptedCookieStorage(
        settings.secret_key,
        cookie_name="chat_session",
        max_age=settings.session_max_age,
        httponly=True,
        samesite="Lax",
        secure=settings.cookie_secure,
    )
    if settings.trusted_proxies:
        # First: everything after it, limits included, sees the forwarded client's address.
        app.middlewares.append(clientip.real_client(settings.trusted_proxies))
    app.middlewares.extend([auth.sessions(storage), error_pages, auth.csrf_protect])
    hide_server_version()
    logs.quiet_malformed_requests()
    # message_json: a message's state for the page's script, the same dict a socket sends
    # (autoescaped into a data attribute), so the page and a resumed socket draw alike;
    # formatted: its text's sanitized markup (chat.formatting), or "" when it has none.
    filters: dict[str, Callable[..., str]] = {
        "isotime": _isotime,
        "hhmm": _hhmm,
        "message_json": _message_json,
        "formatted": _formatted,
    }
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        filters=filters,
    )
    # Versioned static URLs: a new chat.js is never served from a stale cache.
    env.globals["static"] = lambda path: app.router["static"].url_for(filename=path)
    app.on_response_prepare.append(security_headers)
    app.on_response_prepare.append(_static_caching)

    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(upkeep_ctx)
    app.cleanup_ctx.append(_fanout_ctx)
    app.cleanup_ctx.append(_keep_alive_ctx)
    # The ways people are told of what concerns them (chat.notify): open tabs here.
    tabs = TabSink(app)
    app[NOTICE_SINKS] = (tabs,)
    app.on_startup.append(tabs.started)
    app.cleanup_ctx.append(webpush_ctx)
    app.on_shutdown.append(_close_sockets)

    app.router.add_routes(login.routes)
    app.router.add_routes(account.routes)
    app.router.add_routes(ops.routes)
    app.router.add_routes(pages.routes)
    app.router.add_routes(direct.routes)
    app.router.add_routes(notifications.routes)
    app.router.add_routes(polls.routes)
    app.router.add_routes(socket.routes)
    app.router.add_routes(files.routes)
    app.router.add_routes(push.routes)
    app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    return app


async def _static_caching(request: web.Request, response: web.StreamResponse) -> None:
    """A versioned URL (`?v=`) never changes; a bare one (chat.js importing ./outbox.js) is
    checked with the server on every use, so a new release is never mixed with an old module."""
    if request.path.startswith("/static/") and response.status == 200:
        if "v" in request.query:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        else:
            response.headers["Cache-Control"] = "no-cache"


def _message_json(message: Message) -> str:
    return orjson.dumps(protocol.message_dict(message)).decode()


def _formatted(text: str) -> str:
    html = formatting.to_html(text)
    # Already sanitized (an allowlist of tags and attributes): not to be escaped again.
    return "" if html is None else markupsafe.Markup(html)  # noqa: S704


def _isotime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _hhmm(ms: int) -> str:
    # Shown without JavaScript; chat.js rewrites it in the reader's local time.
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M UTC")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[STORE] = await Store.open(settings.database_url, history_limit=settings.history_limit)
    log.info("database ready: %s", _redacted(settings.database_url))
    yield
    await app[STORE].close()


async def _fanout_ctx(app: web.Application) -> AsyncIterator[None]:
    """Broker and presence: in-process, or on Redis when REDIS_URL is set; then the chat use
    case over the backends chosen (this is the one place that chooses them)."""
    settings = app[SETTINGS]
    hub = app[HUB]
    if settings.redis_url is None:
        app[BROKER] = LocalBroker(hub)
        app[PRESENCE] = LocalPresence(hub, settings.node_id)
        app[CONVERSATIONS] = Conversations(app)
        yield
        await app[CONVERSATIONS].notifier.close()
        return
    # Imported here: redis-py is only needed by deployments that set REDIS_URL.
    from chat.fanout.redis_broker import RedisBroker
    from chat.fanout.redis_presence import RedisPresence

    # Rooms spread over every server REDIS_URL lists; presence leases on the first (the
    # broker's `redis`), where every node reads them all at once.
    broker = RedisBroker(hub, app[STORE], settings)
    presence = RedisPresence(hub, settings, broker.redis, broker.origin)
    app[METRICS].registry.register(broker.collector())
    # Neither waits for Redis: a node starts (and serves its own users) while Redis is down.
    await broker.start()
    await presence.start()
    app[BROKER] = broker
    app[PRESENCE] = presence
    app[CONVERSATIONS] = Conversations(app)
    log.info(
        "fan-out and presence on redis %s as node %s",
        ",".join(_redacted_redis(url) for url in settings.redis_urls),
        settings.node_id,
    )
    try:
        yield
    finally:
        await app[CONVERSATIONS].notifier.close()
        await presence.stop()
        await broker.stop()  # closes the clients, the first one after presence is done with it


async def _keep_alive_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(
        app[HUB].keep_alive(app[SETTINGS].heartbeat_seconds), name="chat-keep-alive"
    )
    yield
    task.cancel()
    # wait() rather than await: the task's own CancelledError is expected, ours is not.
    await asyncio.wait([task])


async def _close_sockets(app: web.Application) -> None:
    hub = app[HUB]
    if len(hub):
        log.info("closing %d sockets for shutdown", len(hub))
    await hub.close_all(WSCloseCode.GOING_AWAY, "server shutting down")


def _redacted_redis(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***")))


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
