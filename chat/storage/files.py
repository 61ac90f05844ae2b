"""Files in the database (docs/architecture.md, "Files"): an upload stored in chunks in one
transaction, a download read a chunk at a time, a user's stored bytes (the quota), and uploads
never attached pruned. Attaching an upload to its message happens where the message is stored
(chat.storage.appending); a trimmed or deleted message takes its files with it (the foreign
key's cascade, or chat.storage.changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from sqlalchemy import and_, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chat.models import FileInfo
from chat.storage.base import StoreBase
from chat.storage.schema import file_chunks, files, rooms, users
from chat.storage.statements import now_ms

# The bytes of one chunk row: a download streams this much at a time.
CHUNK_BYTES = 256 * 1024
FILE, THUMB = 0, 1  # the parts of a file


class _OverQuota(Exception):
    """The upload would take its uploader past the quota (see `save_upload`)."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A stored file, as a download needs it: what it is, where it was posted, by whom."""

    info: FileInfo
    room: str
    uploader_id: int
    seq: int | None  # the message that carries it; None while not attached
    thumb_size: int | None  # an image's thumbnail, in bytes


class FileStore(StoreBase):
    async def save_upload(
        self,
        info: FileInfo,
        *,
        room_id: int,
        uploader_id: int,
        body: IO[bytes],
        thumb: bytes | None,
        quota_bytes: int,
    ) -> bool:
        """Store an upload (not attached yet) and its chunks, in one transaction, unless it
        would take the uploader past `quota_bytes`: then store nothing and return False.

        Checked in the transaction that stores it, so that uploads made at once (several tabs,
        several nodes) cannot each pass a check made before the others were stored: on
        PostgreSQL the uploader's row is locked first; SQLite has one writer at a time, and
        the insert takes it before the sum is read."""
        try:
            async with self._write() as conn:
                await conn.execute(
                    select(users.c.id).where(users.c.id == uploader_id).with_for_update()
                )
                await conn.execute(
                    insert(files).values(
                        id=info.id,
                        room_id=room_id,
                        uploader_id=uploader_id,
                        seq=None,
                        name=info.name,
                        size=info.size,
                        type=info.type,
                        width=info.width,
                        height=info.height,
                        created=now_ms(),
                    )
                )
                if await self._stored_bytes(conn, uploader_id) > quota_bytes:
                    raise _OverQuota  # rolls the transaction back
                body.seek(0)
                idx = 0
                while chunk := body.read(CHUNK_BYTES):
                    await conn.execute(
                        insert(file_chunks).values(file_id=info.id, part=FILE, idx=idx, data=chunk)
                    )
                    idx += 1
                if thumb is not None:
                    for idx, start in enumerate(range(0, len(thumb), CHUNK_BYTES)):
                        await conn.execute(
                            insert(file_chunks).values(
                                file_id=info.id,
                                part=THUMB,
                                idx=idx,
                                data=thumb[start : start + CHUNK_BYTES],
                            )
                        )
        except _OverQuota:
            return False
        return True

    async def stored_file(self, file_id: str) -> StoredFile | None:
        thumb_size = (
            select(func.sum(func.length(file_chunks.c.data)))
            .where(and_(file_chunks.c.file_id == files.c.id, file_chunks.c.part == THUMB))
            .scalar_subquery()
        )
        query = (
            select(files, rooms.c.name.label("room"), thumb_size.label("thumb_size"))
            .join(rooms, rooms.c.id == files.c.room_id)
            .where(files.c.id == file_id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        info = FileInfo(row.id, row.name, int(row.size), row.type, row.width, row.height)
        return StoredFile(
            info,
            row.room,
            int(row.uploader_id),
            None if row.seq is None else int(row.seq),
            None if row.thumb_size is None else int(row.thumb_size),
        )

    async def file_chunk(self, file_id: str, part: int, idx: int) -> bytes | None:
        """One chunk of a file, or None past its end (or when the file went meanwhile)."""
        query = select(file_chunks.c.data).where(
            and_(
                file_chunks.c.file_id == file_id,
                file_chunks.c.part == part,
                file_chunks.c.idx == idx,
            )
        )
        async with self.engine.connect() as conn:
            data = (await conn.execute(query)).scalar_one_or_none()
        return None if data is None else bytes(data)

    async def stored_bytes(self, user_id: int) -> int:
        """What the user's files take (attached or not): the quota counts this."""
        async with self.engine.connect() as conn:
            return await self._stored_bytes(conn, user_id)

    @staticmethod
    async def _stored_bytes(conn: AsyncConnection, user_id: int) -> int:
        query = select(func.coalesce(func.sum(files.c.size), 0)).where(
            files.c.uploader_id == user_id
        )
        return int((await conn.execute(query)).scalar_one())

    async def prune_uploads(self, *, older_than: int) -> int:
        """Delete the uploads never attached to a message, uploaded before `older_than` (ms);
        their chunks go with them. Returns how many."""
        async with self._write() as conn:
            gone = await conn.execute(
                delete(files).where(and_(files.c.seq.is_(None), files.c.created < older_than))
            )
        return int(gone.rowcount)
