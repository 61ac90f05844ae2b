"""The reconnect storm: every client of one room sends `join` at the same instant."""

from __future__ import annotations

import asyncio
import resource
import time
from array import array
from typing import Any

from bench.measure import Window, percentiles
from bench.scenarios import Shape
from bench.server import HOST, Server, login_all
from bench.wsclient import WSClient, connect


async def storm(shape: Shape) -> dict[str, Any]:
    """A reconnect storm: `shape.storm` authenticated clients, connected, all send `join` for
    one room at the same instant (as every page does after a restart); seconds until the last
    one has its history and presence."""
    n = shape.storm
    accounts = max(1, n // 2)
    raise_open_files()
    async with Server("chat") as server:
        await server.prepare(accounts, [])
        await server.start()
        cookies: list[str | None] = list(await login_all(server.port, accounts))
        clients: list[WSClient] = []
        work = iter(range(n))

        async def opener() -> None:
            for i in work:
                clients.append(await connect(HOST, server.port, cookies[i % accounts]))

        await asyncio.gather(*(opener() for _ in range(64)))
        window = Window(server.pid)
        joined: list[float] = []

        async def rejoin(c: WSClient) -> None:
            await c.join("general", within=SCENARIO_JOIN_TIMEOUT)
            joined.append(time.monotonic() - window.t0)

        outcomes = await asyncio.gather(*(rejoin(c) for c in clients), return_exceptions=True)
        costs = window.stop()
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        failed = len(errors)
        for c in clients:
            c.close()
        lat = array("q", (int(t * 1e9) for t in joined))
        return {
            "scenario": "storm",
            "server": "chat",
            "clients": n,
            "all_joined_s": round(max(joined), 3) if joined else None,
            "connects_per_s": round(len(joined) / costs["wall_s"]) if costs["wall_s"] else 0,
            "dropped": failed,
            **percentiles([lat]),
            "server_cpu_ms_per_join": round(costs["server_cpu_s"] / max(1, len(joined)) * 1000, 3),
            "first_error": repr(errors[0])[:200] if errors else None,
            **costs,
        }


# How long one client of a storm may wait for its history before it counts as failed.
SCENARIO_JOIN_TIMEOUT = 120.0


def raise_open_files() -> None:
    """The generator holds every client's socket: its soft open-file limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
