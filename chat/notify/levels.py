"""How loud a room is for each person, and which rooms this node knows to be quiet.

See docs/architecture.md ("Notifications"). A level is per person and room: "all" (every
message), "mentions" (the default for rooms) or "nothing"; direct conversations default to
"all". Every node keeps in memory the rooms it has found quiet (not a direct conversation, and
nobody at "all"): a message there that mentions nobody costs a set look-up and a scan for "@",
no database read. A level set to "all" anywhere makes every node forget that the room was quiet
(`Loudness.changed`, sent to every node as a broker signal).
"""

from __future__ import annotations

from typing import Final, Literal

Level = Literal["all", "mentions", "nothing"]
ALL: Final = "all"
MENTIONS: Final = "mentions"
NOTHING: Final = "nothing"
LEVELS: tuple[Level, ...] = (ALL, MENTIONS, NOTHING)
LABELS: dict[str, str] = {ALL: "Every message", MENTIONS: "Mentions only", NOTHING: "Nothing"}


def default_level(is_direct: bool) -> Level:
    return ALL if is_direct else MENTIONS


def level_of(chosen: str | None, is_direct: bool) -> Level:
    for level in LEVELS:
        if chosen == level:
            return level
    return default_level(is_direct)


def parse_level(text: str) -> Level | None:
    value = text.strip().lower()
    for level in LEVELS:
        if value == level:
            return level
    return None


class Loudness:
    """The rooms this node knows to be quiet. Learning runs off the message path (a database
    read), so a change may land meanwhile: each room has a generation, bumped by a change, and
    what was read before it is not learned."""

    __slots__ = ("_generation", "quiet")

    def __init__(self) -> None:
        self.quiet: set[str] = set()
        self._generation: dict[str, int] = {}

    def generation(self, room: str) -> int:
        return self._generation.get(room, 0)

    def learned(self, room: str, quiet: bool, generation: int) -> None:
        if self._generation.get(room, 0) != generation:
            return
        if quiet:
            self.quiet.add(room)
        else:
            self.quiet.discard(room)

    def changed(self, room: str) -> None:
        self.quiet.discard(room)
        self._generation[room] = self._generation.get(room, 0) + 1
