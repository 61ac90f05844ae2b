"""Notifications in Chromium: a hidden tab shows a desktop notification for a mention and not
for an ordinary message in a mentions-only room, counts in its title, opens the message on a
click; the level changes without a reload; the composer completes names; the mention count on
`/` goes up and clears on reading."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import TIMEOUT_MS, Person, PersonFactory
from tests.e2e.test_chat_in_browser import open_room, say

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)

# The tab's visibility, set by the test (a headless page is always "visible"), and every
# Notification the page makes, recorded on its way to the real one.
INIT = """
window.__hidden = false;
Object.defineProperty(Document.prototype, "hidden", {
  configurable: true, get() { return window.__hidden; } });
Object.defineProperty(Document.prototype, "visibilityState", {
  configurable: true, get() { return window.__hidden ? "hidden" : "visible"; } });
window.__setHidden = (hidden) => {
  window.__hidden = hidden;
  document.dispatchEvent(new Event("visibilitychange"));
};
window.__shown = [];
const Real = window.Notification;
function Recorded(title, options) {
  window.__shown.push({ title, body: options.body, tag: options.tag });
  window.__last = new Real(title, options);
  return window.__last;
}
Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
Recorded.requestPermission = (...args) => Real.requestPermission(...args);
window.Notification = Recorded;
"""


# Counts the page's requests for permission.
ASKED = """
window.__asked = 0;
const ask = Notification.requestPermission.bind(Notification);
Notification.requestPermission = (...args) => { window.__asked += 1; return ask(...args); };
"""


def notifying(someone: Person) -> Person:
    someone.context.grant_permissions(["notifications"])
    someone.context.add_init_script(INIT)
    return someone


def shown(page: Page) -> Any:
    return page.evaluate("window.__shown")


def wait_shown(page: Page, count: int) -> None:
    """Until the page has made `count` notifications (polled from here: the page's CSP
    forbids the eval that wait_for_function's polling needs)."""
    for _ in range(TIMEOUT_MS // 100):
        if page.evaluate("window.__shown.length") >= count:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"fewer than {count} notifications: {shown(page)}")


def seq_of(page: Page, text: str) -> int:
    item = page.locator("#messages > .msg", has=page.locator(".text", has_text=text))
    expect(item).to_have_attribute("data-seq", re.compile(r"\d+"))
    return int(item.get_attribute("data-seq") or 0)


def test_a_hidden_tab_is_told_of_a_mention_and_not_of_an_ordinary_message(
    person: PersonFactory,
) -> None:
    alice, bob = person("alice"), notifying(person("bob"))
    a, b = open_room(alice), open_room(bob)
    expect(b.locator("#notify-level-select")).to_have_value("mentions")
    expect(b.locator("#enable-notifications")).to_be_hidden()  # already granted
    title = b.title()
    b.evaluate("window.__setHidden(true)")

    say(a, "an ordinary message")
    say(a, "hey @bob, look at this")
    wait_shown(b, 1)
    seq = seq_of(a, "hey @bob")
    assert shown(b) == [
        {
            "title": "alice in #general",
            "body": "hey @bob, look at this",
            "tag": f"chat:general:{seq}",
        }
    ]
    # Two new messages while hidden (this room's count; other rooms' notifications add to it).
    expect(b).to_have_title(f"(2) {title}")
    # The mention of the reader is highlighted, and its row marked; the other is not.
    mentioned = b.locator("#messages > .msg.mentions-me")
    expect(mentioned).to_have_count(1)
    expect(mentioned.locator("mark.mention")).to_have_text("@bob")

    # A click on the notification opens the message; back in view, the title is plain.
    b.evaluate("window.__last.dispatchEvent(new Event('click'))")
    expect(b).to_have_url(re.compile(rf"/rooms/general#m{seq}$"))
    b.evaluate("window.__setHidden(false)")
    expect(b).to_have_title(title)

    # Every message, chosen on the page and saved without a reload; bob's other tab of the room
    # shows the new level too, without a reload.
    other = bob.new_page()
    other.goto("/rooms/general")
    expect(other.locator("#room")).to_have_attribute("data-joined", "true")
    b.locator("#notify-level-select").select_option("all")
    expect(b.locator("#notify-level-status")).to_have_text("Saved")
    expect(other.locator("#notify-level-select")).to_have_value("all")
    expect(other.locator("#notify-level-status")).to_have_text("Changed elsewhere")
    other.close()
    b.evaluate("window.__setHidden(true)")
    say(a, "another ordinary one")
    wait_shown(b, 2)
    assert shown(b)[1]["body"] == "another ordinary one"
    expect(b).to_have_title(f"(1) {title}")
    # A direct message, while bob's tab shows #general: told, and counted in the title too.
    a.goto("/dm/bob")
    expect(a.locator("#room")).to_have_attribute("data-joined", "true")
    say(a, "psst")
    wait_shown(b, 3)
    assert shown(b)[2]["title"] == "alice" and shown(b)[2]["body"] == "psst"
    expect(b).to_have_title(f"(2) {title}")
    b.evaluate("window.__setHidden(false)")
    expect(b).to_have_title(title)
    assert bob.console_errors == [] and alice.console_errors == []


def test_the_composer_completes_names_and_the_mention_count_clears_on_reading(
    person: PersonFactory,
) -> None:
    alice, bob, carol = person("alice"), person("bob"), person("carol")
    a = open_room(alice)
    home = carol.page  # carol stays on `/`
    expect(home.locator('#rooms li[data-room="general"] .mentions')).to_be_hidden()

    text = a.locator("#text")
    text.fill("thanks ")
    text.press("@")
    options = a.locator("#completions [role=option]")
    expect(options).to_have_text(["@bob", "@carol", "@here"])  # alice is an admin: @here
    text.press("c")
    expect(options).to_have_text(["@carol"])
    text.press("Backspace")
    text.press("ArrowDown")
    expect(a.locator("#completions [aria-selected=true]")).to_have_text("@carol")
    text.press("Enter")  # takes the name, does not send
    expect(text).to_have_value("thanks @carol ")
    expect(a.locator("#completions")).to_be_hidden()
    text.press_sequentially("and @b")
    a.locator("#completions [role=option]", has_text="@bob").click()
    expect(text).to_have_value("thanks @carol and @bob ")
    text.press("Escape")
    text.press("Enter")
    expect(a.locator("#messages > .msg .text").last).to_have_text("thanks @carol and @bob")

    # carol's `/` shows the mention beside the unread count (it polls), and reading clears it.
    badge = home.locator('#rooms li[data-room="general"] .mentions')
    expect(badge).to_be_visible()
    expect(badge.locator(".n")).to_have_text("1")
    # carol never granted notifications: the page offers them and asks only on her click.
    carol.context.add_init_script(ASKED)
    c = open_room(carol)
    expect(c.locator("#messages > .msg.mentions-me mark.mention")).to_have_text("@carol")
    enable = c.get_by_role("button", name="Enable desktop notifications")
    expect(enable).to_be_visible()
    assert c.evaluate("window.__asked") == 0
    enable.click()
    c.wait_for_timeout(200)
    assert c.evaluate("window.__asked") == 1
    c.wait_for_timeout(500)  # the read marker goes out as the page shows the message
    c.goto("/")
    expect(c.locator('#rooms li[data-room="general"] .mentions')).to_be_hidden()
    assert bob.console_errors == [] and carol.console_errors == [] and alice.console_errors == []
