"""Argon2id password hashing, always off the event loop (a hash takes tens of milliseconds)."""

from __future__ import annotations

import asyncio

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class PasswordHasher:
    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=1, type=argon2.Type.ID
        )
        # Verified against when the username does not exist, so a miss costs as long as a hit
        # and response time does not reveal which accounts exist.
        self._decoy = self._hasher.hash("decoy password, never valid")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(password_hash or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
