"""`python -m bench.setup_db N room...`: N accounts (one Argon2id hash, shared) and the rooms,
written into the server's fresh database with the server's own Store before it starts."""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import insert

from bench.server import PASSWORD, username
from chat.settings import Settings
from chat.storage.schema import users
from chat.storage.statements import now_ms
from chat.storage.store import Store
from chat.web.passwords import PasswordHasher


async def main(accounts: int, rooms: list[str]) -> None:
    settings = Settings.from_env()
    store = await Store.open(settings.database_url, history_limit=settings.history_limit)
    try:
        hasher = PasswordHasher(
            time_cost=settings.password_time_cost, memory_kib=settings.password_memory_kib
        )
        password_hash = await hasher.hash(PASSWORD)
        rows = [
            {
                "username": username(i),
                "password_hash": password_hash,
                "is_admin": False,
                "created_at": now_ms(),
            }
            for i in range(accounts)
        ]
        async with store.engine.begin() as conn:
            await conn.execute(insert(users), rows)
        for room in rooms:
            if await store.room_by_name(room) is None:
                await store.create_room(room, creator_id=None)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
