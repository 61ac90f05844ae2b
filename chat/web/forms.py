"""Reading a form body: bounded in size (MAX_FORM_BYTES, the app's client_max_size) and in time
(BODY_TIMEOUT_SECONDS), and a body that cannot be decoded is the client's error (400 with a
message, one WARNING line), never a 500 with a traceback.

Every state-changing form is read here first, by the CSRF check; handlers that call
`request.post()` afterwards get the parsed copy aiohttp keeps.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from chat.keys import SETTINGS

log = logging.getLogger(__name__)

# How an undecodable body shows up while aiohttp parses it: bytes that are not in the declared
# charset, a charset Python does not know, broken multipart framing, a body cut off mid-way.
_MALFORMED = (
    UnicodeDecodeError,
    LookupError,
    ValueError,
    AssertionError,
    ClientPayloadError,
    HttpProcessingError,
)


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_timeout_seconds):
            return await request.post()
    except TimeoutError:
        _warn(request, "body too slow")
        raise web.HTTPRequestTimeout(
            text="The request body took too long to arrive.", headers={"Connection": "close"}
        ) from None
    except ConnectionResetError:
        _warn(request, "body cut off")
        raise web.HTTPBadRequest(text="The request body was cut off.") from None
    except asyncio.CancelledError:
        # aiohttp cancels the handler when the client goes away mid-body: worth a line (there
        # is nobody left to answer), and the cancellation goes on.
        _warn(request, "connection closed before the body arrived")
        raise
    except _MALFORMED as exc:
        _warn(request, f"{type(exc).__name__}: {exc}")
        raise web.HTTPBadRequest(
            text="The form could not be read: its body is not valid form data in a known "
            "character set."
        ) from None


def _warn(request: web.Request, why: str) -> None:
    detail = " ".join(why.split())[:200]
    log.warning(
        "unreadable form on %s %s from %s: %s",
        request.method,
        request.path,
        request.remote,
        detail,
        extra={"event": "bad_form", "path": request.path, "remote": request.remote},
    )
