"""Formatted text: a message's Markdown subset rendered to sanitized markup, on the server.

See docs/architecture.md ("Formatting"). The subset is **bold**, _italic_ (or *italic*), `code`,
fenced code blocks, > quotes and bare http(s) URLs as links; nothing else (no headings, lists,
images, tables, raw HTML, entities or [text](url) links: what they would do stays plain text).

markdown-it-py parses it with only those rules enabled and raw HTML off; nh3 (the Ammonia
sanitizer) then keeps only the tags and attributes the subset produces, so even a bug in the
parser cannot hand the browser a script, an event handler or a `javascript:` link.

The stored plain text stays the truth (edits change it; quotes, notifications and search use it):
the markup is derived from it, by a pure function. It is rendered once per message text while it
is in a bounded cache, so a history read again costs a dict look-up per formatted message, and a
fix to the sanitizer applies at once to every stored message (nothing rendered is kept in the
database). A text with none of the characters formatting needs costs a few substring tests and
has no markup: the client shows its text as it is.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token

TAGS = frozenset({"p", "br", "strong", "em", "code", "pre", "blockquote", "a"})
LINK_REL = "noopener noreferrer nofollow"
# How much rendered text is kept (the texts and their markup, in characters): thousands of
# ordinary messages, and a bound however long the texts and their markup are.
CACHE_CHARS = 4_000_000


def _parser() -> MarkdownIt:
    md = MarkdownIt("zero", {"html": False, "breaks": True, "linkify": True})
    md.enable(["blockquote", "fence", "emphasis", "backticks", "newline", "escape", "linkify"])
    # Links only where a URL is written out with its scheme: no "example.com" or e-mail
    # guesses (their scanning is also where linkify-it has been quadratic), and http(s) only.
    links = md.linkify
    assert links is not None, "markdown-it-py[linkify] installs linkify-it-py"
    links.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    for scheme in ("ftp:", "mailto:", "//"):
        links.add(scheme, None)
    md.inline.ruler.at("linkify", _linkify)
    # The core rule finds links left in text (fuzzy ones, or the URLs _linkify refused) with an
    # unbounded scan: off, the inline rule alone links.
    md.core.ruler.disable("linkify")
    return md


# A URL's scheme, at the end of the text before "://" (RFC 3986). Only the end of that text is
# searched: a scheme we link is a few letters, and searching all of it at every "://" made a
# message of many "://" take quadratic time.
_SCHEME = re.compile(r"(?:^|[^a-z0-9.+-])([a-z][a-z0-9.+-]*)\Z", re.IGNORECASE)
_SCHEME_TAIL = 32
# Longer URLs stay text: linkify-it's URL pattern scans what follows "://" (with parentheses,
# at length), so an unbounded look made a message of many "https://a.b/(" take quadratic time.
MAX_URL_CHARS = 1024


def _linkify(state: StateInline, silent: bool) -> bool:
    """markdown-it-py's own inline linkify rule (rules_inline/linkify.py), but for where the
    scheme is searched (see _SCHEME): a bare URL at "://" becomes a link."""
    pos, src, links = state.pos, state.src, state.md.linkify
    if (
        links is None
        or state.linkLevel > 0
        or pos + 3 > state.posMax
        or src[pos : pos + 3] != "://"
    ):
        return False
    found = _SCHEME.search(state.pending[-_SCHEME_TAIL:])
    if found is None:
        return False
    proto = found.group(1)
    start = pos - len(proto)
    link = links.match_at_start(src[start : start + MAX_URL_CHARS + 1])
    if not link or len(link.url) > MAX_URL_CHARS:
        return False
    url: str = link.url.rstrip("*")  # a '*' at its end closes an emphasis, as upstream
    href = state.md.normalizeLink(url)
    if not state.md.validateLink(href):
        return False
    if not silent:
        state.pending = state.pending[: -len(proto)]
        token = state.push("link_open", "a", 1)
        token.attrs = {"href": href}
        token.markup, token.info = "linkify", "auto"
        token = state.push("text", "", 0)
        token.content = state.md.normalizeLinkText(url)
        token = state.push("link_close", "a", -1)
        token.markup, token.info = "linkify", "auto"
    state.pos += len(url) - len(proto)
    return True


_md = _parser()
_cleaner = nh3.Cleaner(
    tags=set(TAGS),
    attributes={"a": {"href"}},
    set_tag_attribute_values={"a": {"target": "_blank"}},
    link_rel=LINK_REL,
    url_schemes={"http", "https"},
    url_relative="deny",
    strip_comments=True,
)


def to_html(text: str) -> str | None:
    """The sanitized markup of a message's text, or None if it has no formatting (its text is
    shown as it is)."""
    # Every construct of the subset needs one of these (a backslash escapes one of them). A
    # chain of `in` is the cheapest test of a plain message (each a fast scan in C; a regular
    # expression with a class or an alternation tries every position in turn).
    if (
        "*" in text
        or "_" in text
        or "`" in text
        or ">" in text
        or "~" in text
        or "\\" in text
        or "://" in text
    ):
        return _cache.markup(text)
    return None


class MarkupCache:
    """Each text's markup (or None), the least recently used dropped first beyond the budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.size = 0
        self.by_text: OrderedDict[str, str | None] = OrderedDict()

    def markup(self, text: str) -> str | None:
        try:
            html = self.by_text[text]
        except KeyError:
            pass
        else:
            self.by_text.move_to_end(text)
            return html
        html = self.by_text[text] = _render(text)
        self.size += _chars(text, html)
        while self.size > self.budget and self.by_text:
            old, old_html = self.by_text.popitem(last=False)
            self.size -= _chars(old, old_html)
        return html


def _chars(text: str, html: str | None) -> int:
    return len(text) + (0 if html is None else len(html))


_cache = MarkupCache(CACHE_CHARS)


def _render(text: str) -> str | None:
    tokens = _md.parse(_end_quotes(text))
    if _is_plain(tokens, text):
        return None
    return _cleaner.clean(_md.renderer.render(tokens, _md.options, {})).rstrip("\n")


_QUOTE_LINE = re.compile(r" {0,3}>")
_FENCE_LINE = re.compile(r" {0,3}(```|~~~)")


def _end_quotes(text: str) -> str:
    """Markdown lets a quote go on into the lines after it ("lazy continuation"); in a chat only
    the lines that start with ">" are quoted, so a blank line ends a quote where they stop."""
    if ">" not in text:
        return text
    out: list[str] = []
    quoting = fenced = False
    for line in text.split("\n"):
        if _FENCE_LINE.match(line):
            fenced = not fenced
        quoted = not fenced and bool(_QUOTE_LINE.match(line))
        if quoting and not quoted and line.strip():
            out.append("")
        out.append(line)
        quoting = quoted
    return "\n".join(out)


def _is_plain(tokens: list[Token], text: str) -> bool:
    """Whether the text parsed to paragraphs of itself: nothing to format after all (an
    underscore inside a word, a lone "*", "a > b"). Only whitespace may differ (Markdown drops
    a line's leading spaces and blank lines between paragraphs): shown as text, it stays as
    typed. A backslash escape makes a difference, and so markup."""
    parts = []
    for token in tokens:
        if token.type == "inline":
            for child in token.children or ():
                if child.type not in ("text", "softbreak"):
                    return False
                parts.append(child.content)
        elif token.type not in ("paragraph_open", "paragraph_close"):
            return False
    return "".join("".join(parts).split()) == "".join(text.split())
