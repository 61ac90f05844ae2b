"""The `/ws` endpoint: Origin and session checked before the upgrade, then the read loop.

Each client frame goes to the connection's `SocketSession` (chat.conversation), which parses it,
does what it asks, and turns a `ChatError` from anywhere below into an `error` frame, in one
place; the socket stays usable. Only protocol abuse closes it: binary frames (1003), frames over
the size limit (1009, by aiohttp), a send queue that overflows (1013, by the hub).
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, WSMsgType, web

from chat.conversation import SocketSession
from chat.keys import CONVERSATIONS, HEADROOM, HUB, LIMITS, METRICS, PRESENCE, SETTINGS
from chat.live.aiohttp_private import forget_upgrade
from chat.live.connection import Connection
from chat.web.auth import current_user, is_banned, session_id

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

# What ends the read loop (as it ends `async for msg in ws`).
_CLOSED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED})
# When a client refused for want of file descriptors may try again.
OUT_OF_DESCRIPTORS_RETRY_SECONDS = 5


def _fileno(request: web.Request) -> int:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    return -1 if sock is None else int(sock.fileno())


def origin_allowed(request: web.Request) -> bool:
    """Browsers always send Origin on a WebSocket upgrade; a foreign one is a cross-site attempt
    to ride the user's cookie (CSWSH). Clients that are not browsers may omit it."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.rstrip("/")
    settings = request.app[SETTINGS]
    if origin in settings.allowed_origins:
        return True
    if settings.public_url is not None:
        # The site's address is configured: the Host header (which a proxy may rewrite, and a
        # client may choose) is not what an origin is compared with.
        return origin.lower() == settings.public_url
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == request.host.lower()


@routes.get("/ws", name="ws")
async def websocket(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if not origin_allowed(request):
        log.warning("refused /ws upgrade from origin %r", request.headers.get("Origin"))
        raise web.HTTPForbidden(text="This origin may not open a chat socket.")
    user = await current_user(request)
    if user is None:
        if await is_banned(request):
            raise web.HTTPForbidden(text="This account is banned.")
        raise web.HTTPUnauthorized(text="Log in before opening a chat socket.")
    if user.must_change_password:
        raise web.HTTPForbidden(text="Choose a new password on /account first.")
    hub = request.app[HUB]
    if not request.app[HEADROOM].room_for(_fileno(request), len(hub)):
        # Refused while it can still be answered: at the limit itself the kernel would reset
        # the next connections in the handshake, and a database connection could fail. The
        # connection is closed too: kept alive, it would hold its descriptor for the retry.
        refused = web.Response(
            status=503,
            text="The server is at its connection limit; try again shortly.",
            headers={"Retry-After": str(OUT_OF_DESCRIPTORS_RETRY_SECONDS)},
        )
        refused.force_close()
        return refused
    tabs = tuple(hub.of_user(user.id))
    if len(tabs) >= settings.max_connections_per_user:
        request.app[METRICS].rate_limited.labels("connections").inc()
        raise web.HTTPTooManyRequests(
            text=f"At most {settings.max_connections_per_user} open connections per user.",
            headers={"Retry-After": "5"},
        )
    # A person's tabs share one User record rather than each holding its own copy.
    user = next((tab.user for tab in tabs if tab.user == user), user)
    ws = web.WebSocketResponse(
        # Liveness is the hub's (Hub.keep_alive): aiohttp's heartbeat re-arms a timer per
        # socket on every frame received. So pings and pongs come to the read loop below.
        heartbeat=None,
        autoping=False,
        max_msg_size=settings.max_frame_bytes,
        # Compression would cost one deflate per recipient per frame and defeat encode-once.
        compress=False,
        timeout=5.0,
    )
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(text="Expected a WebSocket upgrade.")
    writer = await ws.prepare(request)

    sid = await session_id(request) or ""
    forget_upgrade(request)
    conn = Connection(
        ws,
        user,
        sid,
        settings.send_queue_size,
        # Frames are written straight to the transport (chat.live.hub): framed once per message.
        transport=request.transport,
        drain=writer.drain,
    )
    hub.register(conn)
    socket = SocketSession(request.app[CONVERSATIONS], conn)
    log.info(
        "connection %s opened by %s",
        conn.id,
        user.username,
        extra={"event": "ws_open", "connection": conn.id, "username": user.username},
    )
    try:
        await request.app[PRESENCE].changed()
        # receive() rather than `async for`: one coroutine frame less per idle socket.
        while (msg := await ws.receive()).type not in _CLOSED:
            conn.heard = True
            if msg.type is WSMsgType.TEXT:
                await socket.handle(msg.data)
                if conn.queued > conn.queue_limit // 2:  # checked here: a call less per frame
                    await _let_writer_catch_up(conn, ws)
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"text frames only")
                break
    finally:
        # Synchronous, so it happens even if this handler is being torn down; the leave
        # announcements may await, so they run as a task the hub keeps until it finishes.
        left = hub.unregister(conn)
        hub.spawn(socket.announce_left(left))
        if next(hub.of_user(user.id), None) is None:
            # The typing limit is per user, across their tabs here; with the last one gone
            # its bucket is never needed again (a first tab starts afresh, as every tab did).
            request.app[LIMITS].typing.forget(user.id)
        log.info(
            "connection %s of %s closed (%s)",
            conn.id,
            user.username,
            ws.close_code,
            extra={
                "event": "ws_close",
                "connection": conn.id,
                "username": user.username,
                "code": ws.close_code,
            },
        )
    return ws


async def _let_writer_catch_up(conn: Connection, ws: web.WebSocketResponse) -> None:
    """Backpressure on a client's own input. Frames already buffered are read without ever
    yielding to the writer, so a client that floods (and is answered `rate_limited` each time)
    would overflow its own send queue and be closed with 1013. Reading pauses instead until
    its writer has caught up; TCP then slows the flooder down, and others are not affected."""
    pause = 0.0
    while conn.queued > conn.queue_limit // 2 and not conn.closing and not ws.closed:
        await asyncio.sleep(pause)
        pause = 0.01
