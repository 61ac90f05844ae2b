"""Accounts on the pages: register, log in, log out; who is asking; CSRF.

The session cookie (aiohttp-session, encrypted) holds the user id, a random session id (so a
logout can close exactly that session's sockets on every node), the user's session version at
login (a password change, "log out everywhere" or a ban bumps the version in the database, and
every older cookie stops counting on the next request or upgrade) and the CSRF token. A logout
revokes its session id in the database, so a copy of the cookie taken before it stops counting
too, on every node: the same read that loads the user per request says so (`Store.session_user`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Awaitable
from typing import Any

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

from chat.broker import CloseSockets
from chat.errors import ChatError, InvalidName, NameTaken, Unavailable
from chat.forms import read_form
from chat.keys import BROKER, LIMITS, METRICS, PASSWORDS, SETTINGS, STORE
from chat.middlewares import is_socket
from chat.models import USERNAME_RE, USERNAME_RULE, User
from chat.passwords import MAX_PASSWORD, MIN_PASSWORD
from chat.render import render

log = logging.getLogger(__name__)

USER_ID = "uid"
SESSION_ID = "sid"
VERSION = "ver"
CSRF = "csrf"
MAY_KEEP_TEMPORARY_PASSWORD = frozenset({"/account", "/account/password"})
WELCOME = "welcome"  # set at registration; the rooms page shows its welcome once
CSRF_FIELD = "csrf_token"
_USER_CACHE = web.RequestKey("chat.user", object)
_BANNED = web.RequestKey("chat.banned", bool)

routes = web.RouteTableDef()


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
    plain function keeps no frame for the socket's life: see chat.middlewares)."""
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


# Any host: `_safe_next` resolves a target against it to see where a browser would go.
_HERE = URL("http://chat.invalid/")


def _safe_next(value: object) -> str:
    """Only a path on this site: an open redirect would let a phishing link borrow our login
    page. The target is judged as parsed and normalised (yarl drops tabs and newlines, browsers
    read a backslash as a slash), and what is returned is that normalised form, so what was
    checked is what the Location header carries."""
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or value.startswith("//")
        or _unsafe_chars(value)
    ):
        return "/"
    try:
        target = URL(value)
        resolved = _HERE.join(target)
    except ValueError:
        return "/"
    if (
        target.is_absolute()
        or target.scheme
        or resolved.host != _HERE.host
        or resolved.raw_path.startswith("//")
        or resolved.path.startswith("//")
        or _unsafe_chars(resolved.path)
    ):
        return "/"
    return str(resolved.relative())


def _unsafe_chars(text: str) -> bool:
    return "\\" in text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


async def _start_session(request: web.Request, user: User) -> Session:
    # A fresh session on every login: nothing an attacker planted before login survives it.
    session = await new_session(request)
    session[USER_ID] = user.id
    session[SESSION_ID] = secrets.token_urlsafe(16)
    session[VERSION] = user.session_version
    session[CSRF] = secrets.token_urlsafe(32)
    request[_USER_CACHE] = user
    return session


async def _too_many(
    request: web.Request, template: str, ctx: dict[str, Any], wait: float
) -> web.Response:
    retry = max(1, math.ceil(wait))
    ctx["error"] = f"Too many attempts. Try again in {retry} seconds."
    response = await render(request, template, ctx, status=429)
    response.headers["Retry-After"] = str(retry)
    return response


async def _busy(
    request: web.Request, template: str, ctx: dict[str, Any], exc: Unavailable
) -> web.Response:
    """Too many password hashes in flight: refused at once, the form kept."""
    request.app[METRICS].rate_limited.labels("password_hash").inc()
    ctx["error"] = exc.message
    response = await render(request, template, ctx, status=exc.status)
    response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


def login_keys(request: web.Request, username: str) -> tuple[str | None, str]:
    """What the login limits count by: the client's address and the name, whatever its case."""
    return request.remote, username.lower()


async def _first_run(request: web.Request) -> bool:
    """No account yet: the one registered now is the administrator, and the page says so."""
    return not await request.app[STORE].has_users()


@routes.get("/register", name="register")
async def register_page(request: web.Request) -> web.Response:
    return await render(
        request, "register.html", {"username": "", "first_run": await _first_run(request)}
    )


