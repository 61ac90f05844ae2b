"""A browser's side of Web Push for tests: a subscription key pair made as a browser makes it,
and a push service on a loopback port that records what it is sent and answers as told."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import http_ece
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chat.notify.vapid import b64url
from tests.helpers import Client, post_form


@dataclass
class Browser:
    """A subscription's keys, as PushManager.subscribe makes them (RFC 8291, section 2)."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        result: dict[str, Any] = orjson.loads(plain)
        return result

    async def subscribe(self, client: Client, endpoint: str) -> Any:
        return await post_form(
            client,
            "/push/subscribe",
            {"endpoint": endpoint, "p256dh": self.p256dh, "auth": b64url(self.auth)},
            page="/account",
        )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class PushService:
    """Serves POST /push/{name}; each name answers from its own list of (status, headers),
    the last one repeated; every request is recorded."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.arrived = asyncio.Condition()
        self.app = web.Application()
        self.app.router.add_post("/push/{name}", self._push)
        self.server: TestServer | None = None

    def endpoint(self, name: str, *answers: tuple[int, dict[str, str]]) -> str:
        self.answers[name] = list(answers) or [(201, {})]
        assert self.server is not None
        return str(self.server.make_url(f"/push/{name}"))

    async def _push(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.received.append(
            Received(request.path, dict(request.headers), await request.read(), time.monotonic())
        )
        async with self.arrived:
            self.arrived.notify_all()
        queue = self.answers.get(name, [(404, {})])
        status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(status=status, headers=headers)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        async with asyncio.timeout(timeout), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)
        return self.received


async def push_service() -> AsyncIterator[PushService]:
    service = PushService()
    service.server = TestServer(service.app, host="127.0.0.1")
    await service.server.start_server()
    try:
        yield service
    finally:
        await service.server.close()
