"""The chat as people use it: real Chromium pages against a real server process.

Each test starts its own server and database (tests/e2e/conftest.py) and drives pages the way a
person would: typing, pressing Enter, clicking links. Assertions wait for what the page shows.
"""

from __future__ import annotations

import re
import shutil
import sqlite3

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ADMIN, TIMEOUT_MS, Person, PersonFactory
from tests.e2e.server import ChatServer

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)

SHOWN = "#messages > .msg:not(.pending) .text"


def open_room(someone: Person, room: str = "general") -> Page:
    page = someone.page
    page.goto(f"/rooms/{room}")
    expect(page.locator("#room")).to_have_attribute("data-joined", "true")
    return page


def say(page: Page, text: str) -> None:
    page.locator("#text").fill(text)
    page.locator("#text").press("Enter")


def expect_texts(page: Page, texts: list[str]) -> None:
    """Exactly these confirmed messages, in this order: a duplicate or a gap fails."""
    expect(page.locator(SHOWN)).to_have_text(texts)
    expect(page.locator("#messages > .msg.pending")).to_have_count(0)


def test_two_people_chat_see_each_other_typing_and_come_and_go(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    expect(a.locator("#people li")).to_have_text(["alice (you)", "bob"])

    a.locator("#text").fill("hi b")  # typing, not sent yet
    expect(b.locator("#typing")).to_have_text("alice is typing…")
    a.locator("#text").press("o")
    a.locator("#text").press("b")
    a.locator("#text").press("Enter")
    expect_texts(b, ["hi bob"])
    expect(b.locator("#typing")).to_have_text("")

    # Shift+Enter is a new line inside one message; Enter sends it.
    box = b.locator("#text")
    box.press_sequentially("hello")
    box.press("Shift+Enter")
    box.press_sequentially("alice")
    box.press("Enter")
    say(a, "still here")
    expect_texts(a, ["hi bob", "hello\nalice", "still here"])
    say(a, "and again")
    for page in (a, b):
        expect_texts(page, ["hi bob", "hello\nalice", "still here", "and again"])

    # Own messages are set apart; an author's run is one group; times are local, not UTC.
    mine = a.locator("#messages > .msg")
    expect(mine.nth(0)).to_have_class(re.compile(r"\bmine\b"))
    expect(mine.nth(1)).not_to_have_class(re.compile(r"\bmine\b"))
    expect(mine.nth(2)).to_have_class(re.compile(r"\bmine\b"))
    expect(b.locator("#messages > .msg").nth(3)).to_have_class(re.compile(r"\bcont\b"))
    expect(b.locator("#messages > .msg").nth(2)).not_to_have_class(re.compile(r"\bcont\b"))
    expect(b.locator("#messages time").first).not_to_contain_text("UTC")

    # The sidebar follows people live: bob leaves, alice's page sees it without a reload.
    bob.page.close()
    expect(a.locator("#people li")).to_have_text(["alice (you)"])
    expect(a.locator("#people-count")).to_have_text("1")
    assert alice.console_errors == [] and bob.console_errors == []


def test_restart_reconnects_and_delivers_exactly_once(
    person: PersonFactory, chat_server: ChatServer
) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    say(a, "before the restart")
    expect_texts(b, ["before the restart"])

    chat_server.stop()
    for page in (a, b):
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#status")).to_contain_text(re.compile(r"reconnecting in \d+s"))
    # Bob's network goes too, so he stays away while the server is back for alice.
    bob.context.set_offline(True)
    expect(b.locator("#status")).to_have_text("offline")

    chat_server.start()
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect(a.locator("#status")).to_have_text("connected")
    say(a, "sent while bob was away")
    expect_texts(a, ["before the restart", "sent while bob was away"])

    say(b, "typed while offline")  # shown at once, pending
    expect(b.locator("#messages > .msg.pending .text")).to_have_text("typed while offline")

    bob.context.set_offline(False)
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    everything = ["before the restart", "sent while bob was away", "typed while offline"]
    expect_texts(b, everything)
    expect_texts(a, everything)

    # And the server stored each message once: a fresh page renders the same history.
    b.reload()
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(b, everything)


def test_admin_page_follows_people_live(person: PersonFactory) -> None:
    root = person(ADMIN, login=True)
    admin = root.page
    admin.goto("/admin")
    expect(admin.locator("#online tbody tr")).to_have_text(["Nobody is online."])

    alice, bob = person("alice"), person("bob")
    open_room(alice)
    open_room(bob)
    rows = admin.locator("#online tbody tr[data-user]")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("alice")
    expect(rows.nth(0)).to_contain_text("#general")
    expect(rows.nth(1)).to_contain_text("bob")

    bob.page.close()
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("alice")
    assert root.console_errors == []


def test_read_receipts_and_unread_counts(person: PersonFactory) -> None:
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    a = open_room(alice)
    say(a, "first")
    expect_texts(a, ["first"])
    # Carol reads the room once, then waits on the rooms list.
    c = open_room(carol)
    expect_texts(c, ["first"])
    seen = a.locator("#messages .seen")
    expect(seen).to_have_text("seen by 1")  # carol's read marker reached alice
    c.goto("/")
    general = c.locator('#rooms li[data-room="general"]')
    expect(general.locator(".unread")).to_be_hidden()

    b = open_room(bob)
    say(a, "are you there?")
    expect_texts(b, ["first", "are you there?"])
    expect(seen).to_have_text("seen by 1")
    expect(seen).to_have_attribute("aria-label", "Seen by bob")
    expect(a.locator("#messages > .msg").nth(1).locator(".seen")).to_have_count(1)

    # The rooms list counts it without a reload; opening the room clears it.
    expect(general.locator(".unread")).to_have_text("1 unread")
    general.get_by_role("link").click()
    expect(c.locator("#room")).to_have_attribute("data-joined", "true")
    expect(c.locator("#unread-line")).to_have_text("New since you last read")
    expect(c.locator("#messages > .msg, #messages > .unread-line")).to_have_text(
        [re.compile(r"first\s*$"), "New since you last read", re.compile(r"are you there\?\s*$")]
    )
    expect(seen).to_have_text("seen by 2")
    seen.focus()
    expect(seen).to_have_attribute("data-names", "bob, carol")
    c.goto("/")
    expect(c.locator('#rooms li[data-room="general"] .unread')).to_be_hidden()
    for someone in (alice, bob, carol):
        assert someone.console_errors == []


def test_markup_in_messages_is_only_text(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    payloads = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "<b>bold</b>"]
    for text in payloads:
        say(a, text)
    for page in (a, b):
        expect_texts(page, payloads)
    b.reload()  # the server-rendered history too
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(b, payloads)
    for page in (a, b):
        expect(page.locator("#messages img, #messages script, #messages b")).to_have_count(0)
    assert alice.dialogs == [] and bob.dialogs == []
    assert alice.console_errors == [] and bob.console_errors == []


@pytest.mark.parametrize(
    "server_env", [{"CHAT_RATE_PER_SECOND": "1", "CHAT_BURST": "1", "MAX_TEXT_CHARS": "40"}]
)
def test_limits_are_shown_where_they_apply(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)

    a.locator("#text").fill("x" * 41)
    expect(a.locator("#composer-count")).to_have_text("41 / 40")
    a.locator("#text").press("Enter")
    expect(a.locator("#composer-error")).to_contain_text("at most 40 characters")
    expect(a.locator("#messages > .msg")).to_have_count(0)

    # Two at once against a limit of one a second: the page holds the second back until the
    # limit allows it (it shows as sending), so nothing is refused and both arrive once.
    say(a, "one")
    say(a, "two")
    for page in (a, b):
        expect_texts(page, ["one", "two"])
    expect(a.locator("#messages > .msg.failed")).to_have_count(0)


@pytest.mark.parametrize("server_env", [{"CHAT_RATE_PER_SECOND": "100", "CHAT_BURST": "100"}])
def test_reading_history_is_not_interrupted(person: PersonFactory) -> None:
    alice, bob = person("alice", height=600), person("bob")
    a, b = open_room(alice), open_room(bob)
    for i in range(25):
        say(b, f"message {i}")
    expect(a.locator(SHOWN)).to_have_count(25)
    messages = a.locator("#messages")
    expect(a.locator("#jump")).to_be_hidden()
    messages.evaluate("el => { el.scrollTop = 0; }")
    say(b, "while alice reads")
    expect(a.locator("#jump")).to_be_visible()
    expect(a.locator("#jump")).to_have_text("New messages ↓")
    assert messages.evaluate("el => el.scrollTop") == 0
    a.locator("#jump").click()
    expect(a.locator("#jump")).to_be_hidden()
    expect(a.locator("#text")).to_be_focused()
    expect(a.locator(SHOWN).last).to_be_in_viewport()


def test_keyboard_only(person: PersonFactory) -> None:
    alice = person("alice")
    page = alice.page
    page.goto("/")
    # From the rooms list to the room and a sent message without touching the mouse.
    page.locator('#rooms a[href="/rooms/general"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#room")).to_have_attribute("data-joined", "true")
    page.locator("#text").focus()
    page.keyboard.type("typed with keys only")
    page.keyboard.press("Enter")
    expect_texts(page, ["typed with keys only"])
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Send")).to_be_focused()
    expect(page.get_by_role("log", name="Messages in #general")).to_be_visible()
    expect(page.get_by_label("Message #general")).to_be_visible()


@pytest.mark.parametrize("server_env", [{"HISTORY_LIMIT": "3"}])
def test_a_gap_longer_than_the_kept_history_is_said_out_loud(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    say(a, "m0")
    expect_texts(b, ["m0"])
    bob.context.set_offline(True)
    expect(b.locator("#status")).to_have_text("offline")
    for i in range(1, 6):
        say(a, f"m{i}")
    expect_texts(a, ["m0", "m1", "m2", "m3", "m4", "m5"])
    bob.context.set_offline(False)
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(b, ["m0", "m3", "m4", "m5"])
    expect(b.locator("#messages > .notice.missed")).to_have_text(
        "2 missed messages are no longer kept."
    )


def test_a_restored_database_resets_the_page_to_what_a_fresh_load_shows(
    person: PersonFactory, chat_server: ChatServer
) -> None:
    """The database is restored from a backup taken before the last two messages: the page,
    which shows a later seq than the room now has, shows the restored room instead of hiding
    everything new (issue 18, defect 4)."""
    alice = person("alice")
    a = open_room(alice)
    say(a, "kept")
    expect_texts(a, ["kept"])
    database = chat_server.var_dir / "chat.sqlite3"
    with sqlite3.connect(database) as live, sqlite3.connect(chat_server.var_dir / "b.db") as copy:
        live.backup(copy)
    say(a, "lost one")
    say(a, "lost two")
    expect_texts(a, ["kept", "lost one", "lost two"])

    chat_server.stop()
    expect(a.locator("#status")).to_have_attribute("data-state", "reconnecting")
    for leftover in ("-wal", "-shm"):
        database.with_name(database.name + leftover).unlink(missing_ok=True)
    shutil.copyfile(chat_server.var_dir / "b.db", database)
    chat_server.start()
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(a, ["kept"])
    say(a, "after the restore")
    expect_texts(a, ["kept", "after the restore"])
    a.reload()  # what a fresh load shows
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(a, ["kept", "after the restore"])


# Headless Chromium never hides a page, so the test flips what the page reads as its
# visibility (document.hidden / visibilityState) and fires the event a real tab switch fires.
HIDE_SWITCH = """
Object.defineProperty(Document.prototype, "hidden",
  { configurable: true, get() { return window.__hidden === true; } });
Object.defineProperty(Document.prototype, "visibilityState",
  { configurable: true, get() { return window.__hidden === true ? "hidden" : "visible"; } });
"""


def set_hidden(page: Page, hidden: bool) -> None:
    page.evaluate(
        "hidden => { window.__hidden = hidden; "
        "document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def test_hidden_tab_counts_unread_in_its_title_and_reads_when_shown(
    person: PersonFactory,
) -> None:
    alice, bob = person("alice"), person("bob")
    alice.context.add_init_script(HIDE_SWITCH)
    a, b = open_room(alice), open_room(bob)
    say(b, "are you there?")
    expect(b.locator("#messages .seen")).to_have_text("seen by 1")

    set_hidden(a, True)
    say(b, "hello?")
    say(b, "anyone?")
    expect(a).to_have_title("(2) #general · chat")
    expect(b.locator("#messages > .msg")).to_have_count(3)
    # Not read while hidden: the newest messages carry no receipt.
    expect(b.locator("#messages > .msg").nth(2).locator(".seen")).to_have_count(0)

    set_hidden(a, False)
    expect(a).to_have_title("#general · chat")
    expect(b.locator("#messages > .msg").nth(2).locator(".seen")).to_have_text("seen by 1")


def test_a_policy_close_is_shown_and_not_retried(person: PersonFactory) -> None:
    """Logging out in another tab closes this session's sockets with 1008, as a kick or a ban
    does: the page says why in place of the composer and does not reconnect by itself."""
    alice = person("alice")
    room = open_room(alice)
    other_tab = alice.new_page()
    other_tab.goto("/")
    other_tab.get_by_role("button", name="Log out").click()
    other_tab.wait_for_url("**/login")
    status = room.locator("#status")
    expect(status).to_have_text("disconnected")
    expect(status).to_have_attribute("data-state", "ended")
    expect(room.locator("#ended-text")).to_have_text("You logged out in another tab.")
    expect(room.locator("#text")).to_be_hidden()
    # The first reconnect would come within a second; it must not.
    room.wait_for_timeout(1500)
    expect(status).to_have_attribute("data-state", "ended")
    assert alice.console_errors == []


def test_a_session_that_ended_while_away_asks_to_log_in_again(
    person: PersonFactory, chat_server: ChatServer
) -> None:
    """The server comes back with a new secret key (rotated), so the old cookie is worthless:
    the page stops knocking and offers the login page instead of retrying forever."""
    alice = person("alice")
    page = open_room(alice)
    chat_server.stop()
    chat_server.env["SECRET_KEY"] = "a rotated secret key, so every old cookie is void"
    chat_server.start()
    expect(page.locator("#ended-text")).to_have_text("You are signed out.")
    link = page.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", "/login?next=/rooms/general")
    expect(page.locator("#text")).to_be_hidden()
