"""The account page: change the password, log out everywhere, the browsers notified (Web Push).

Both bump the user's session version, which every request and every upgrade compares with the
version in the cookie, and both close the user's other open sockets on every node.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from aiohttp import web
from aiohttp_session import get_session

from chat.fanout.broker import CloseSockets
from chat.keys import BROKER, LIMITS, METRICS, PASSWORDS, STORE
from chat.models import User
from chat.web.auth import SESSION_ID, VERSION, require_user, session_id
from chat.web.login import login_keys
from chat.web.passwords import MAX_PASSWORD, MIN_PASSWORD
from chat.web.push import forget_on_logout, forget_other_browsers, push_context
from chat.web.render import render

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.get("/account", name="account")
async def account_page(request: web.Request) -> web.Response:
    user = await require_user(request)
    return await _render(request, user, {"done": request.query.get("done") == "1"})


async def _render(
    request: web.Request, user: User, ctx: dict[str, Any], *, status: int = 200
) -> web.Response:
    """The account page, with this user's Web Push subscriptions (chat.web.push)."""
    page = {**await push_context(request, user), **ctx}
    return await render(request, "account.html", page, status=status)


@routes.post("/account/password")
async def change_password(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    form = await request.post()
    current = str(form.get("current", ""))
    new = str(form.get("password", ""))
    confirm = str(form.get("confirm", ""))
    passwords = request.app[PASSWORDS]
    ctx: dict[str, Any] = {}
    # A stolen session must not become a way to guess the password: wrong current passwords
    # count against the login limits, per user and per address.
    limits = request.app[LIMITS]
    ip, name_key = login_keys(request, user.username)
    wait = max(limits.login_by_ip.retry_after(ip), limits.login_by_name.retry_after(name_key))
    if wait:
        request.app[METRICS].rate_limited.labels("password_change").inc()
        retry = max(1, math.ceil(wait))
        ctx["error"] = f"Too many wrong passwords. Try again in {retry} seconds."
        response = await _render(request, user, ctx, status=429)
        response.headers["Retry-After"] = str(retry)
        return response
    if not await passwords.verify(user.password_hash, current):
        limits.login_by_ip.take(ip)
        limits.login_by_name.take(name_key)
        request.app[METRICS].login_failures.inc()
        log.info(
            "wrong current password for %s from %s",
            user.username,
            ip,
            extra={"event": "password_change_failed", "username": user.username, "remote": ip},
        )
        ctx["error"] = "The current password is wrong."
    elif not MIN_PASSWORD <= len(new) <= MAX_PASSWORD:
        ctx["error"] = f"Passwords are {MIN_PASSWORD} to {MAX_PASSWORD} characters long."
    elif new != confirm:
        ctx["error"] = "The two new passwords do not match."
    if ctx:
        return await _render(request, user, ctx, status=400)
    store = request.app[STORE]
    await store.set_password_hash(user.id, await passwords.hash(new))
    version = await store.bump_session_version(user.id)
    # This browser stays logged in; every other session is now stale, and no longer notified.
    (await get_session(request))[VERSION] = version
    await forget_other_browsers(request, user.id)
    await request.app[BROKER].control(
        CloseSockets(
            "password changed: log in again",
            user_id=user.id,
            keep_session_id=await session_id(request),
        )
    )
    log.info(
        "%s changed their password",
        user.username,
        extra={"event": "password_changed", "username": user.username},
    )
    raise web.HTTPFound("/account?done=1")


@routes.post("/account/logout-everywhere", name="logout_everywhere")
async def logout_everywhere(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    await request.app[STORE].bump_session_version(user.id)
    await forget_on_logout(request, user.id, everywhere=True)
    await request.app[BROKER].control(CloseSockets("logged out everywhere", user_id=user.id))
    session = await get_session(request)
    log.info(
        "%s logged out everywhere",
        user.username,
        extra={"event": "logout_everywhere", "username": user.username},
    )
    session.pop(SESSION_ID, None)
    session.invalidate()
    raise web.HTTPFound("/login")
