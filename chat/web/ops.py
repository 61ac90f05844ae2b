"""Operations endpoints: /healthz (the process answers), /readyz (its database and, when
configured, Redis answer) and /metrics (Prometheus text format, loopback or token only)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from chat.keys import BROKER, METRICS, SETTINGS, STORE
from chat.web.metrics import metrics_allowed

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz", name="readyz")
async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, Callable[[], Awaitable[Any]]] = {"database": app[STORE].ping}
    # The Redis broker may offer ping(); a broker without it has nothing of its own to check.
    broker_ping = getattr(app.get(BROKER), "ping", None)
    if app[SETTINGS].redis_url is not None and callable(broker_ping):
        checks["redis"] = broker_ping
    timeout = app[SETTINGS].ready_timeout
    results = await asyncio.gather(*(_check(name, f, timeout) for name, f in checks.items()))
    report = dict(zip(checks, results, strict=True))
    ready = all(v == "ok" for v in report.values())
    return web.json_response(
        {"status": "ready" if ready else "unavailable", "checks": report},
        status=200 if ready else 503,
    )


async def _check(name: str, probe: Callable[[], Awaitable[Any]], limit: float) -> str:
    try:
        async with asyncio.timeout(limit):
            await probe()
    except TimeoutError:
        log.warning("readiness: %s did not answer in %.1f s", name, limit)
        return "timeout"
    except Exception as exc:  # noqa: BLE001 - any failure of the dependency means "not ready"
        log.warning("readiness: %s failed: %s", name, exc)
        return f"error: {type(exc).__name__}"
    return "ok"


@routes.get("/metrics", name="metrics")
async def metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if not metrics_allowed(request.remote, request.headers.get("Authorization"), token):
        raise web.HTTPForbidden(text="Metrics are served to loopback or with the metrics token.")
    body, content_type = request.app[METRICS].exposition(request.headers.get("Accept", ""))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
