"""The Markdown subset rendered to sanitized markup (chat.formatting): each construct, links and
their attributes, everything outside the subset left as text, hostile input made harmless, and
long input at the message limit rendered in bounded time."""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

import chat
from chat.formatting import LINK_REL, MAX_URL_CHARS, TAGS, MarkupCache, to_html
from chat.settings import Settings

LIMIT = Settings().max_text_chars


def html(text: str) -> str:
    out = to_html(text)
    assert out is not None, f"{text!r} was not formatted"
    return out


class Elements(HTMLParser):
    """Every start tag of a fragment with its attributes, and its text."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def link(fragment: str) -> dict[str, str | None]:
    """The attributes of the fragment's first link."""
    return next(attrs for tag, attrs in Elements(fragment).tags if tag == "a")


def assert_harmless(fragment: str | None) -> None:
    """Only the subset's tags; only `href` (http or https), `target` and `rel` on links; no
    comments, scripts or event handlers in any form."""
    if fragment is None:
        return
    for tag, attrs in Elements(fragment).tags:
        assert tag in TAGS, fragment
        if tag == "a":
            assert set(attrs) == {"href", "target", "rel"}, fragment
            assert re.match(r"(?i)https?://", attrs["href"] or ""), fragment
            assert attrs["target"] == "_blank" and attrs["rel"] == LINK_REL
        else:
            assert attrs == {}, fragment
    assert "<!--" not in fragment and "<script" not in fragment.lower()


# --- each construct ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**bold**", "<p><strong>bold</strong></p>"),
        ("__bold__", "<p><strong>bold</strong></p>"),
        ("_italic_", "<p><em>italic</em></p>"),
        ("*italic*", "<p><em>italic</em></p>"),
        ("***both***", "<p><em><strong>both</strong></em></p>"),
        ("a `x < y` b", "<p>a <code>x &lt; y</code> b</p>"),
        ("```\nif a < b:\n    **no**\n```", "<pre><code>if a &lt; b:\n    **no**\n</code></pre>"),
        ("~~~py\nx\n~~~", "<pre><code>x\n</code></pre>"),  # the language's class dropped
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
    ],
)
def test_each_construct_of_the_subset(text: str, expected: str) -> None:
    assert html(text).strip() == expected


def test_line_breaks_are_kept_as_typed() -> None:
    expected = "<p>one <strong>1</strong><br>\ntwo<br>\nthree</p>"
    assert html("one **1**\ntwo\nthree") == expected


def test_a_quote_is_only_the_lines_that_start_with_the_mark() -> None:
    # Markdown would carry the quote on into "my answer" (lazy continuation); a chat does not.
    out = html("> your question\nmy answer")
    assert out == "<blockquote>\n<p>your question</p>\n</blockquote>\n<p>my answer</p>"
    # Inside a code block, a ">" line is code.
    fenced = html("```\n> not a quote\nnext\n```")
    assert "blockquote" not in fenced and "&gt; not a quote\nnext" in fenced


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "snake_case_name and 2*3",
        "a > b, so",
        "# not a heading",
        "- a list\n- stays text",
        "1. one\n2. two",
        "www.example.com and example.com",
        "mail me: someone@example.com",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "---",
        "",
        "   indented, with snake_case",
        "two_lines\n\n\nfar apart",
        "C:\\Users\\me",
    ],
)
def test_plain_text_has_no_markup(text: str) -> None:
    assert to_html(text) is None


@pytest.mark.parametrize(
    "text",
    [
        "[click](https://example.com)",
        "![img](https://example.com/a.png)",
        "<https://example.com>",
        "&amp; &lt;b&gt; &#60;script&#62;",
    ],
)
def test_what_is_outside_the_subset_stays_text(text: str) -> None:
    # Links with their own text (a phishing favourite), images, autolinks and entities: the
    # characters are shown as they were typed (a bare URL inside still becomes a link).
    out = to_html(text)
    if out is not None:
        assert_harmless(out)
        assert "".join(Elements(out).text) == text
        assert "<img" not in out


# --- links ---


def test_a_bare_url_becomes_a_link_that_opens_in_a_new_tab() -> None:
    out = html("see https://example.com/a?b=1&c=2 now")
    attrs = link(out)
    assert attrs == {
        "href": "https://example.com/a?b=1&c=2",
        "target": "_blank",
        "rel": "noopener noreferrer nofollow",
    }
    assert ">https://example.com/a?b=1&amp;c=2</a> now" in out
    assert Elements(html("HTTP://EXAMPLE.COM")).tags[1][0] == "a"


@pytest.mark.parametrize(
    "text",
    [
        "javascript:alert(1)",
        "JaVaScRiPt://alert(1)",
        "javascript://example.com/%0aalert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "data://text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "vbscript://msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "//example.com/protocol-relative",
        "[x](javascript:alert(1))",
        "[x](data:text/html,hi) **b**",
    ],
)
def test_only_http_and_https_become_links(text: str) -> None:
    out = to_html(text)
    assert out is None or "<a" not in out
    assert_harmless(out)


