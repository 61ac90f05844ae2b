"""Uploads and downloads (docs/architecture.md, "Files").

POST /rooms/{name}/files takes one file (multipart field `file`; the CSRF token in the
X-CSRF-Token header, since the body is streamed, never parsed as a form), read a chunk at a
time and refused (413) as soon as it passes MAX_UPLOAD_BYTES or the uploader's quota; its type
is decided from its content (chat.media), an image re-encoded; it is stored, not yet attached,
and its id answered. The browser then sends a `chat` frame naming it (`files`).

GET /files/{id}/{name} (and /files/{id}/thumb/{name}) checks, at that moment, that the reader
may read the room the file was posted in (404 otherwise, as for an id that does not exist) and
streams the chunks; nothing but a re-encoded image is ever shown inline.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import secrets
import tempfile
from typing import IO
from urllib.parse import quote

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from chat import media
from chat.errors import BadRequest, ChatError, NoSuchRoom, Retryable, TooLarge, TooMany
from chat.keys import IMAGE_WORK, LIMITS, METRICS, SETTINGS, STORE
from chat.live.protocol import FILE_ID_RE, file_dict
from chat.models import FileInfo, User
from chat.storage.files import CHUNK_BYTES, FILE, THUMB
from chat.web.auth import current_user, require_user

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

READ_BYTES = 64 * 1024
# What a multipart body adds around its file (boundaries, part headers) at most, for the
# early refusal of a Content-Length that cannot fit.
MULTIPART_OVERHEAD = 16 * 1024
# A file served: never sniffed, never a document that runs anything (a sandboxed origin).
FILE_CSP = "default-src 'none'; sandbox"
_MALFORMED = (ValueError, AssertionError, LookupError, ClientPayloadError, HttpProcessingError)


class _Unauthenticated(ChatError):
    code = "unauthenticated"
    status = 401


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


@routes.post("/rooms/{name}/files")
async def upload(request: web.Request) -> web.StreamResponse:
    try:
        info = await _upload(request)
    except ChatError as exc:
        response = web.json_response({"error": exc.code, "message": exc.message}, status=exc.status)
        if isinstance(exc, Retryable):
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        # The body may be left unread: this connection cannot carry another request.
        response.force_close()
        return response
    return web.json_response({"file": file_dict(info)}, status=201)


async def _upload(request: web.Request) -> FileInfo:
    settings = request.app[SETTINGS]
    store = request.app[STORE]
    user = await current_user(request)
    if user is None:
        raise _Unauthenticated("Log in again to upload files.")
    if user.must_change_password:
        raise BadRequest("Choose a new password first (the account page).")
    name = request.match_info["name"]
    room = await store.room_by_name(name)
    if room is None or not await store.can_enter(room, user):
        raise NoSuchRoom(f"There is no room named {name!r}.")
    wait = request.app[LIMITS].upload.take(user.id)
    if wait:
        request.app[METRICS].rate_limited.labels("upload").inc()
        raise TooMany("You are uploading files too fast.", retry_after=wait)
    limit = settings.max_upload_bytes
    too_big = f"The file is larger than {_mib(limit)}, the most a file may be."
    if (request.content_length or 0) > limit + MULTIPART_OVERHEAD:
        raise TooLarge(too_big)
    used = await store.stored_bytes(user.id)
    room_left = settings.upload_quota_bytes - used
    quota = (
        f"Your files take {_mib(used)} of the {_mib(settings.upload_quota_bytes)} you may "
        "store: delete some of your messages with files first."
    )
    if room_left <= 0:
        raise TooLarge(quota)
    try:
        async with asyncio.timeout(settings.upload_timeout_seconds):
            filename, spool = await _receive(
                request, min(limit, room_left), too_big if limit <= room_left else quota
            )
    except TimeoutError:
        raise BadRequest("The file took too long to arrive.") from None
    except ConnectionResetError:
        raise BadRequest("The upload was cut off.") from None
    except _MALFORMED as exc:
        log.warning("unreadable upload from %s: %r", request.remote, exc)
        raise BadRequest("The upload could not be read (a multipart form is expected).") from None
    with spool:
        async with request.app[IMAGE_WORK]:
            processed = await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(
                    media.process,
                    spool,
                    max_pixels=settings.max_image_pixels,
                    thumb_pixels=settings.thumbnail_pixels,
                ),
            )
        if processed.size > room_left:  # a re-encoded image can come out larger
            raise TooLarge(quota)
        info = FileInfo(
            secrets.token_urlsafe(16),
            media.clean_name(filename, processed.type),
            processed.size,
            processed.type,
            processed.width,
            processed.height,
        )
        with processed.body:
            stored = await store.save_upload(
                info,
                room_id=room.id,
                uploader_id=user.id,
                body=processed.body,
                thumb=processed.thumb,
                quota_bytes=settings.upload_quota_bytes,
            )
        if not stored:  # uploads made at the same time took the room left
            raise TooLarge(quota)
    log.info(
        "%s uploaded %s (%s, %d bytes) to #%s", user.username, info.id, info.type, info.size, name
    )
    return info


async def _receive(request: web.Request, limit: int, too_big: str) -> tuple[str | None, IO[bytes]]:
    """The multipart field `file`, read a chunk at a time into a spool (memory, then a
    temporary file), and refused as soon as it passes `limit` bytes."""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "file":
            await part.release()
            continue
        spool = tempfile.SpooledTemporaryFile(max_size=1 << 20)  # noqa: SIM115 (returned)
        total = 0
        try:
            while chunk := await part.read_chunk(READ_BYTES):
                total += len(chunk)
                if total > limit:
                    raise TooLarge(too_big)
                spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        if not total:
            spool.close()
            raise BadRequest("The file is empty.")
        return browser_name(part.filename), spool
    raise BadRequest("The request carries no file (a multipart field named 'file').")


@routes.get("/files/{id}/{name}")
async def download(request: web.Request) -> web.StreamResponse:
    return await _serve(request, FILE)


@routes.get("/files/{id}/thumb/{name}")
async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _serve(request, THUMB)


async def _serve(request: web.Request, part: int) -> web.StreamResponse:
    user = await require_user(request)
    store = request.app[STORE]
    file_id = request.match_info["id"]
    stored = await store.stored_file(file_id) if FILE_ID_RE.fullmatch(file_id) else None
    if stored is None or not await _may_read(request, user, stored.room):
        raise web.HTTPNotFound(text="There is no such file.")
    if stored.seq is None and stored.uploader_id != user.id:
        raise web.HTTPNotFound(text="There is no such file.")
    info = stored.info
    if part == THUMB:
        if stored.thumb_size is None:
            raise web.HTTPNotFound(text="There is no such file.")
        size, kind = stored.thumb_size, media.THUMB_TYPE
    else:
        size, kind = info.size, info.type
    etag = f'"{info.id}-{part}"'
    headers = {
        "ETag": etag,
        # Private, and asked again every time: who may read it is checked at every read.
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": FILE_CSP,
    }
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = kind
    headers["Content-Disposition"] = disposition(
        "inline" if info.is_image else "attachment", info.name
    )
    response = web.StreamResponse(headers=headers)
    response.content_length = size
    await response.prepare(request)
    for idx in range(math.ceil(size / CHUNK_BYTES)):
        chunk = await store.file_chunk(info.id, part, idx)
        if chunk is None:  # deleted meanwhile: the client sees a download cut short
            response.force_close()
            break
        await response.write(chunk)
    await response.write_eof()
    return response


async def _may_read(request: web.Request, user: User, room_name: str) -> bool:
    store = request.app[STORE]
    room = await store.room_by_name(room_name)
    return room is not None and await store.can_enter(room, user)


def browser_name(name: str | None) -> str | None:
    """A file name as a browser sends it in multipart/form-data (the HTML standard escapes
    '"', CR and LF as %22, %0D and %0A; everything else is UTF-8 as it is)."""
    if name is None:
        return None
    return name.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


def disposition(kind: str, name: str) -> str:
    """A Content-Disposition header (RFC 6266): an ASCII fallback name, and the real one as
    RFC 5987's `filename*`."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%;' else "_" for c in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
