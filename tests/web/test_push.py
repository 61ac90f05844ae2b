"""The HTTP side of Web Push and installing the app (chat.web.push): subscribing a browser and
taking it back, the account page's list, the service worker and the manifest, the CSP."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from chat.keys import STORE, VAPID
from chat.web.middlewares import CSP
from chat.web.push import browser_label
from tests.conftest import ClientFactory
from tests.helpers import PASSWORD, Client, csrf, login, post_form
from tests.notify.push_service import Browser

ENDPOINT = "https://fcm.googleapis.com/fcm/send/abc123"


@pytest.fixture
def settings_env() -> dict[str, object]:
    return {"PUSH_SUBSCRIPTIONS_PER_USER": "2"}


async def listed(client: Client) -> str:
    return await (await client.get("/account")).text()


async def test_a_browser_subscribes_and_the_account_page_lists_it(
    client: Client, app: web.Application
) -> None:
    page = await listed(client)
    assert f'data-vapid-key="{app[VAPID].public_key}"' in page
    assert "Notify me on this browser" in page
    assert "No browser is set up yet." in page
    client.session.headers["User-Agent"] = (
        "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
    )
    response = await Browser().subscribe(client, ENDPOINT)
    assert response.status == 200
    answer = await response.json()
    assert answer["ok"] is True
    assert answer["label"] == "Firefox on Linux"
    page = await listed(client)
    assert "Firefox on Linux" in page
    assert f'action="/account/push/{answer["id"]}/remove"' in page


async def test_the_same_browser_subscribing_again_replaces_its_subscription(
    client: Client, bob: Client
) -> None:
    browser = Browser()
    await browser.subscribe(client, ENDPOINT)
    await Browser().subscribe(client, ENDPOINT)
    assert (await listed(client)).count("/remove") == 1
    # Bob logs in on that browser and subscribes: the endpoint is his now.
    await browser.subscribe(bob, ENDPOINT)
    assert "/remove" not in await listed(client)
    assert (await listed(bob)).count("/remove") == 1


async def test_subscriptions_per_user_are_bounded(client: Client) -> None:
    for n in range(2):
        assert (await Browser().subscribe(client, f"{ENDPOINT}-{n}")).status == 200
    response = await Browser().subscribe(client, f"{ENDPOINT}-3")
    assert response.status == 409
    assert "the most there may be" in (await response.json())["error"]


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://evil.example/push",  # not a push service: the server would POST anywhere
        "http://fcm.googleapis.com/fcm/send/x",  # not https
        "http://127.0.0.1:9/push",  # loopback only when PUSH_ENDPOINT_HOSTS lists it
        "https://user:pw@fcm.googleapis.com/x",
        "https://fcm.googleapis.com:99999/x",
        "javascript:alert(1)",
        "",
        "https://fcm.googleapis.com/" + "x" * 1100,
    ],
)
async def test_an_endpoint_that_is_not_a_push_service_is_refused(
    client: Client, endpoint: str
) -> None:
    response = await Browser().subscribe(client, endpoint)
    assert response.status == 400
    assert (await response.json())["error"]
    assert "No browser is set up yet." in await listed(client)


async def test_keys_that_are_not_a_p256_point_and_a_16_byte_secret_are_refused(
    client: Client,
) -> None:
    browser = Browser()
    for p256dh, auth in [("AAAA", "A" * 22), (browser.p256dh, "AAAA"), ("!!", "??")]:
        response = await post_form(
            client,
            "/push/subscribe",
            {"endpoint": ENDPOINT, "p256dh": p256dh, "auth": auth},
            page="/account",
        )
        assert response.status == 400
        assert "P-256" in (await response.json())["error"]


async def test_subscribing_needs_a_login_and_the_csrf_token(client: Client, anon: Client) -> None:
    token = await csrf(anon, "/login")
    fields = {"endpoint": ENDPOINT, "p256dh": Browser().p256dh, "auth": "A" * 22}
    response = await anon.post("/push/subscribe", data={**fields, "csrf_token": token})
    assert response.status == 401
    response = await client.post("/push/subscribe", data=fields)
    assert response.status == 403
    assert "No browser is set up yet." in await listed(client)


async def test_a_browser_takes_its_subscription_back(client: Client) -> None:
    await Browser().subscribe(client, ENDPOINT)
    response = await post_form(client, "/push/unsubscribe", {"endpoint": ENDPOINT}, page="/account")
    assert await response.json() == {"ok": True, "removed": True}
    assert "No browser is set up yet." in await listed(client)


async def test_the_account_page_removes_a_subscription_of_ones_own_only(
    client: Client, bob: Client
) -> None:
    answer = await (await Browser().subscribe(client, ENDPOINT)).json()
    path = f"/account/push/{answer['id']}/remove"
    response = await post_form(bob, path, {}, page="/account")
    assert response.status == 302
    assert "/remove" in await listed(client)  # bob's request removed nothing of alice's
    response = await post_form(client, path, {}, page="/account")
    assert response.status == 302
    assert response.headers["Location"].endswith("/account#notifications")
    assert "No browser is set up yet." in await listed(client)


async def test_the_service_worker_is_served_at_the_root_and_never_cached(anon: Client) -> None:
    response = await anon.get("/sw.js")
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["Cache-Control"] == "no-cache"
    assert 'addEventListener("push"' in await response.text()


async def test_the_manifest_makes_the_app_installable(anon: Client) -> None:
    response = await anon.get("/manifest.webmanifest")
    assert response.status == 200
    assert response.content_type == "application/manifest+json"
    manifest = orjson.loads(await response.read())
    assert manifest["name"] == "chat"
    assert manifest["start_url"] == "/"
    assert manifest["display"] == "standalone"
    sizes = {icon["sizes"]: icon["src"] for icon in manifest["icons"]}
    assert set(sizes) == {"192x192", "512x512"}
    for size, src in sizes.items():
        icon = await anon.get(src)
        assert icon.status == 200
        assert icon.content_type == "image/png"
        body = await icon.read()
        assert body[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(body[16:20], "big"), int.from_bytes(body[20:24], "big")
        assert f"{width}x{height}" == size


async def test_every_page_links_the_manifest_and_registers_the_worker(anon: Client) -> None:
    page = await (await anon.get("/login")).text()
    assert '<link rel="manifest" href="/manifest.webmanifest">' in page
    assert "sw-register.js" in page


def test_the_csp_allows_our_own_worker_and_manifest_and_nothing_more() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["worker-src"] == "'self'"
    assert directives["manifest-src"] == "'self'"
    assert directives["default-src"] == "'self'"


@pytest.mark.parametrize(
    ("agent", "label"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/131.0.0.0 Mobile Safari/537.36",
            "Chrome on Android",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        ("", "A browser"),
    ],
)
def test_a_subscription_is_named_after_the_browser(agent: str, label: str) -> None:
    assert browser_label(agent) == label


async def test_logging_out_stops_this_browsers_notifications(client: Client) -> None:
    await Browser().subscribe(client, ENDPOINT)
    await post_form(client, "/logout", {}, page="/account")
    await login(client, "alice")
    assert "No browser is set up yet." in await listed(client)


async def test_logging_out_everywhere_stops_every_browsers_notifications(
    client: Client, new_client: ClientFactory
) -> None:
    other = await new_client()
    await login(other, "alice")
    await Browser().subscribe(client, ENDPOINT)
    await Browser().subscribe(other, f"{ENDPOINT}-2")
    assert (await listed(client)).count("/remove") == 2
    await post_form(other, "/account/logout-everywhere", {}, page="/account")
    await login(client, "alice")
    assert "No browser is set up yet." in await listed(client)


async def test_changing_the_password_keeps_this_browser_only(
    client: Client, new_client: ClientFactory, app: web.Application
) -> None:
    other = await new_client()
    await login(other, "alice")
    await Browser().subscribe(client, ENDPOINT)
    await Browser().subscribe(other, f"{ENDPOINT}-2")
    new = "another good password"
    response = await post_form(
        client,
        "/account/password",
        {"current": PASSWORD, "password": new, "confirm": new},
        page="/account",
    )
    assert response.status == 302
    alice = await app[STORE].user_by_name("alice")
    assert alice is not None
    (kept,) = await app[STORE].push_subscriptions([alice.id])
    assert kept.endpoint == ENDPOINT
