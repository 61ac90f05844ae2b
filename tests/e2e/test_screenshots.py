"""Every page renders cleanly: screenshots for people to look at (var/screenshots/), no console
errors, no horizontal scrolling at 360 px, dark mode honoured."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ADMIN, TIMEOUT_MS, Person, PersonFactory
from tests.e2e.server import PROJECT_ROOT, ChatServer

SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)


def shoot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000, f"{path} looks empty"
    return path


def fits_width(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_login_page(browser: Browser, chat_server: ChatServer) -> None:
    context = browser.new_context(base_url=chat_server.url, viewport={"width": 1280, "height": 800})
    try:
        visitor = Person("visitor", context, context.new_page())
        page = visitor.watch(visitor.page)
        page.goto("/login")
        expect(page.get_by_label("Username")).to_be_focused()
        shoot(page, "login")
        assert visitor.console_errors == []
    finally:
        context.close()


def chat_a_little(alice: Person, bob: Person) -> None:
    for someone, text in [
        (alice, "Morning! Did the deploy go out?"),
        (bob, "It did, at 07:40. Metrics look calm."),
        (bob, "A long line to see wrapping: " + "lorem ipsum dolor sit amet " * 6),
        (alice, "Great, thanks 🎉"),
    ]:
        someone.page.locator("#text").fill(text)
        someone.page.locator("#text").press("Enter")
        expect(someone.page.locator("#messages > .msg.pending")).to_have_count(0)


def open_general(someone: Person) -> Page:
    someone.page.goto("/rooms/general")
    expect(someone.page.locator("#room")).to_have_attribute("data-joined", "true")
    return someone.page


def test_room_rooms_and_admin_pages_at_desktop_and_phone_widths(person: PersonFactory) -> None:
    alice = person("alice", width=1440, height=900)
    bob = person("bob", width=360, height=740)
    for name in ("design", "random"):  # a few rooms for the sidebar (created, hence visited)
        alice.page.goto("/")
        alice.page.locator("#new-room").fill(name)
        alice.page.get_by_role("button", name="Create").click()
        expect(alice.page.locator("#room")).to_have_attribute("data-joined", "true")
    bob.page.goto("/rooms/design")
    expect(bob.page.locator("#room")).to_have_attribute("data-joined", "true")
    bob.page.locator("#text").fill("New mockups are in the drive")
    bob.page.locator("#text").press("Enter")
    expect(bob.page.locator("#messages > .msg.pending")).to_have_count(0)
    open_general(alice)
    open_general(bob)
    chat_a_little(alice, bob)
    expect(bob.page.locator("#messages .msg .text")).to_have_count(4)
    bob.page.locator("#text").fill("typing something")
    expect(alice.page.locator("#typing")).to_have_text("bob is typing…")

    # The rooms sidebar: beside the room at 1440 px, a strip above it at 360 px.
    for page in (alice.page, bob.page):
        nav = page.get_by_role("navigation", name="Rooms")
        expect(nav.get_by_role("link", name="#general")).to_be_visible()
        expect(nav.get_by_role("link", name="#random")).to_be_visible()
    expect(alice.page.locator('#room-list li[data-room="design"] .unread')).to_have_text("1 unread")
    side = alice.page.locator("#rooms-nav").bounding_box()
    room = alice.page.locator("#room").bounding_box()
    assert side and room and side["x"] + side["width"] <= room["x"], "sidebar beside the room"
    strip = bob.page.locator("#rooms-nav").bounding_box()
    room = bob.page.locator("#room").bounding_box()
    assert strip and room and strip["y"] + strip["height"] <= room["y"], "strip above the room"

    shoot(alice.page, "room-desktop-1440")
    assert fits_width(alice.page)
    shoot(bob.page, "room-phone-360")
    assert fits_width(bob.page), "the room page scrolls sideways at 360 px"

    alice.page.goto("/")
    expect(alice.page.locator('#rooms li[data-room="general"] .count')).to_have_text("1")
    shoot(alice.page, "rooms")

    root = person(ADMIN, login=True, width=1440, height=900)
    root.page.goto("/admin")
    expect(root.page.locator("#online tbody tr[data-user]")).to_have_count(1)
    shoot(root.page, "admin")
    root.page.set_viewport_size({"width": 360, "height": 740})
    assert fits_width(root.page), "the admin page scrolls sideways at 360 px"

    for someone in (alice, bob, root):
        assert someone.console_errors == [], someone.name


def test_dark_mode_follows_the_system(person: PersonFactory) -> None:
    carol = person("carol")
    carol.page.emulate_media(color_scheme="dark")
    page = open_general(carol)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(18, 22, 27)"
    shoot(page, "room-dark")
    carol.page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(244, 245, 248)"
    assert carol.console_errors == []
