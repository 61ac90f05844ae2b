"""One process's ceiling: N authenticated, joined, idle connections, then a broadcast to a room of
up to `ceiling_room` of them. See bench/README.md.

One loopback source address gives a client at most the ephemeral port range (about 28,000 ports)
towards one server port, so the generator spreads its sockets over 127.0.0.2, 127.0.0.3, ...
(all of 127.0.0.0/8 is loopback on Linux). Both sides need an open-file limit above N: the
generator raises its own (soft and, when it may, hard) before it starts the server, which
inherits it; the server raises its soft limit to the hard one itself, and its limit in force is
read back from /proc/<pid>/limits.
"""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

from bench.measure import Window
from bench.scenarios import Shape, make_text, quiesce
from bench.server import HOST, Server, login_all, rss_bytes
from bench.wsclient import Closed, WSClient, connect

TABS_PER_ACCOUNT = 50
OTHER_ROOMS = 100
MESSAGES = 3  # broadcasts to the big room, one after another
BROADCAST_TIMEOUT = 60.0


def raise_own_limit(wanted: int) -> int:
    """The generator's RLIMIT_NOFILE up to `wanted` (the hard limit too, when this process may);
    returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    infinite = hard == resource.RLIM_INFINITY
    if not infinite and hard < wanted:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, nr_open),) * 2)
        except (OSError, ValueError):
            pass  # not privileged: the hard limit stays, reported below
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard or hard == resource.RLIM_INFINITY:
        target = wanted if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def most_allowed(wanted: int) -> int:
    """How many connections of `wanted` this process's open-file limit lets it hold (the
    server is started with the same limit), leaving room for everything else."""
    return max(0, min(wanted, raise_own_limit(wanted + 1000) - 1000))


def open_files_limit(pid: int) -> int | None:
    """The soft open-file limit of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None


def source_of(i: int, per_source: int) -> str:
    return f"127.0.0.{2 + i // per_source}"


async def ceiling(shape: Shape) -> dict[str, Any]:
    """`shape.ceiling` idle joined connections in one process: RSS per connection, time to
    connect them all, and the time until every member of a room of `ceiling_room` has a
    message."""
    n = shape.ceiling
    room_n = min(n, shape.ceiling_room)
    per_source = shape.ceiling_per_source
    if 2 + (n - 1) // per_source > 254:
        raise ValueError(f"ceiling: at most {253 * per_source} connections")
    gen_limit = raise_own_limit(n + 1000)
    if gen_limit < n + 100:
        raise RuntimeError(
            f"ceiling {n}: the generator may open only {gen_limit} files (hard limit); "
            "raise it (ulimit -Hn, LimitNOFILE) or ask for fewer with --ceiling"
        )
    accounts = max(1, -(-n // TABS_PER_ACCOUNT))
    others = [f"ceil{r}" for r in range(OTHER_ROOMS)]
    rooms = ["general" if i < room_n else others[i % OTHER_ROOMS] for i in range(n)]
    env = {"MAX_CONNECTIONS_PER_USER": str(TABS_PER_ACCOUNT)}
    async with Server("chat", extra_env=env) as server:
        await server.prepare(accounts, others)
        await server.start()
        server_limit = open_files_limit(server.pid)
        cookies = await login_all(server.port, accounts)
        await asyncio.sleep(shape.settle / 2)
        rss0 = rss_bytes(server.pid)
        window = Window(server.pid)
        clients: list[WSClient | None] = [None] * n
        failures: list[BaseException] = []
        work = iter(range(n))

        async def worker() -> None:
            for i in work:
                try:
                    c = await connect(
                        HOST, server.port, cookies[i % accounts], source=source_of(i, per_source)
                    )
                    await c.join(rooms[i])
                except (Closed, OSError, TimeoutError) as exc:
                    failures.append(exc)
                    continue
                clients[i] = c

        await asyncio.gather(*(worker() for _ in range(100)))
        connect_s = time.monotonic() - window.t0
        joined = [c for c in clients if c is not None]
        await quiesce(joined, shape.settle)
        await asyncio.sleep(shape.settle)
        rss1 = rss_bytes(server.pid)
        costs = window.stop()
        big = [c for c in clients[:room_n] if c is not None]
        times = await broadcast_times(big) if big else []
        result = {
            "scenario": f"ceiling {n}",
            "server": "chat",
            "clients": n,
            "connected": len(joined),
            "dropped": sum(1 for c in joined if c.closed_fut.done()) + len(failures),
            "first_error": repr(failures[0])[:200] if failures else None,
            "source_addresses": 1 + (n - 1) // per_source,
            "generator_nofile": gen_limit,
            "server_nofile": server_limit,
            "connects_per_s": round(len(joined) / connect_s) if connect_s else 0,
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_after_mib": round(rss1 / 2**20, 1),
            "rss_per_conn_kib": round((rss1 - rss0) / max(1, len(joined)) / 1024, 2),
            "room_members": len(big),
            # Seconds from the send until the last member of the room had it, per message.
            "room_all_have_it_s": times,
            # Seconds until all N were connected and joined (the table's "all in s").
            "all_joined_s": round(connect_s, 2),
            **costs,
        }
        for c in joined:
            c.close()
        return result


async def broadcast_times(big: list[WSClient]) -> list[float | None]:
    """One member of the big room sends MESSAGES messages, each once the last one has arrived
    everywhere; seconds until every member has each (None: not within BROADCAST_TIMEOUT)."""
    for c in big:
        c.measure(probe=False, kernel_stamps=False)
    sender = big[0]
    times: list[float | None] = []
    for k in range(MESSAGES):
        t0 = time.monotonic()
        text = make_text(100, f"ceiling-{k}")
        sender.send_raw(b'{"type":"chat","room":"general","text":"%s"}' % text)
        while sum(1 for c in big if c.delivered > k) < len(big):
            if time.monotonic() - t0 > BROADCAST_TIMEOUT:
                times.append(None)
                return times
            await asyncio.sleep(0.005)
        times.append(round(time.monotonic() - t0, 3))
    return times


def summary(results: list[dict[str, Any]]) -> list[str]:
    """One line per ceiling row: what the table's columns do not hold."""
    return [
        f"{r['scenario']}: {r['connected']} joined in {r['all_joined_s']} s"
        f" ({r['connects_per_s']}/s)"
        f" from {r['source_addresses']} source address(es), {r['rss_per_conn_kib']} KiB each;"
        f" a message to a room of {r['room_members']}: all have it in "
        + ", ".join("-" if t is None else f"{t} s" for t in r["room_all_have_it_s"])
        + f"; open-file limits: generator {r['generator_nofile']}, server {r['server_nofile']}"
        + (
            " (the server's is below N: expect refused upgrades)"
            if r["server_nofile"] is not None and r["server_nofile"] < r["clients"] + 64
            else ""
        )
        for r in results
        if "room_all_have_it_s" in r
    ]
