"""Argon2id password hashing, always off the event loop (a hash takes tens of milliseconds and
tens of megabytes).

The hashes in flight are bounded for the whole process: at most `in_flight` run at once and at
most `queue` wait; anything beyond is refused at once (`Unavailable`, with a Retry-After) rather
than growing a backlog that eats memory and makes every login wait. New hashes (registrations,
password changes) may fill only half the queue, so a flood of them leaves room for logins.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from chat.errors import Unavailable

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# When a refused request may try again: about how long a queue's worth of hashes takes.
BUSY_RETRY_SECONDS = 2.0

T = TypeVar("T")


class PasswordHasher:
    def __init__(
        self, *, time_cost: int, memory_kib: int, in_flight: int = 2, queue: int = 16
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
        )
        # Verified against when the username does not exist, so a miss costs as long as a hit
        # and response time does not reveal which accounts exist.
        self._decoy = self._hasher.hash("decoy password, never valid")
        self._slots = asyncio.Semaphore(in_flight)
        self._queue = queue
        self._waiting = 0

    async def hash(self, password: str) -> str:
        """Hash a new password; `Unavailable` when too many hashes are already waiting."""
        return await self._run(self._hasher.hash, password, room=self._queue // 2)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Check a password; `Unavailable` when the queue is full."""
        return await self._run(self._verify, password_hash, password, room=self._queue)

    async def _run(self, work: Callable[..., T], *args: object, room: int) -> T:
        if self._slots.locked() and self._waiting >= room:
            raise Unavailable(
                "The server is busy checking passwords. Try again in a moment.",
                retry_after=BUSY_RETRY_SECONDS,
            )
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await asyncio.to_thread(work, *args)
        finally:
            self._slots.release()

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(password_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
