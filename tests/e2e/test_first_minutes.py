"""What a new user trips over in the first ten minutes (issue 12's defects), in real Chromium
pages: each of these failed before the fix."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.e2e.conftest import ADMIN, TIMEOUT_MS, PersonFactory
from tests.e2e.server import ChatServer
from tests.e2e.test_chat_in_browser import SHOWN, expect_texts, open_room, say

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)


def refusals(page: Page) -> list[dict[str, object]]:
    """Every `error` frame the server sends this page, from now on."""
    errors: list[dict[str, object]] = []

    def on_frame(payload: str | bytes) -> None:
        for line in str(payload).split("\n"):
            if line and (frame := json.loads(line)).get("type") == "error":
                errors.append(frame)

    def on_socket(ws: WebSocket) -> None:
        ws.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return errors


def test_quick_replies_never_trip_the_typing_limit(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a = alice.page
    errors = refusals(a)
    open_room(alice)
    b = open_room(bob)
    replies = ["ok", "sure", "on it", "done!", "thanks", "yes", "brb"]
    for reply in replies:  # typed at a quick human pace, sent at once: ~2 s for all
        a.locator("#text").press_sequentially(reply, delay=40)
        a.locator("#text").press("Enter")
    expect_texts(b, replies)
    a.wait_for_timeout(300)  # any refusal would be here by now
    assert [e["message"] for e in errors] == []
    expect(a.locator("#composer-error")).to_have_text("")
    a.locator("#text").press_sequentially("and one more", delay=40)
    expect(b.locator("#typing")).to_have_text("alice is typing…")  # still announced
    assert alice.console_errors == [] and bob.console_errors == []


SEND_ALL = """lines => {
  const box = document.getElementById("text");
  for (const line of lines) {
    box.value = line;
    box.dispatchEvent(new Event("input"));
    box.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
  }
}"""


def test_fifty_pasted_lines_arrive_in_order_for_everyone(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    lines = [f"line {i}" for i in range(1, 51)]
    # As fast as a paste-and-Enter macro: far past the limit (10/s after a burst of 20).
    a.evaluate(SEND_ALL, lines)
    for page in (a, b):
        expect_texts(page, lines)
    expect(a.locator("#messages > .msg.failed")).to_have_count(0)
    b.reload()  # stored in that order, not just shown in it
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    expect_texts(b, lines)
    assert alice.console_errors == [] and bob.console_errors == []


LAST_MESSAGE_CUT = """() => {
  const list = document.getElementById("messages");
  const msgs = list.querySelectorAll(":scope > .msg");
  const last = msgs[msgs.length - 1].getBoundingClientRect();
  return Math.max(0, last.bottom - list.getBoundingClientRect().bottom);
}"""


@pytest.mark.parametrize("server_env", [{"CHAT_BURST": "100", "CHAT_RATE_PER_SECOND": "100"}])
def test_the_newest_message_is_fully_visible_when_a_room_opens(person: PersonFactory) -> None:
    alice = person("alice", width=1440, height=900)
    bob = person("bob", width=360, height=740)
    a, b = open_room(alice), open_room(bob)
    for i in range(30):
        say(a, f"filler {i}")
    expect(b.locator(SHOWN)).to_have_count(30)
    say(b, "bob's last word")  # read by alice at once: "seen by 1" under it
    expect(b.locator("#messages .seen")).to_have_text("seen by 1")
    say(a, "alice's last word")
    expect(a.locator("#messages .seen")).to_have_text("seen by 1")
    for page in (a, b):
        page.reload()
        expect(page.locator("#messages .seen")).to_have_text("seen by 1")
        page.wait_for_timeout(200)  # let any late layout settle
        assert page.evaluate(LAST_MESSAGE_CUT) < 1, "the newest message is cut off"


def ended(page: Page, says: str) -> None:
    expect(page.locator("#ended")).to_be_visible()
    expect(page.locator("#ended-text")).to_have_text(says)
    link = page.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", "/login?next=/rooms/general")
    expect(page.locator("#composer")).to_be_hidden()
    expect(page.locator("#people li")).to_have_count(0)
    expect(page.locator("#status")).to_have_attribute("data-state", "ended")


def test_a_kicked_tab_says_so_and_offers_to_log_in_again(person: PersonFactory) -> None:
    root = person(ADMIN, login=True)
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    root.page.goto("/admin")
    root.page.locator("#mod-username").fill("alice")
    root.page.locator("#mod-reason").fill("cool off")
    root.page.locator("#moderate-user").get_by_role("button", name="Kick…").click()
    root.page.get_by_role("button", name="Kick alice").click()
    ended(a, "An administrator removed you from the chat. Reason: cool off")
    a.wait_for_timeout(1500)  # a reconnect would come within a second; it must not
    expect(a.locator("#status")).to_have_attribute("data-state", "ended")
    expect(b.locator("#people li")).to_have_text(["bob (you)"])  # the others carry on
    a.get_by_role("link", name="Log in again").click()
    a.wait_for_url("**/login?next=/rooms/general")
    assert alice.console_errors == []


def test_logging_out_everywhere_ends_every_tab_visibly(person: PersonFactory) -> None:
    alice = person("alice")
    room = open_room(alice)
    other_tab = alice.new_page()
    other_tab.goto("/account")
    other_tab.get_by_role("button", name="Log out everywhere").click()
    ended(room, "You were logged out everywhere.")
    assert alice.console_errors == []


def test_presence_is_greyed_while_the_server_is_away(
    person: PersonFactory, chat_server: ChatServer
) -> None:
    alice, bob = person("alice"), person("bob")
    a = open_room(alice)
    open_room(bob)
    people = a.locator("#people-box")
    expect(a.locator("#people li")).to_have_text(["alice (you)", "bob"])
    expect(people).to_have_attribute("data-stale", "false")
    dot = "() => getComputedStyle(document.querySelector('#people li'), '::before').color"
    online = a.evaluate(dot)

    chat_server.stop()
    expect(people).to_have_attribute("data-stale", "true")
    expect(a.locator("#people-stale")).to_be_visible()
    assert a.evaluate(dot) != online

    chat_server.start()
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    expect(people).to_have_attribute("data-stale", "false")
    expect(a.locator("#people-stale")).to_be_hidden()
    assert a.evaluate(dot) == online
