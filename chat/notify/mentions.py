"""Who a message's text mentions: `@username` (any case) and `@here`, outside code.

See docs/architecture.md ("Notifications"). Pure text work, on the server: the browser's
highlighting is only a hint. Callers check `"@" in text` first, so a message that mentions
nobody never gets here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A fenced block, then an inline code span: what is inside mentions nobody.
CODE_RE = re.compile(r"```.*?(?:```|$)|`[^`\n]*`", re.DOTALL)
# Not after a letter, digit or one of the name's own characters: "bob@example.com" is no mention.
MENTION_RE = re.compile(r"(?<![A-Za-z0-9_.@-])@([A-Za-z0-9][A-Za-z0-9_.-]{0,31})")
HERE = "here"
EXCERPT_CHARS = 140


@dataclass(frozen=True, slots=True)
class Mentions:
    names: frozenset[str]  # lowercased, @here left out
    here: bool


NOBODY = Mentions(frozenset(), False)


def parse(text: str) -> Mentions:
    if "@" not in text:
        return NOBODY
    if "`" in text:
        text = CODE_RE.sub(" ", text)
    names: set[str] = set()
    here = False
    for match in MENTION_RE.finditer(text):
        name = match.group(1).lower()
        # "@bob." at the end of a sentence: the dot is the sentence's. Both are tried (a
        # username may end with a dot), and only names of real people count further on.
        stripped = name.rstrip(".-")
        if stripped == HERE:
            here = True
            continue
        names.add(name)
        if stripped and stripped != name:
            names.add(stripped)
    return Mentions(frozenset(n for n in names if len(n) >= 2), here)


def mentions_here(text: str) -> bool:
    """Whether the text says @here (cheap when it says no @ at all)."""
    return "@" in text and parse(text).here


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The start of a message on one line, at most `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + "…"
