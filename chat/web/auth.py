"""Who is asking: the session cookie, the logged-in user, CSRF.

The session cookie (aiohttp-session, encrypted) holds the user id, a random session id (so a
logout can close exactly that session's sockets on every node), the user's session version at
login (a password change, "log out everywhere" or a ban bumps the version in the database, and
every older cookie stops counting on the next request or upgrade) and the CSRF token. A logout
revokes its session id in the database, so a copy of the cookie taken before it stops counting
too, on every node: the same read that loads the user per request says so (`Store.session_user`).
The pages that log in and out are chat.web.login's.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp_session import (
    STORAGE_KEY,
    AbstractStorage,
    Session,
    get_session,
    new_session,
    session_middleware,
)
from yarl import URL

from chat.keys import STORE
from chat.models import User
from chat.web.forms import read_form

log = logging.getLogger(__name__)

USER_ID = "uid"
SESSION_ID = "sid"
VERSION = "ver"
CSRF = "csrf"
MAY_KEEP_TEMPORARY_PASSWORD = frozenset({"/account", "/account/password"})
WELCOME = "welcome"  # set at registration; the rooms page shows its welcome once
CSRF_FIELD = "csrf_token"
# Uploads (chat.web.files) stream their body: their token comes in a header, not the form.
CSRF_HEADER = "X-CSRF-Token"
_STREAMED_BODY = re.compile(r"/rooms/[^/]+/files")
_USER_CACHE = web.RequestKey("chat.user", object)
_BANNED = web.RequestKey("chat.banned", bool)


async def current_user(request: web.Request) -> User | None:
    """The logged-in user, looked up once per request."""
    if _USER_CACHE in request:
        cached = request[_USER_CACHE]
        assert cached is None or isinstance(cached, User)
        return cached
    session = await get_session(request)
    user_id = session.get(USER_ID)
    sid = session.get(SESSION_ID)
    user = (
        await request.app[STORE].session_user(user_id, sid if isinstance(sid, str) else "")
        if isinstance(user_id, int)
        else None
    )
    if user is not None and user.banned:
        request[_BANNED] = True  # checked first, so the refusal can say why
        user = None
    if user is not None and session.get(VERSION, 0) != user.session_version:
        user = None  # signed out everywhere, or the password changed since this login
    request[_USER_CACHE] = user
    return user


async def is_banned(request: web.Request) -> bool:
    """Whether the session belongs to a banned account (so the refusal can say so)."""
    await current_user(request)
    return bool(request.get(_BANNED, False))


async def require_user(request: web.Request) -> User:
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound(URL("/login").with_query(next=request.rel_url.path_qs))
    if user.must_change_password and request.path not in MAY_KEEP_TEMPORARY_PASSWORD:
        # An administrator reset it: the temporary password is for choosing a new one only.
        raise web.HTTPFound("/account")
    return user


async def require_admin(request: web.Request) -> User:
    user = await require_user(request)
    if not user.is_admin:
        raise web.HTTPForbidden(text="Only administrators can see this page.")
    return user


async def session_id(request: web.Request) -> str | None:
    value = (await get_session(request)).get(SESSION_ID)
    return value if isinstance(value, str) else None


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get(CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF] = token
    return token


def sessions(storage: AbstractStorage) -> Middleware:
    """aiohttp-session's middleware, except on /ws. Around a page it waits for the handler to
    save a changed session into the response's cookie; a socket's session is only read, and
    its 101 can carry no cookie later, so there the storage is all `get_session` needs (and a
    plain function keeps no frame for the socket's life: see chat.web.middlewares)."""
    pages = session_middleware(storage)

    @web.middleware
    def middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if is_socket(request):
            request[STORAGE_KEY] = storage
            return handler(request)
        return pages(request, handler)

    return middleware


@web.middleware
def csrf_protect(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Every state-changing form carries the session's CSRF token; anything else is refused."""
    if request.method in {"POST", "PUT", "PATCH", "DELETE"}:
        if _STREAMED_BODY.fullmatch(request.path):
            return _csrf_header_checked(request, handler)
        return _csrf_checked(request, handler)
    # Safe methods (the /ws upgrade is a GET) go straight through, leaving no frame behind.
    return handler(request)


async def _csrf_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    form = await read_form(request)
    sent = form.get(CSRF_FIELD)
    expected = (await get_session(request)).get(CSRF)
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not hmac.compare_digest(sent, expected)
    ):
        raise web.HTTPForbidden(
            text="The form's security token is missing or out of date. "
            "Go back, reload the page and try again."
        )
    return await handler(request)


async def _csrf_header_checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The token in a header: the body is left unread for the handler to stream."""
    sent = request.headers.get(CSRF_HEADER)
    expected = (await get_session(request)).get(CSRF)
    if (
        sent is None
        or not isinstance(expected, str)
        or not hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise web.HTTPForbidden(
            text="The request's security token is missing or out of date. Reload the page.",
            headers={"Connection": "close"},
        )
    return await handler(request)


async def start_session(request: web.Request, user: User) -> Session:
    # A fresh session on every login: nothing an attacker planted before login survives it.
    session = await new_session(request)
    session[USER_ID] = user.id
    session[SESSION_ID] = secrets.token_urlsafe(16)
    session[VERSION] = user.session_version
    session[CSRF] = secrets.token_urlsafe(32)
    request[_USER_CACHE] = user
    return session


def is_socket(request: web.BaseRequest) -> bool:
    """The WebSocket endpoint: its requests last as long as the socket."""
    return request.path == "/ws"
