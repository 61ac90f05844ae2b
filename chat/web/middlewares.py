"""The HTTP edge: domain errors and HTTP errors become rendered pages, in one place; every
response carries the security headers.

A middleware with nothing to do for a request is a plain function that returns the handler's own
coroutine instead of awaiting it: an `async def` middleware would keep a suspended frame for as
long as the handler runs, which for /ws is the socket's whole life, and idle sockets are counted
by the thousand.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable

from aiohttp import web, web_response
from aiohttp.typedefs import Handler

from chat.errors import ChatError, Retryable
from chat.keys import SETTINGS
from chat.web.auth import is_socket
from chat.web.render import render

log = logging.getLogger(__name__)

# No inline script or style anywhere, so the policy can be strict. 'self' covers ws(s): to us.
# The service worker (/sw.js) and the web app manifest are our own files, named explicitly.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; manifest-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

TITLES = {
    400: "Bad request",
    401: "Please log in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
}


async def _error_page(request: web.Request, status: int, message: str) -> web.Response:
    return await render(
        request,
        "error.html",
        {"status": status, "title": TITLES.get(status, "Error"), "message": message},
        status=status,
    )


@web.middleware
def error_pages(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Turn errors into pages rendered from templates; never show a traceback."""
    if is_socket(request):
        # The socket's refusals are plain text before the upgrade, error frames after it.
        return handler(request)
    return _error_pages(request, handler)


async def _error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else ""
        response = await _error_page(request, exc.status, message or exc.reason)
        for header in ("Retry-After", "Allow"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        if exc.headers.get("Connection", "").lower() == "close":
            response.force_close()  # the request's body was not read to its end (chat.web.forms)
        return response
    except Retryable as exc:
        response = await _error_page(request, exc.status, exc.message)
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response
    except ChatError as exc:
        return await _error_page(request, exc.status, exc.message)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return await _error_page(request, 500, "The error was logged. Please try again.")


# Sent only over TLS: a browser that saw https here once never tries plain http again.
HSTS = "max-age=31536000"


# What every response's Server header says: no versions to look up known bugs by.
SERVER = "chat"


def hide_server_version() -> None:
    """aiohttp names itself and Python, with versions, in every response it makes, its own
    refusals of unparsable requests included (which reach no hook of ours): it reads this
    module attribute each time, so that is where the name is set."""
    web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if response.status == 101:
        # A WebSocket upgrade is no document: these headers do nothing there, and the response
        # (with its headers) stays in memory as long as the socket is open.
        return
    public_url = request.app[SETTINGS].public_url
    location = response.headers.get("Location")
    if public_url and location and location.startswith("/") and not location.startswith("//"):
        # Redirects name the site as configured, not as the Host header says.
        response.headers["Location"] = public_url + location
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS)
