"""Every use of aiohttp's private attributes, in one place: `BaseRequest._state` and `._cache`,
`RequestHandler._parser`, `WebSocketResponse._req`. tests/live/test_aiohttp_private.py fails if
an aiohttp release renames or drops one of them, and setup.cfg pins aiohttp to the releases that
test covers.

Why: an idle socket is counted by the thousand, and its upgrade request lives as long as it
does; what only the upgrade needed is released here. And a socket built without a transport at
hand (a test's, or one closed before it was attached) is still aborted through its request.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def forget_upgrade(request: web.BaseRequest) -> None:
    """Drop what only the upgrade needed. The request lives as long as its socket."""
    # The session and the cached user. dict.clear() also frees the table, which popping the
    # keys one by one (MutableMapping.clear, what `request.clear()` does) would keep.
    request._state.clear()
    # Values parsed from the upgrade request on demand (cookies, host, URL...).
    request._cache.clear()
    # The HTTP parser and its buffers (about 1.7 KiB): once the upgrade is accepted the
    # WebSocket reader gets every byte, but aiohttp only drops the parser when the connection
    # is lost, as this does now.
    protocol = request.protocol
    if getattr(protocol, "_parser", None) is not None:
        protocol._parser = None


def request_transport(ws: web.WebSocketResponse) -> Any:
    """The transport of the request a socket was prepared for, or None."""
    request = ws._req
    return None if request is None else request.transport


def upgrade_leftovers(request: web.BaseRequest) -> list[str]:
    """What `forget_upgrade` releases that `request` still holds (none, once it ran)."""
    held = []
    if request._state:
        held.append("state")
    if request._cache:
        held.append("cache")
    if getattr(request.protocol, "_parser", None) is not None:
        held.append("parser")
    return held
