"""What a notification says, and the interface every way of delivering one implements.

See docs/architecture.md ("Notifications"). The rules of who is told (mentions, per-room
levels, never the author) are decided once, on the node that stored the message; each sink
only delivers what it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

# Why a recipient is told: named in their @mention, in an @here, a direct message, or a room
# set to "every message".
Reason = Literal["mention", "here", "direct", "message"]


@dataclass(frozen=True, slots=True)
class Recipient:
    user_id: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class Notice:
    """One stored message that some people are to be told about."""

    room: str  # the room's name, as in /rooms/{name} (a direct conversation's too)
    title: str  # what to call it: "#general", or the other person's name for a DM
    url: str  # path that opens the room at this message
    seq: int
    author: str
    excerpt: str  # already shortened; "" when the operator turned excerpts off
    recipients: tuple[Recipient, ...]


class NoticeSink(Protocol):
    """A way of telling people (open tabs, Web Push). `send` never blocks the chat path: a
    sink that has slow work to do queues it."""

    def send(self, notice: Notice) -> None: ...
