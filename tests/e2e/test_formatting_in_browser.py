"""Formatted messages in Chromium: the subset shows as <strong>, <em>, <code>, <pre>,
<blockquote> and links that open in a new tab, the same live and after a reload; an XSS corpus
sent as messages (and through an edit) runs nothing, and the page reports no CSP violation."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import TIMEOUT_MS, Person, PersonFactory
from tests.e2e.test_chat_in_browser import open_room, say

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)

# Before any of the page's scripts: a trap every payload calls if it ever runs, dialogs and
# uncaught errors, and the CSP's violation reports, all recorded for the test to read.
TRAPS = """
window.__ran = [];
window.__csp = [];
window.pwned = (n) => { window.__ran.push(String(n)); };
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (x) => { window.__ran.push(name + ":" + String(x)); };
}
window.addEventListener("error", (e) => { window.__ran.push("error:" + e.message); });
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""

CORPUS = [
    "<script>pwned(1)</script>",
    "<img src=x onerror=pwned(2)>",
    "**<svg onload=pwned(3)>**",
    "_<iframe srcdoc='<script>parent.pwned(4)</script>'></iframe>_",
    "[click me](javascript:pwned(5))",
    "javascript:pwned(6) and JaVaScRiPt://%0apwned(7)",
    '<a href="javascript:pwned(8)">a link</a> **b**',
    "data:text/html,<script>pwned(9)</script> vbscript:pwned(10)",
    "```\n</code></pre><img src=x onerror=pwned(11)>\n```",
    "> <script>pwned(12)</script>\nafter the quote",
    'https://example.com/"onmouseover="pwned(13)" x="',
    "https://example.com/'><img src=x onerror=pwned(14)>",
    "&lt;img src=x onerror=pwned(15)&gt; **b** &#60;script&#62;pwned(16)&#60;/script&#62;",
    "<scr<script>ipt>pwned(17)</scr</script>ipt>",
    "*<!--* --> <img src=x onerror=pwned(18)> *-->*",
    "<style>body{display:none}</style> _x_ <math><mi xlink:href=javascript:pwned(19)>m</mi></math>",
    "`<b onmouseover=pwned(20)>` **[**x**](javascript:pwned(21))**",
    "**\u202eevil** https://example.com/\u202egpj.exe",
    "<p>unclosed <b>broken <i>html **x",
]
EDITED = "now **<img src=x onerror=pwned(30)>** _edited_"
FORMATTED = (
    "**bold** _italic_ *also* `code` https://example.com/path?q=1\n"
    "> a quote\nthe reply\n```\nif a < b:\n    **not bold**\n```"
)

# Each message's text element as drawn, for comparing a live page with a reloaded one.
DRAWN = """() => [...document.querySelectorAll('#messages > .msg:not(.pending)')].map(
  (li) => li.querySelector('.text').outerHTML)"""


def trapped(context: BrowserContext) -> None:
    context.add_init_script(TRAPS)


def caught(page: Page) -> Any:
    return page.evaluate("() => ({ran: window.__ran, csp: window.__csp})")


def assert_nothing_ran(someone: Person, page: Page) -> None:
    # Hover and focus every link: an injected handler would fire now.
    for link in page.locator("#messages .text a").all():
        link.hover()
        link.focus()
    assert caught(page) == {"ran": [], "csp": []}
    assert someone.dialogs == []
    assert someone.console_errors == []


@pytest.mark.parametrize("server_env", [{"CHAT_RATE_PER_SECOND": "50", "CHAT_BURST": "50"}])
def test_an_xss_corpus_runs_nothing_live_or_after_a_reload(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    for someone in (alice, bob):
        trapped(someone.context)
    a, b = open_room(alice), open_room(bob)
    for text in CORPUS:
        say(a, text)
    expect(b.locator("#messages > .msg:not(.pending)")).to_have_count(len(CORPUS))
    # One is edited into another payload.
    a.locator("#text").press("ArrowUp")
    expect(a.locator("#text")).to_have_value(CORPUS[-1])
    a.locator("#text").fill(EDITED)
    a.locator("#text").press("Enter")
    for page in (a, b):
        expect(page.locator("#messages .msg .text").last).to_contain_text("now <img src=x")
        expect(page.locator("#messages .msg .text").last.locator("em")).to_have_text("edited")

    live = b.evaluate(DRAWN)
    b.reload()
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    assert b.evaluate(DRAWN) == live

    for someone, page in ((alice, a), (bob, b)):
        assert_nothing_ran(someone, page)
        texts = page.locator("#messages .text")
        expect(texts.locator("img, script, iframe, svg, math, style, b, i")).to_have_count(0)
        # Only links to http(s) exist, each opening a new tab without an opener.
        for link in texts.locator("a").all():
            assert (link.get_attribute("href") or "").startswith(("http://", "https://"))
            assert link.get_attribute("target") == "_blank"
            assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    # The direction override stays as text inside its message.
    evil = b.locator("#messages .text strong", has_text="evil")
    assert evil.text_content() == "\u202eevil"


def test_formatting_shows_the_same_live_and_after_a_reload(person: PersonFactory) -> None:
    alice, bob = person("alice"), person("bob")
    for someone in (alice, bob):
        trapped(someone.context)
    a, b = open_room(alice), open_room(bob)
    say(a, "just **one** word")
    a.locator("#text").fill(FORMATTED)
    a.locator("#text").press("Enter")
    say(a, "plain text, as typed: 2*3 and snake_case")
    expect(b.locator("#messages > .msg:not(.pending)")).to_have_count(3)
    for page in (a, b):
        text = page.locator("#messages > .msg .text").nth(1)
        expect(text.locator("strong")).to_have_text("bold")
        expect(text.locator("em")).to_have_text(["italic", "also"])
        expect(text.locator(":scope > p > code")).to_have_text("code")
        expect(text.locator("blockquote")).to_have_text("a quote")
        expect(text.locator("pre > code")).to_have_text("if a < b:\n    **not bold**\n")
        link = text.locator("a")
        expect(link).to_have_text("https://example.com/path?q=1")
        expect(link).to_have_attribute("href", "https://example.com/path?q=1")
        expect(link).to_have_attribute("target", "_blank")
        expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
        # The plain one is text, and keeps its characters.
        plain = page.locator("#messages > .msg .text").nth(2)
        expect(plain).to_have_class("text")
        expect(plain).to_have_text("plain text, as typed: 2*3 and snake_case")
        expect(plain.locator("*")).to_have_count(0)
        expect(page.locator("#messages > .msg .text").first).to_have_text("just one word")
    live = b.evaluate(DRAWN)
    b.reload()
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    assert b.evaluate(DRAWN) == live

    # An edit formats a plain message, and another makes it plain again, live.
    last = b.locator("#messages > .msg .text").nth(2)
    for typed, tag in (("**now bold**", "DIV"), ("plain again", "P")):
        a.locator("#text").press("ArrowUp")
        a.locator("#text").fill(typed)
        a.locator("#text").press("Enter")
        expect(last).to_have_text(typed.strip("*"))
        assert last.evaluate("(e) => e.tagName") == tag
    expect(last.locator("strong")).to_have_count(0)
    assert_nothing_ran(bob, b)
    assert_nothing_ran(alice, a)
