"""A bounded queue worked by a fixed number of tasks: what a sink uses so that `send` never
waits (docs/architecture.md, "Web Push").

When the queue is full the item is dropped, counted, and logged at most once a minute: a push
service that is down must cost the chat path nothing, not even memory without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from prometheus_client import Counter

log = logging.getLogger(__name__)

T = TypeVar("T")
LOG_EVERY_SECONDS = 60.0


class RareWarning:
    """Counts what keeps going wrong (a full queue, a push service that is down) so that it is
    logged at most once every `every` seconds, with how many times since the last line."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self._since = 0
        self._last = -every

    def count(self) -> int | None:
        """Count one more; how many to report now, or None while the last line is too recent."""
        self._since += 1
        now = time.monotonic()
        if now - self._last < self.every:
            return None
        since, self._since, self._last = self._since, 0, now
        return since


class WorkQueue(Generic[T]):
    def __init__(
        self,
        name: str,
        handle: Callable[[T], Awaitable[None]],
        *,
        size: int,
        workers: int,
        dropped: Counter,
    ) -> None:
        self.name = name
        self._handle = handle
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize=size)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self._dropped = dropped
        self._drops = RareWarning()

    def put(self, item: T) -> bool:
        """Queue `item` without waiting; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._dropped.inc()
            dropped = self._drops.count()
            if dropped is not None:
                log.warning(
                    "%s queue full (%d): dropped %d since the last warning",
                    self.name,
                    self._queue.maxsize,
                    dropped,
                    extra={"event": "queue_full", "queue": self.name},
                )
            return False
        return True

    def __len__(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"{self.name}-{i}") for i in range(self._workers)
        ]

    async def stop(self) -> None:
        """Cancel the workers; what is still queued is not sent."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # wait() rather than gather: the tasks' own CancelledError is expected, ours is not.
            await asyncio.wait(self._tasks)
        self._tasks = []

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except Exception:
                log.exception("%s: an item failed", self.name)
            finally:
                self._queue.task_done()

    async def join(self) -> None:
        """Wait until everything queued so far was handled (tests, shutdown)."""
        await self._queue.join()
