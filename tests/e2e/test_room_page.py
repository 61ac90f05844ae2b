"""The room page as a place to stay, and the first run (issue 12's gaps), in real Chromium pages:
times, screen readers, the first account, moderation in context, password resets, the rooms
sidebar, long histories."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import ADMIN, TIMEOUT_MS, PersonFactory
from tests.e2e.server import ChatServer
from tests.e2e.test_chat_in_browser import SHOWN, expect_texts, open_room, say
from tests.e2e.test_first_minutes import SEND_ALL, ended
from tests.helpers import PASSWORD

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)


CLOCK = re.compile(r"^(1[0-2]|[1-9]):[0-5]\d\s[AP]M$")  # en-US: "5:03 PM", never "05:03 PM"


def test_every_message_shows_its_local_time_on_hover_and_focus(
    browser: Browser, person: PersonFactory
) -> None:
    alice = person("alice")
    a = open_room(alice)
    say(a, "first")
    say(a, "second, same group")
    expect_texts(a, ["first", "second, same group"])
    a.reload()  # the server-rendered times too
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    msgs = a.locator("#messages > .msg")
    for i in range(2):
        expect(msgs.nth(i).locator("time")).to_have_text(CLOCK)
    grouped_time = msgs.nth(1).locator(".meta")
    expect(msgs.nth(1)).to_have_class(re.compile(r"\bcont\b"))
    expect(grouped_time).to_have_css("opacity", "0")
    msgs.nth(1).hover()
    expect(grouped_time).to_have_css("opacity", "1")
    a.mouse.move(0, 0)
    expect(grouped_time).to_have_css("opacity", "0")
    # From the keyboard: into the list, then arrow keys from the newest message.
    a.locator("#messages").focus()
    a.keyboard.press("ArrowUp")
    expect(msgs.nth(1)).to_be_focused()
    expect(grouped_time).to_have_css("opacity", "1")
    a.keyboard.press("ArrowUp")
    expect(msgs.nth(0)).to_be_focused()
    title = msgs.nth(0).locator("time").get_attribute("title") or ""
    assert re.search(r"\d{4}", title), title  # the full date on hover
    assert alice.console_errors == []


def test_screen_readers_hear_every_author_and_new_messages(person: PersonFactory) -> None:
    person("founder")  # the first account is the admin: alice and bob get no admin menus
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    say(a, "one")
    say(a, "two")
    expect_texts(b, ["one", "two"])
    log = b.get_by_role("log", name="Messages in #general")
    expect(log).to_have_attribute("aria-live", "polite")
    # Grouped messages hide the repeated name on screen, not from the accessibility tree.
    expect(log).to_match_aria_snapshot(
        "- log:\n  - listitem:\n    - text: alice\n    - paragraph: one\n"
        "  - listitem:\n    - text: alice\n    - paragraph: two\n",
    )
    # Own messages too (on screen they are set apart by side and colour only).
    mine = a.get_by_role("log", name="Messages in #general")
    expect(mine).to_match_aria_snapshot(
        "- log:\n  - listitem:\n    - text: alice\n    - paragraph: one\n"
        "  - listitem:\n    - text: alice\n    - paragraph: two\n",
    )
    # My confirmed message is the element I saw sending: announced once, not twice.
    say(a, "three")
    expect_texts(a, ["one", "two", "three"])
    assert (
        a.evaluate(
            """() => new Promise((resolve) => {
      const list = document.getElementById("messages");
      let added = 0;
      new MutationObserver((records) => {
        for (const r of records) added += [...r.addedNodes].filter((n) => n.classList
          && n.classList.contains("msg")).length;
      }).observe(list, { childList: true });
      const box = document.getElementById("text");
      box.value = "four";
      box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
      const done = () => list.querySelector(".msg.pending") ? setTimeout(done, 20)
        : resolve(added);
      setTimeout(done, 20);
    })"""
        )
        == 1
    )


@pytest.mark.parametrize("server_env", [{"INSTANCE_NAME": "Acme Team"}])
def test_the_first_run_creates_the_administrator(browser: Browser, chat_server: ChatServer) -> None:
    context = browser.new_context(base_url=chat_server.url)
    try:
        page = context.new_page()
        page.goto("/")
        page.wait_for_url("**/register")
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Create the administrator account"
        )
        expect(page).to_have_title("Register · Acme Team")
        expect(page.locator(".brand")).to_have_text("Acme Team")
        register(page, "boss")
        welcome = page.locator("#welcome")
        expect(welcome).to_contain_text("You are the administrator of Acme Team")
        expect(page).to_have_title("Rooms · Acme Team")
        expect(page.get_by_role("navigation").get_by_role("link", name="Admin")).to_be_visible()
        page.reload()
        expect(welcome).to_have_count(0)  # said once

        other = browser.new_context(base_url=chat_server.url).new_page()
        other.goto("/register")
        expect(other.get_by_role("heading", level=1)).to_have_text("Create an account")
        register(other, "newbie")
        expect(other.locator("#welcome")).to_contain_text("The administrator is boss")
        expect(other.get_by_role("navigation").get_by_role("link", name="Admin")).to_have_count(0)
        other.context.close()
    finally:
        context.close()


def register(page: Page, name: str) -> None:
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/")


def test_moderation_from_where_the_trouble_is(person: PersonFactory) -> None:
    root = person(ADMIN, login=True)
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    say(a, "buy cheap pills <here>")
    say(b, "hello all")
    expect_texts(b, ["buy cheap pills <here>", "hello all"])
    # Members reply and react to any message, but delete only their own.
    expect(b.locator(".msg-menu")).to_have_count(2)
    others = b.locator("#messages > .msg").first.locator(".msg-menu")
    # (Closed menus: their items are in the DOM, hidden until opened.)
    expect(others.get_by_role("button", name="Reply", include_hidden=True)).to_have_count(1)
    expect(others.get_by_text("Delete…")).to_have_count(0)
    expect(others.get_by_role("button", name="Edit", include_hidden=True)).to_have_count(0)
    mine = b.locator("#messages > .msg").nth(1).locator(".msg-menu")
    expect(mine.get_by_role("button", name="Delete…", include_hidden=True)).to_have_count(1)

    # The admin deletes it from the room itself, after seeing it once more.
    page = open_room(root)
    spam = page.locator("#messages > .msg").first
    spam.hover()
    spam.get_by_label("Message actions").click()
    spam.get_by_role("link", name="Delete…").click()
    expect(page.get_by_role("heading", name="Delete this message?")).to_be_visible()
    expect(page.locator("#quoted .text")).to_have_text("buy cheap pills <here>")
    delete = page.get_by_role("button", name="Delete message")
    expect(delete).to_have_class("danger")
    delete.click()
    page.wait_for_url("**/rooms/general")
    for p in (a, b, page):
        expect_texts(p, ["hello all"])

    # Kick from the row of the online table, confirmed.
    page.goto("/admin")
    row = page.locator('#online tr[data-user="bob"]')
    row.get_by_role("link", name="Kick").click()
    expect(page.get_by_role("heading", name="Kick bob?")).to_be_visible()
    page.get_by_role("link", name="Cancel").click()  # thought better of it: nothing happens
    page.wait_for_url("**/admin#moderation")
    expect(b.locator("#status")).to_have_attribute("data-state", "connected")
    page.locator('#online tr[data-user="bob"]').get_by_role("link", name="Kick").click()
    page.get_by_label("Reason").fill("calm down")
    page.get_by_role("button", name="Kick bob").click()
    expect(b.locator("#ended-text")).to_have_text(
        "An administrator removed you from the chat. Reason: calm down"
    )

    # The log says what the deleted message said, and every time is written one way.
    log = page.locator("#moderation-log tbody tr")
    expect(log).to_have_count(2)
    expect(log.nth(0).locator(".action")).to_have_text("kick")
    expect(log.nth(1).locator(".action")).to_have_text("delete")
    expect(log.nth(1).locator(".detail")).to_have_text("alice: buy cheap pills <here>")
    for t in page.locator("main time").all():
        expect(t).to_have_text(CLOCK)
    assert root.console_errors == [] and root.dialogs == []


def test_a_forgotten_password_is_reset_by_the_admin(person: PersonFactory) -> None:
    root = person(ADMIN, login=True)
    bob = person("bob")
    b = open_room(bob)
    page = root.page
    page.goto("/admin")
    page.locator("#mod-username").fill("bob")
    page.get_by_role("button", name="Reset password…").click()
    page.get_by_role("button", name="Reset the password of bob").click()
    temporary = page.locator("#temporary-password").inner_text()
    assert len(temporary) >= 12
    ended(b, "Your password was changed.")  # bob's open tab says so at once

    b.get_by_role("link", name="Log in again").click()
    b.get_by_label("Username").fill("bob")
    b.get_by_label("Password").fill(temporary)
    b.get_by_role("button", name="Log in").click()
    b.wait_for_url("**/account")  # not the room: a new password first
    expect(b.locator("#must-change")).to_contain_text("An administrator reset your password")
    b.get_by_label("Current password").fill(temporary)
    b.get_by_label("New password", exact=True).fill("bob's own new password")
    b.get_by_label("New password again").fill("bob's own new password")
    b.get_by_role("button", name="Change password").click()
    expect(b.locator("#must-change")).to_have_count(0)
    open_room(bob)
    assert bob.console_errors == [] and root.console_errors == []


def test_the_room_page_has_the_rooms_at_hand(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a = open_room(alice)
    expect(a.locator("#text")).to_be_focused()  # a room opened is a room to write in
    expect(a.locator("#room-privacy")).to_have_text("Public")
    nav = a.get_by_role("navigation", name="Rooms")
    expect(nav.get_by_role("link", name="#general")).to_have_attribute("aria-current", "page")

    # Bob opens a room and talks in it: alice's sidebar shows it, with its unread count, live.
    bob.page.locator("#new-room").fill("design")
    bob.page.get_by_role("button", name="Create").click()
    b = bob.page
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    design = a.locator('#room-list li[data-room="design"]')
    expect(design).to_have_count(1)
    design.get_by_role("link").click()  # a look (unread counts start with a room's first visit)
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    a.go_back()
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    say(b, "mockups are up")
    expect(design.locator(".unread")).to_have_text("1 unread")
    expect(a.locator('#room-list li[data-room="general"] .unread')).to_be_hidden()

    design.get_by_role("link").click()
    a.wait_for_url("**/rooms/design")
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(a, ["mockups are up"])
    expect(a.locator("#text")).to_be_focused()
    expect(a.locator('#room-list li[data-room="design"] .unread')).to_be_hidden()

    # A private room says so in its header, with the way to its members.
    a.goto("/")
    a.locator("#new-room").fill("secret")
    a.get_by_label("private").check()
    a.get_by_role("button", name="Create").click()
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect(a.locator("#room-privacy")).to_have_text(re.compile(r"Private\s*·\s*members"))
    a.locator("#room-privacy").get_by_role("link", name="members").click()
    a.wait_for_url("**/rooms/secret/members")
    expect(b.locator('#room-list li[data-room="secret"]')).to_have_count(0)  # not to outsiders
    assert alice.console_errors == [] and bob.console_errors == []


@pytest.mark.parametrize(
    "server_env",
    [{"HISTORY_LIMIT": "120", "CHAT_BURST": "500", "CHAT_RATE_PER_SECOND": "500"}],
)
def test_a_long_history_loads_a_page_at_a_time_going_up(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a = open_room(alice)
    lines = [f"m{i}" for i in range(1, 131)]  # 130 said, the last 120 kept
    a.evaluate(SEND_ALL, lines)
    expect_texts(a, lines)

    b = open_room(bob)
    shown = b.locator(SHOWN)
    expect(shown).to_have_count(50)  # the last page (HISTORY_PAGE_SIZE), not all 120
    expect(shown.first).to_have_text("m81")
    messages = b.locator("#messages")
    messages.evaluate("el => { el.scrollTop = 0; }")
    expect(shown).to_have_count(100)
    expect(shown.first).to_have_text("m31")
    # What the reader was looking at stays put while the page above it fills in.
    assert messages.evaluate("el => el.scrollTop") > 0
    messages.evaluate("el => { el.scrollTop = 0; }")
    expect(b.locator(SHOWN)).to_have_text(lines[10:])
    expect(b.locator("#messages > .notice.forgotten")).to_have_text(
        "Earlier messages are not kept."
    )
    expect(b.locator("#older")).to_have_count(0)
    # Live messages still arrive at the bottom.
    say(a, "and now")
    expect(b.locator(SHOWN).last).to_have_text("and now")
    assert bob.console_errors == []