@routes.post("/register")
async def register(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    confirm = str(form.get("confirm", ""))
    ctx: dict[str, Any] = {"username": username, "first_run": await _first_run(request)}
    # Every attempt counts, failed ones too: each may cost a hash, and a failure is as cheap
    # to send as a success.
    wait = request.app[LIMITS].register_by_ip.take(request.remote)
    if wait:
        request.app[METRICS].rate_limited.labels("register").inc()
        return await _too_many(request, "register.html", ctx, wait)
    store = request.app[STORE]
    try:
        # The cheap checks first: a refused name or password costs no hash.
        if not USERNAME_RE.match(username):
            raise InvalidName(USERNAME_RULE)
        if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise ChatError(f"Passwords are {MIN_PASSWORD} to {MAX_PASSWORD} characters long.")
        if password != confirm:
            raise ChatError("The two passwords do not match.")
        if await store.user_by_name(username) is not None:
            raise NameTaken(f"The username {username!r} is taken.")
        user = await store.create_user(username, await request.app[PASSWORDS].hash(password))
    except Unavailable as exc:
        return await _busy(request, "register.html", ctx, exc)
    except ChatError as exc:
        ctx["error"] = exc.message
        return await render(request, "register.html", ctx, status=exc.status)
    if user.is_admin:
        log.warning("first account %r registered: it is the administrator", user.username)
    else:
        log.info("account %r registered", user.username)
    # The rooms page then says once who the administrator is (chat.views.rooms_page).
    (await _start_session(request, user))[WELCOME] = True
    raise web.HTTPFound("/")


@routes.get("/login", name="login")
async def login_page(request: web.Request) -> web.Response:
    return await render(
        request, "login.html", {"username": "", "next": _safe_next(request.query.get("next"))}
    )


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip()
    password = str(form.get("password", ""))
    ctx: dict[str, Any] = {"username": username, "next": _safe_next(form.get("next"))}
    limits = request.app[LIMITS]
    ip, name_key = login_keys(request, username)
    wait = max(limits.login_by_ip.retry_after(ip), limits.login_by_name.retry_after(name_key))
    if wait:
        log.warning(
            "login throttled for %r from %s",
            username,
            ip,
            extra={"event": "login_throttled", "username": username, "remote": ip},
        )
        request.app[METRICS].rate_limited.labels("login").inc()
        return await _too_many(request, "login.html", ctx, wait)
    store = request.app[STORE]
    passwords = request.app[PASSWORDS]
    user = await store.user_by_name(username) if username else None
    try:
        ok = await passwords.verify(user.password_hash if user else None, password)
    except Unavailable as exc:
        return await _busy(request, "login.html", ctx, exc)
    if user is None or not ok:
        # Only failures count against the limits: a user who types right is never throttled.
        limits.login_by_ip.take(ip)
        limits.login_by_name.take(name_key)
        request.app[METRICS].login_failures.inc()
        log.info(
            "failed login for %r from %s",
            username,
            ip,
            extra={"event": "login_failed", "username": username, "remote": ip},
        )
        ctx["error"] = "Wrong username or password."
        return await render(request, "login.html", ctx, status=400)
    if user.banned:
        request.app[METRICS].login_failures.inc()
        log.info("banned account %r refused login", username, extra={"event": "login_banned"})
        ctx["error"] = "This account is banned. Ask an administrator."
        return await render(request, "login.html", ctx, status=403)
    if passwords.needs_rehash(user.password_hash):
        # When hashing is busy the stronger hash can wait for the next login.
        with contextlib.suppress(Unavailable):
            await store.set_password_hash(
                user.id, await passwords.hash(password), temporary=user.must_change_password
            )
    await _start_session(request, user)
    raise web.HTTPFound(ctx["next"])


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    sid = session.get(SESSION_ID)
    if isinstance(sid, str):
        # Every copy of this cookie stops counting, on every node, until it would have expired
        # anyway; and the sockets opened with it close.
        expires_ms = int((time.time() + request.app[SETTINGS].session_max_age) * 1000)
        await request.app[STORE].revoke_session(sid, expires_ms)
        await request.app[BROKER].control(CloseSockets("logged out", session_id=sid))
    session.invalidate()
    raise web.HTTPFound("/login")
