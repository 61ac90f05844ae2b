"""The private attributes of aiohttp that chat.live.aiohttp_private relies on are still there
and still what it takes them for. If an aiohttp upgrade fails this, change that module (and the
pin in setup.cfg) before the upgrade."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from chat.live.aiohttp_private import forget_upgrade, request_transport, upgrade_leftovers

SESSION = web.RequestKey("session", str)

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


async def test_forget_upgrade_releases_what_only_the_upgrade_needed(
    aiohttp_client: AiohttpClient,
) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        request[SESSION] = "what a middleware stored"  # lands in request._state
        assert request.host  # parsed on demand, kept in request._cache
        seen["before"] = (
            dict(request._state),
            "host" in request._cache,
            request.protocol is not None and request.protocol._parser is not None,
        )
        # The transport that chat.live.connection aborts a stuck socket through.
        seen["transport"] = request_transport(ws) is request.transport is not None
        seen["leftovers"] = upgrade_leftovers(request)
        forget_upgrade(request)
        seen["left"] = upgrade_leftovers(request)
        seen["after"] = (
            dict(request._state),
            dict(request._cache),
            request.protocol is not None and request.protocol._parser is None,
        )
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        await ws.send_str("done")
    assert seen["before"] == ({SESSION: "what a middleware stored"}, True, True)
    assert seen["transport"] is True
    assert seen["after"] == ({}, {}, True)
    assert seen["leftovers"] == ["state", "cache", "parser"] and seen["left"] == []
    # ...and a socket never prepared has no request.
    assert request_transport(web.WebSocketResponse()) is None