def test_an_overlong_url_stays_text() -> None:
    url = "https://example.com/" + "a" * MAX_URL_CHARS
    assert to_html(url) is None or "<a" not in html(url)
    assert "<a" in html("https://example.com/" + "a" * (MAX_URL_CHARS - 30))


# --- hostile input ---

CORPUS = [
    "<script>alert(1)</script>",
    "**<script>alert(1)</script>**",
    "<img src=x onerror=alert(1)>",
    "_<img src=x onerror=alert(1)>_",
    "<a href=javascript:alert(1)>x</a> **b**",
    '<svg onload="alert(1)">',
    "`<script>` and ```\n</code></pre><script>alert(1)</script>\n```",
    "> <iframe src=javascript:alert(1)>",
    "**<b onmouseover=alert(1)>x</b>**",
    'https://example.com/"onmouseover="alert(1)',
    "https://example.com/<script>alert(1)</script>",
    "https://x.y/'><img src=x onerror=alert(1)>",
    'https://example.com/?a=<b>&c="d"',
    "*<!--* --> <script>alert(1)</script> *-->*",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "</p><script>alert(1)</script><p>",
    "<style>*{display:none}</style> _x_",
    "```\n<textarea></pre><script>alert(1)</script>\n",
    "<p>unclosed <b>broken <i>html **x",
    "&lt;script&gt;alert(1)&lt;/script&gt; _x_",
    "&#x3C;script&#x3E;alert(1)&#x3C;/script&#x3E; **x**",
    "\\<script>alert(1)\\</script>",
    "[**x**](javascript:alert(1))",
    '**[x](https://a.b "title" onclick=alert(1))**',
    "> > > > > > > > > > > > > > > > > > > > > > > > > > > deep",
    "_**`<x>`**_",
    "http://a.b/**x** `http://c.d/` *http://e.f/*",
]


@pytest.mark.parametrize("text", CORPUS)
def test_hostile_input_is_shown_not_run(text: str) -> None:
    out = to_html(text)
    assert_harmless(out)
    if out is not None:
        # Every "<" typed is text: escaped, never a tag of the user's.
        shown = "".join(Elements(out).text)
        assert shown.count("<") == text.count("<")


def test_direction_overrides_stay_as_text_formatted_or_not() -> None:
    # Kept as the user typed them, as in a plain message; the page isolates them (chat.css).
    assert to_html("abc \u202edcba") is None
    assert "\u202e" in html("**abc** \u202edcba")
    out = html("https://example.com/\u202egpj.exe")
    attrs = link(out)
    assert attrs["href"] == "https://example.com/%E2%80%AEgpj.exe"  # not in the address


def test_the_same_text_always_gives_the_same_markup() -> None:
    text = "**a** _b_ `c` https://d.e"
    assert to_html(text) == to_html(str(text + " ")[:-1])


# --- long input ---

PATHOLOGICAL = [
    "*",
    "*a",
    "_a",
    "**a*",
    "`",
    "`a",
    ">",
    "> ",
    ">a\nb\n",
    "```\n",
    "://",
    "http://",
    "http://a.b ",
    "https://a.b/(",
    "http:\\//",
    "\\*",
    "[",
    "<",
    "**_`",
    "_http://a.b/_ ",
]


@pytest.mark.parametrize("unit", PATHOLOGICAL)
def test_long_input_at_the_message_limit_renders_in_bounded_time(unit: str) -> None:
    # Not a speed measurement (that is the benchmark's): a guard against the quadratic
    # blow-ups Markdown and linkify have had, which take seconds at this length.
    text = (unit * LIMIT)[:LIMIT]
    started = time.perf_counter()
    out = to_html(text)
    assert time.perf_counter() - started < 1.5
    assert_harmless(out)


def test_the_cache_keeps_the_markup_within_its_budget() -> None:
    cache = MarkupCache(budget=400)
    texts = [f"**{n}** https://example.com/{n}" for n in range(40)]
    for text in texts:
        assert cache.markup(text) == to_html(text)
        assert cache.size <= 400
    # The most recently used stay; the oldest went first.
    assert texts[-1] in cache.by_text and texts[0] not in cache.by_text
    # A text longer than the whole budget is rendered, and not kept.
    long = "_x_ " * 200
    assert cache.markup(long) == to_html(long) and long not in cache.by_text


def test_the_client_inserts_markup_in_one_place_only() -> None:
    # Everything else reaches the DOM as text: the one innerHTML takes the server's `html`.
    static = Path(chat.__file__).parent.parent / "static"
    sinks = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment"
    )
    found = [
        (path.name, line.strip())
        for path in sorted(static.glob("*.js"))
        for line in path.read_text().splitlines()
        if sinks.search(line) and not line.strip().startswith("//")
    ]
    assert found == [("render.js", "if (formatted) box.innerHTML = m.html;")]
