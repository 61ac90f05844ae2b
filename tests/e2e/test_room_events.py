"""Room events in the browser: edit (menu and Up arrow), delete with a confirmation, reactions,
replies and direct messages; a page that missed changes and resumes shows exactly what a fresh
page shows."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import TIMEOUT_MS, Person, PersonFactory
from tests.e2e.test_chat_in_browser import expect_texts, open_room, say

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)

# What a reader sees of each message: its text, the "edited" mark, the quote, the reactions.
SNAPSHOT = """() => [...document.querySelectorAll('#messages > .msg:not(.pending)')].map((li) => ({
  seq: li.dataset.seq,
  user: li.dataset.user,
  text: li.querySelector('.text').textContent,
  edited: Boolean(li.querySelector('.edited')),
  quote: li.querySelector('.quote') ? li.querySelector('.quote').textContent : null,
  reactions: [...li.querySelectorAll('.reaction')].map(
    (b) => [b.textContent, b.getAttribute('aria-pressed'), b.title]),
}))"""


def snapshot(page: Page) -> Any:
    return page.evaluate(SNAPSHOT)


def message(page: Page, text: str) -> Any:
    return page.locator("#messages > .msg", has=page.locator(".text", has_text=text))


def menu(page: Page, text: str) -> Any:
    item = message(page, text)
    item.locator(".msg-menu summary").click()
    return item.locator(".msg-menu")


def confirm_next_dialog(someone: Person) -> None:
    someone.page.remove_listener("dialog", someone._dialog)
    someone.page.once("dialog", lambda dialog: dialog.accept())


def test_a_page_that_missed_an_edit_a_deletion_and_a_reaction_shows_what_a_fresh_page_shows(
    person: PersonFactory,
) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    for text in ("first", "second", "third"):
        say(a, text)
    expect_texts(b, ["first", "second", "third"])
    # bob answers "first": the quote shows its author and text, and jumps to it.
    menu(b, "first").get_by_role("button", name="Reply").click()
    expect(b.locator("#composing-text")).to_have_text("Replying to alice: first")
    say(b, "an answer")
    expect_texts(a, ["first", "second", "third", "an answer"])
    expect(message(a, "an answer").locator(".quote")).to_have_text("alice: first")

    bob.context.set_offline(True)
    expect(b.locator("#status")).to_have_text("offline")
    # While bob is away: alice edits "third" (Up arrow), edits "first" (the menu), deletes
    # "second" (confirmed) and reacts to "an answer".
    a.locator("#text").press("ArrowUp")
    expect(a.locator("#text")).to_have_value("third")
    a.locator("#text").fill("third, edited")
    a.locator("#text").press("Enter")
    expect(message(a, "third, edited").locator(".edited")).to_be_visible()
    menu(a, "first").get_by_role("button", name="Edit").click()
    a.locator("#text").fill("first, edited")
    a.locator("#text").press("Enter")
    expect(message(a, "an answer").locator(".quote")).to_have_text("alice: first, edited")
    confirm_next_dialog(alice)
    menu(a, "second").get_by_role("button", name="Delete…").click()
    expect_texts(a, ["first, edited", "third, edited", "an answer"])
    menu(a, "an answer").get_by_role("button", name="React with 🎉").click()
    expect(message(a, "an answer").locator(".reaction")).to_have_text("🎉 1")

    bob.context.set_offline(False)
    expect_texts(b, ["first, edited", "third, edited", "an answer"])
    expect(message(b, "an answer").locator(".reaction")).to_have_text("🎉 1")
    expect(message(b, "an answer").locator(".quote")).to_have_text("alice: first, edited")
    resumed = snapshot(b)
    fresh = open_room(bob)  # the same page, loaded afresh
    assert snapshot(fresh) == resumed
    assert [m["edited"] for m in resumed] == [True, True, False]
    assert resumed[2]["reactions"] == [["🎉 1", "false", "alice"]]

    # The quote jumps to what it answers.
    message(fresh, "an answer").locator(".quote").click()
    expect(message(fresh, "first, edited")).to_be_focused()

    # Clicking a reaction toggles one's own, for everyone.
    message(fresh, "an answer").locator(".reaction").click()
    expect(message(a, "an answer").locator(".reaction")).to_have_text("🎉 2")
    expect(message(a, "an answer").locator(".reaction")).to_have_attribute("title", "alice, bob")
    assert alice.console_errors == [] and bob.console_errors == []


@pytest.mark.parametrize("server_env", [{"HISTORY_LIMIT": "3"}])
def test_a_reply_to_a_message_no_longer_kept_says_so(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    say(a, "the question")
    expect_texts(b, ["the question"])
    menu(b, "the question").get_by_role("button", name="Reply").click()
    say(b, "the answer")
    for text in ("more", "and more"):
        say(a, text)
    expect_texts(b, ["the question", "the answer", "more", "and more"])
    fresh = open_room(alice)
    expect_texts(fresh, ["the answer", "more", "and more"])
    expect(message(fresh, "the answer").locator(".quote")).to_have_text(
        "Reply to a message no longer kept"
    )


def test_a_direct_message_from_the_member_list_is_the_same_room_from_either_side(
    person: PersonFactory,
) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    expect(a.locator("#people li")).to_have_text(["alice (you)", "bob"])
    a.get_by_role("link", name="Direct message bob").click()
    expect(a.locator("#room-title")).to_have_text("@bob")
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    say(a, "just us")
    b.goto("/dm/alice")
    expect(b.locator("#room-title")).to_have_text("@alice")
    assert b.url == a.url
    expect_texts(b, ["just us"])
    b.goto("/")
    expect(b.locator("#direct li")).to_contain_text("@alice")
