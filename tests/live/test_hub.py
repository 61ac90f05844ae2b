"""The hub's fan-out: what is published to a room waits in its inbox until the next write slice,
which hands each member everything that came meanwhile in one go, in order, never twice, and
never what was published before the member joined."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from chat.live.connection import Connection
from chat.live.hub import Hub
from chat.models import Position, User


def connection(hub: Hub, user_id: int) -> Connection:
    user = User(id=user_id, username=f"u{user_id}", is_admin=False, password_hash="", created_at=0)
    conn = Connection(web.WebSocketResponse(), user, "session", queue_limit=100)
    hub.register(conn)
    return conn


def joined(hub: Hub, user_id: int, room: str = "general", last_seq: int = 0) -> Connection:
    conn = connection(hub, user_id)
    hub.begin_join(conn, room)
    hub.finish_join(conn, room, "history", Position(last_seq))
    conn.pending.clear()  # the history frame
    return conn


@pytest.fixture
def hub() -> Hub:
    return Hub()


async def test_a_burst_is_handed_to_every_member_at_once_in_order(hub: Hub) -> None:
    members = [joined(hub, i) for i in range(3)]
    for seq in range(1, 6):
        assert hub.deliver("general", f"m{seq}", seq) == 3
    assert all(not m.pending for m in members)  # waiting in the room's inbox
    hub.flusher.expand()  # what the next write slice does first
    for m in members:
        assert m.pending == [f"m{seq}".encode() for seq in range(1, 6)]
        assert m.seen["general"] == 5
    hub.flusher.expand()
    assert all(len(m.pending) == 5 for m in members)  # handed out once


async def test_a_joiner_gets_nothing_from_before_it_joined_and_the_rest_after_its_history(
    hub: Hub,
) -> None:
    hub.deliver("general", "typing before", None)  # general has no member yet: dropped
    early = joined(hub, 1)
    hub.deliver("general", "m1", 1)
    hub.deliver("general", "typing", None)
    late = connection(hub, 2)
    hub.begin_join(late, "general")  # hands out what came before it
    hub.deliver("general", "m2", 2)
    hub.deliver("general", "m3", 3)
    hub.finish_join(late, "general", "history up to 2", Position(2))
    hub.flusher.expand()
    assert early.pending == [b"m1", b"typing", b"m2", b"m3"]
    assert late.pending == [b"history up to 2", b"m3"]  # m2 was in its history


async def test_documents_already_seen_or_out_of_order_are_taken_one_by_one(hub: Hub) -> None:
    conn = joined(hub, 1, last_seq=3)
    for seq in (2, 3, 4):
        hub.deliver("general", f"m{seq}", seq)
    hub.flusher.expand()
    assert conn.pending == [b"m4"]
    hub.deliver("general", "m6", 6)
    hub.deliver("general", "m5", 5)  # late: the client sees the gap and re-joins with since
    hub.flusher.expand()
    assert conn.pending == [b"m4", b"m6"]
    assert conn.seen["general"] == 6


async def test_a_direct_send_comes_after_what_the_room_was_given_before_it(hub: Hub) -> None:
    conn = joined(hub, 1)
    hub.deliver("general", "m1", 1)
    conn.send("error about something sent after m1 was published")
    assert conn.pending == [b"m1", b"error about something sent after m1 was published"]


class RecordingTransport:
    """Takes every write at once, as an idle socket does."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0


async def test_write_now_writes_what_was_published_before_the_loop_turns_and_only_once(
    hub: Hub,
) -> None:
    member = joined(hub, 1)
    transport = member.transport = RecordingTransport()
    hub.deliver("general", "m1", 1)
    hub.deliver("general", "m2", 2)
    assert transport.written == []  # by default, the next loop iteration writes
    hub.write_now()  # what the group commit calls after handing a batch out
    assert len(transport.written) == 1 and transport.written[0].endswith(b"m1\nm2")
    await asyncio.sleep(0)  # the flush that was scheduled does not write them again
    await asyncio.sleep(0)
    assert len(transport.written) == 1
    hub.deliver("general", "m3", 3)
    await asyncio.sleep(0)  # and the next one is scheduled as usual
    await asyncio.sleep(0)
    assert len(transport.written) == 2 and transport.written[1].endswith(b"m3")


async def test_people_are_counted_per_person_as_sockets_join_rejoin_and_go(hub: Hub) -> None:
    a1 = joined(hub, 1)
    a2 = joined(hub, 1)  # a second tab of the same person
    b = joined(hub, 2)
    assert hub.head_count("general") == 2 and set(hub.people("general")) == {"u1", "u2"}
    hub.begin_join(b, "general")  # a re-join (a gap): b is not in the room until its history
    assert not hub.is_in("u2", "general") and hub.head_count("general") == 1
    hub.finish_join(b, "general", "history", Position(0))
    assert hub.is_in("u2", "general")
    hub.leave(a1, "general")
    assert hub.is_in("u1", "general")  # the other tab is still there
    hub.unregister(a2)
    assert not hub.is_in("u1", "general") and hub.head_counts() == {"general": 1}
    assert not hub.leave(a2, "general")
    hub.unregister(b)
    assert hub.head_counts() == {} and hub.head_count("general") == 0
    joining = connection(hub, 3)
    hub.begin_join(joining, "general")  # not counted until it has its history
    assert hub.head_count("general") == 0
    hub.unregister(joining)
    assert hub.head_counts() == {}
