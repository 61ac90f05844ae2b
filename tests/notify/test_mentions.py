"""The pure parts of notifications: who a text mentions, the excerpt, levels and what a node
remembers of quiet rooms."""

from __future__ import annotations

from chat.notify.levels import Loudness, level_of, parse_level
from chat.notify.mentions import excerpt, mentions_here, parse


def test_names_are_found_in_any_case_outside_code_and_addresses() -> None:
    said = parse("Hi @Alice and @bob.smith. Also @carol, mail dan@example.com")
    assert said.names >= {"alice", "bob.smith", "carol"} and not said.here
    assert "example.com" not in said.names and "dan" not in said.names
    assert parse("`@eve` and\n```\n@mallory\n```\n@trent").names == {"trent"}
    assert parse("thanks @bob.").names == {"bob.", "bob"}  # whichever exists counts
    assert parse("no mention at all").names == frozenset()
    assert parse("@ alone, @x too short").names == frozenset()


def test_here_is_a_word_of_its_own() -> None:
    assert parse("@here standup").here and parse("@HERE.").here
    assert not parse("@hereford").here and not parse("`@here`").here
    assert mentions_here("ping @here") and not mentions_here("nothing")


def test_the_excerpt_is_one_short_line() -> None:
    assert excerpt("a\n\nb   c") == "a b c"
    long = excerpt("word " * 100)
    assert len(long) == 140 and long.endswith("…")


def test_levels_default_by_kind_of_room() -> None:
    assert level_of(None, is_direct=False) == "mentions"
    assert level_of(None, is_direct=True) == "all"
    assert level_of("nothing", is_direct=True) == "nothing"
    assert level_of("garbage", is_direct=False) == "mentions"
    assert parse_level(" ALL ") == "all" and parse_level("loud") is None


def test_a_change_wins_over_a_read_that_started_before_it() -> None:
    loud = Loudness()
    before = loud.generation("general")
    loud.changed("general")  # someone chose "every message" while the read was on its way
    loud.learned("general", True, before)
    assert "general" not in loud.quiet
    loud.learned("general", True, loud.generation("general"))
    assert "general" in loud.quiet
    loud.changed("general")
    assert "general" not in loud.quiet
