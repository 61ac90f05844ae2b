"""Register, log in, log out: the account pages (chat.web.auth says who is asking)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

from aiohttp import web
from aiohttp_session import get_session
from yarl import URL

from chat.errors import ChatError, InvalidName, NameTaken, Unavailable
from chat.fanout.broker import CloseSockets
from chat.keys import BROKER, LIMITS, METRICS, PASSWORDS, SETTINGS, STORE
from chat.models import USERNAME_RE, USERNAME_RULE
from chat.web import push
from chat.web.auth import SESSION_ID, USER_ID, WELCOME, start_session
from chat.web.passwords import MAX_PASSWORD, MIN_PASSWORD
from chat.web.render import render

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


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
    # The rooms page then says once who the administrator is (chat.web.pages.rooms_page).
    (await start_session(request, user))[WELCOME] = True
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
    await start_session(request, user)
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
    user_id = session.get(USER_ID)
    if isinstance(user_id, int):
        await push.forget_on_logout(request, user_id, everywhere=False)
    session.invalidate()
    raise web.HTTPFound("/login")
