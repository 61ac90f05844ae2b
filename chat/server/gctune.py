"""Garbage collection tuned for a server that keeps thousands of connections open.

With CPython's defaults (a young collection every 700 container allocations), a busy server
promotes the objects of every message in flight into the old generation, and full collections
come every few seconds. Each one walks every object of every open socket: with 1000 sockets,
100-117 ms during which nothing is read, stored or written (measured with
`python -m bench --only ingest`, which put the ack p99 at 218 ms, and gc.callbacks timing).

So once the application has started, what exists by then (modules, templates, compiled
statements, the app itself: never garbage) is moved out of the collector's sight with
`gc.freeze()`, and young collections run every 10,000 allocations, so the short-lived objects of
messages are mostly gone before one runs and full collections become rare. Objects made later are
collected as usual; nothing is disabled.
"""

from __future__ import annotations

import gc

from aiohttp import web

THRESHOLDS = (10_000, 10, 10)


async def tune_after_startup(app: web.Application) -> None:
    """An on_startup handler for the serving process (tests run many apps in one process and
    keep the defaults)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
