"""Web Push and installing the app, the HTTP side: the service worker at /sw.js (scope /), the web
app manifest, and the endpoints a page uses to subscribe this browser or take it back
(docs/architecture.md, "Web Push"). The sink that sends is chat.notify.webpush.

Subscribing is a same-origin POST of form fields (endpoint, p256dh, auth) with the session's
CSRF token, as every form here; the answer is JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from aiohttp import web
from aiohttp_session import get_session

from chat.errors import ChatError
from chat.keys import SETTINGS, STORE, VAPID
from chat.models import User
from chat.notify.settings import endpoint_allowed
from chat.notify.vapid import valid_subscription_keys
from chat.settings import PROJECT_ROOT
from chat.web.auth import current_user, require_user

routes = web.RouteTableDef()

PUSH_ID = "push"  # the session's key for this browser's subscription id

SERVICE_WORKER = PROJECT_ROOT / "static" / "sw.js"
MAX_ENDPOINT = 1024
THEME_COLOUR = "#2f6fde"
# (pattern in the User-Agent, name): the first that matches names the browser. Edge and Opera
# say "Chrome" too, so they come first.
BROWSERS = (
    (re.compile(r"Edg/"), "Edge"),
    (re.compile(r"OPR/"), "Opera"),
    (re.compile(r"Firefox/"), "Firefox"),
    (re.compile(r"Chrom(e|ium)/"), "Chrome"),
    (re.compile(r"Safari/"), "Safari"),
)
SYSTEMS = (
    (re.compile(r"Android"), "Android"),
    (re.compile(r"iPhone|iPad"), "iOS"),
    (re.compile(r"Windows"), "Windows"),
    (re.compile(r"Mac OS X|Macintosh"), "macOS"),
    (re.compile(r"CrOS"), "ChromeOS"),
    (re.compile(r"Linux"), "Linux"),
)


def browser_label(user_agent: str) -> str:
    """ "Firefox on Linux": how the account page names a subscription."""
    browser = next((name for rx, name in BROWSERS if rx.search(user_agent)), "A browser")
    system = next((name for rx, name in SYSTEMS if rx.search(user_agent)), "")
    return f"{browser} on {system}" if system else browser


@routes.get("/sw.js")
async def service_worker(request: web.Request) -> web.FileResponse:
    # At the root, so that its scope is the whole site; always checked with the server, so a new
    # release's worker replaces the old one at the next navigation.
    return web.FileResponse(
        SERVICE_WORKER,
        headers={"Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache"},
    )


@routes.get("/manifest.webmanifest")
async def manifest(request: web.Request) -> web.Response:
    name = request.app[SETTINGS].instance_name
    static = request.app.router["static"]
    icons = [
        {
            "src": str(static.url_for(filename=f"icon-{size}.png")),
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": "any",
        }
        for size in (192, 512)
    ]
    body = {
        "name": name,
        "short_name": name[:12],
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": THEME_COLOUR,
        "icons": icons,
    }
    return web.Response(
        body=orjson.dumps(body),
        content_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


async def push_context(request: web.Request, user: User) -> dict[str, Any]:
    """What the account page shows of Web Push: this user's browsers and the key to subscribe."""
    subs = await request.app[STORE].push_subscriptions([user.id])
    return {"push_subscriptions": subs, "vapid_public_key": request.app[VAPID].public_key}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"ok": False, "error": message}, status=status)


@routes.post("/push/subscribe")
async def subscribe(request: web.Request) -> web.Response:
    user = await current_user(request)
    if user is None:
        return _error(401, "Log in first.")
    settings = request.app[SETTINGS]
    form = await request.post()
    endpoint, p256dh, auth = (str(form.get(k, "")).strip() for k in ("endpoint", "p256dh", "auth"))
    if not endpoint or len(endpoint) > MAX_ENDPOINT:
        return _error(400, f"The subscription's endpoint must be 1 to {MAX_ENDPOINT} characters.")
    if not endpoint_allowed(endpoint, settings.push_endpoint_hosts):
        return _error(400, "This browser's push service is not one this server sends to.")
    if not valid_subscription_keys(p256dh, auth):
        return _error(400, "The subscription's keys are not a P-256 key and a 16-byte secret.")
    label = browser_label(request.headers.get("User-Agent", ""))
    try:
        sub = await request.app[STORE].save_push_subscription(
            user.id, endpoint, p256dh, auth, label, limit=settings.push_subscriptions_per_user
        )
    except ChatError as exc:
        return _error(exc.status, exc.message)
    # Which subscription is this browser's: logging out here stops its notifications.
    (await get_session(request))[PUSH_ID] = sub.id
    return web.json_response({"ok": True, "id": sub.id, "label": sub.label})


@routes.post("/push/unsubscribe")
async def unsubscribe(request: web.Request) -> web.Response:
    user = await current_user(request)
    if user is None:
        return _error(401, "Log in first.")
    form = await request.post()
    endpoint = str(form.get("endpoint", ""))
    removed = await request.app[STORE].remove_push_subscription(user.id, endpoint=endpoint)
    return web.json_response({"ok": True, "removed": removed})


async def forget_on_logout(request: web.Request, user_id: int, *, everywhere: bool) -> None:
    """Logging out stops this browser's notifications; logging out everywhere, every one's."""
    store = request.app[STORE]
    if everywhere:
        await store.forget_push_subscriptions(user_id)
        return
    push_id = (await get_session(request)).get(PUSH_ID)
    if isinstance(push_id, int):
        await store.remove_push_subscription(user_id, sub_id=push_id)


async def forget_other_browsers(request: web.Request, user_id: int) -> None:
    """A password change logs out every other session: their browsers stop being notified."""
    push_id = (await get_session(request)).get(PUSH_ID)
    keep = push_id if isinstance(push_id, int) else None
    await request.app[STORE].forget_push_subscriptions(user_id, keep=keep)


@routes.post(r"/account/push/{id:\d{1,18}}/remove")
async def remove(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    await request.app[STORE].remove_push_subscription(user.id, sub_id=int(request.match_info["id"]))
    raise web.HTTPFound("/account#notifications")
