"""Installing the app and receiving Web Push, in real Chromium: the manifest is linked and
valid, the service worker registers and becomes active, Chromium finds the app installable, and
a push delivered to the worker (through the DevTools protocol, so nothing leaves the machine)
shows its notification, or none when a focused window already shows the room."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import CDPSession, Page, Playwright, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Person, PersonFactory
from tests.e2e.server import ChatServer

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)

ACTIVE = """async () => {
  const reg = await navigator.serviceWorker.ready;
  return [reg.scope, reg.active && reg.active.state];
}"""
NOTIFICATIONS = """async () => {
  const reg = await navigator.serviceWorker.ready;
  return (await reg.getNotifications()).map((n) => ({title: n.title, body: n.body, tag: n.tag,
    url: n.data && n.data.url}));
}"""


def wait_active(page: Page, url: str) -> None:
    page.wait_for_function(
        "navigator.serviceWorker.controller !== null || "
        "navigator.serviceWorker.ready.then(() => true)"
    )
    scope, state = page.evaluate(ACTIVE)
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while state != "activated" and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        scope, state = page.evaluate(ACTIVE)
    assert scope == f"{url}/"
    assert state == "activated"


def notifications(page: Page, count: int) -> list[dict[str, Any]]:
    """The notifications the worker shows, once there are `count` of them."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    shown: list[dict[str, Any]] = page.evaluate(NOTIFICATIONS)
    while len(shown) < count and time.monotonic() < deadline:
        page.wait_for_timeout(100)
        shown = page.evaluate(NOTIFICATIONS)
    return shown


def registration_id(page: Page, cdp: CDPSession, url: str) -> str:
    found: list[dict[str, Any]] = []
    cdp.on("ServiceWorker.workerRegistrationUpdated", lambda e: found.extend(e["registrations"]))
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        for reg in found:
            if reg["scopeURL"] == f"{url}/" and not reg.get("isDeleted"):
                return str(reg["registrationId"])
        page.wait_for_timeout(100)
    raise AssertionError(f"no service worker registration for {url}/: {found}")


def test_the_app_is_installable(
    playwright_driver: Playwright, chat_server: ChatServer, tmp_path: Path
) -> None:
    # A profile on disk: Chromium offers no installing in an incognito context (Playwright's
    # usual new_context), and says so ("in-incognito").
    context = playwright_driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=str(CHROMIUM),
        args=CHROMIUM_ARGS,
        headless=True,
        base_url=chat_server.url,
    )
    try:
        someone = Person(
            "visitor", context, context.pages[0] if context.pages else context.new_page()
        )
        page = someone.watch(someone.page)
        page.goto("/login")
        href = page.locator('link[rel="manifest"]').get_attribute("href")
        assert href == "/manifest.webmanifest"
        wait_active(page, chat_server.url)
        cdp = context.new_cdp_session(page)
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["url"] == f"{chat_server.url}/manifest.webmanifest"
        assert manifest["errors"] == []
        assert cdp.send("Page.getInstallabilityErrors")["installabilityErrors"] == []
        assert someone.console_errors == []
    finally:
        context.close()


def test_a_push_shows_a_notification_unless_the_room_is_in_front(
    person: PersonFactory, chat_server: ChatServer
) -> None:
    alice = person("alice")
    alice.context.grant_permissions(["notifications"], origin=chat_server.url)
    page = alice.page
    wait_active(page, chat_server.url)
    cdp = alice.context.new_cdp_session(page)
    reg = registration_id(page, cdp, chat_server.url)

    def push(room: str, seq: int) -> None:
        payload = {
            "room": room,
            "title": f"#{room}",
            "url": f"/rooms/{room}#m-{seq}",
            "author": "bob",
            "excerpt": "hi @alice",
            "seq": seq,
            "tag": f"chat:{room}:{seq}",
        }
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": chat_server.url, "registrationId": reg, "data": json.dumps(payload)},
        )

    # On the rooms list: the push about #general is shown.
    push("general", 1)
    (shown,) = notifications(page, 1)
    assert shown == {
        "title": "#general",
        "body": "bob: hi @alice",
        "tag": "chat:general:1",
        "url": "/rooms/general#m-1",
    }
    # In front, on #general: a push about #general adds nothing; one about another room shows.
    page.goto("/rooms/general")
    expect(page.locator("#room")).to_have_attribute("data-joined", "true")
    page.bring_to_front()
    push("general", 2)
    push("random", 3)
    notifications(page, 2)
    page.wait_for_timeout(300)  # the skipped one had as long to appear as the shown one
    tags = {n["tag"] for n in page.evaluate(NOTIFICATIONS)}
    assert tags == {"chat:general:1", "chat:random:3"}
    # The account page offers this browser's button.
    page.goto("/account")
    expect(page.get_by_role("button", name="Notify me on this browser")).to_be_visible()
    assert alice.console_errors == []
