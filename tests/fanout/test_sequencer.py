"""One node's per-room ordering: frames from Redis reach the hub once, in seq order, and what
Redis lost is read from the database (a real SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web

from chat.fanout.sequencer import Sequencer
from chat.live import protocol
from chat.live.connection import Connection
from chat.live.hub import Hub
from chat.models import Position, User
from chat.storage.store import Store


class RecordingHub(Hub):
    """A hub with a member in every room that writes down what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.delivered: list[tuple[str, int | None, str]] = []

    def has_members(self, room: str) -> bool:
        return True

    def deliver(self, room: str, payload: str, seq: int | None = None) -> int:
        self.delivered.append((room, seq, payload))
        return super().deliver(room, payload, seq)

    def seqs(self) -> list[int | None]:
        return [seq for _, seq, _ in self.delivered]


@pytest.fixture
def history_limit() -> int:
    return 3


async def sequencer(hub: Hub, store: Store) -> AsyncIterator[Sequencer]:
    seq = Sequencer(hub, store, gap_wait=0.05, hold_limit=100)
    # This node hears `general` from a joiner's history at seq 0 on (chat.fanout.redis_broker).
    seq.begin("general")
    seq.joined("general", 0)
    try:
        yield seq
    finally:
        await seq.stop()


@pytest.fixture
def hub() -> RecordingHub:
    return RecordingHub()


@pytest.fixture
async def seqr(hub: RecordingHub, store: Store) -> AsyncIterator[Sequencer]:
    async for s in sequencer(hub, store):
        yield s


async def until(hub: RecordingHub, count: int) -> None:
    async with asyncio.timeout(5):
        while len(hub.delivered) < count:
            await asyncio.sleep(0.01)


def frame(seq: int) -> str:
    return orjson.dumps({"type": "chat", "room": "general", "seq": seq}).decode()


async def test_early_frames_wait_for_their_turn_and_duplicates_are_dropped(
    hub: RecordingHub, seqr: Sequencer
) -> None:
    seqr.offer("general", frame(2), 2)
    seqr.offer("general", frame(3), 3)
    assert hub.seqs() == []
    seqr.offer("general", frame(1), 1)
    seqr.offer("general", frame(2), 2)  # twice: once from this node, once from Redis
    seqr.offer("general", "typing", None)  # no seq, no order to keep
    assert hub.seqs() == [1, 2, 3, None]


async def test_a_gap_nobody_fills_is_read_from_the_database(
    hub: RecordingHub, seqr: Sequencer, store: Store, alice: User
) -> None:
    for i in range(3):
        await store.append_message("general", alice, f"m{i}", None)
    seqr.offer("general", frame(3), 3)  # 1 and 2 were lost on the way
    await until(hub, 3)
    assert hub.seqs() == [1, 2, 3]
    seqr.offer("general", frame(2), 2)  # arriving late after all: already delivered
    assert hub.seqs() == [1, 2, 3]


async def test_what_is_no_longer_kept_is_told_as_an_incomplete_history_not_skipped(
    hub: RecordingHub, seqr: Sequencer, store: Store, alice: User
) -> None:
    for i in range(6):  # history_limit=3: 1..3 are trimmed
        await store.append_message("general", alice, f"m{i}", None)
    seqr.offer("general", frame(6), 6)
    await until(hub, 1)
    # Not a silent jump from 0 to 4: one `history`, incomplete, as a resuming client gets; it
    # counts as seq 6, so a socket that has 6 already is not given it again.
    ((room, seq, payload),) = hub.delivered
    told = orjson.loads(payload)
    assert (room, seq) == ("general", 6)
    assert told["type"] == "history" and told["complete"] is False and told["last_seq"] == 6
    assert [m["seq"] for m in told["messages"]] == [4, 5, 6]
    seqr.offer("general", frame(7), 7)  # and on from there, not waited for
    assert hub.seqs() == [6, 7]


async def test_a_message_committed_and_never_published_is_found_by_the_position_check(
    hub: RecordingHub, seqr: Sequencer, store: Store, alice: User
) -> None:
    """Its node died between the commit and the publish, in a room where nothing follows."""
    hub.register(Connection(web.WebSocketResponse(), alice, "s", queue_limit=10))
    conn = next(iter(hub.connections.values()))
    hub.begin_join(conn, "general")
    hub.finish_join(conn, "general", "history", Position(0))
    stored, _ = await store.append_message("general", alice, "orphan", None)
    assert await seqr.check_positions() == 0  # maybe still on its way: noted
    assert hub.seqs() == []
    assert await seqr.check_positions() == 1  # still missing a whole check later: read
    assert hub.delivered == [("general", 1, protocol.chat_frame(stored))]
    assert await seqr.check_positions() == 0


async def test_catch_up_delivers_what_was_committed_while_redis_was_away(
    hub: RecordingHub, seqr: Sequencer, store: Store, alice: User
) -> None:
    seqr.offer("general", frame(1), 1)
    for i in range(3):
        stored, _ = await store.append_message("general", alice, f"m{i}", None)
    assert stored.seq == 3
    assert await seqr.catch_up() == 1
    assert hub.seqs() == [1, 2, 3]
    # Read from the database, the frame is the one the sender's node would have published.
    assert hub.delivered[-1] == ("general", 3, protocol.chat_frame(stored))
    assert await seqr.catch_up() == 0  # nothing new: nothing read, nothing twice
    assert hub.seqs() == [1, 2, 3]


async def test_rooms_without_members_here_are_not_waited_for(store: Store) -> None:
    hub = Hub()  # nobody connected
    async for seqr in sequencer(hub, store):
        seqr.offer("general", frame(5), 5)
        assert seqr.last["general"] == 5


async def test_a_joiner_is_not_given_twice_what_its_history_already_held() -> None:
    hub = Hub()
    user = User(id=1, username="alice", is_admin=False, password_hash="", created_at=0)
    conn = Connection(web.WebSocketResponse(), user, "session", queue_limit=10)
    hub.register(conn)
    hub.begin_join(conn, "general")
    hub.deliver("general", "chat 5", 5)  # held while the history is read
    hub.finish_join(conn, "general", "history up to 6", Position(6))
    assert conn.queued == 1  # the history; 5 was in it
    # 6 reaches this node only now (another node published it late): the joiner has it already.
    hub.deliver("general", "chat 6", 6)
    hub.deliver("general", "chat 7", 7)
    hub.flusher.expand()  # what the next write slice does first: hand the room's inbox out
    assert conn.queued == 2


async def test_a_room_starts_where_its_first_joiner_history_ends_and_is_forgotten_after(
    hub: RecordingHub, store: Store
) -> None:
    async for seqr in sequencer(hub, store):
        seqr.begin("random")  # subscribed, the joiner's history not read yet
        seqr.offer("random", frame(8), 8)
        seqr.offer("random", frame(7), 7)
        assert hub.seqs() == []  # held until the history says where the room stands
        seqr.joined("random", 7)  # the history held 1..7
        assert hub.seqs() == [8]
        seqr.joined("random", 9)  # a later joiner changes nothing for the room
        seqr.offer("random", frame(9), 9)
        assert hub.seqs() == [8, 9]
        seqr.forget("random")  # nobody here any more: its frames are not this node's
        seqr.offer("random", frame(10), 10)
        assert hub.seqs() == [8, 9] and "random" not in seqr.last


async def test_messages_delivered_during_the_position_check_are_not_taken_for_a_rewind(
    hub: RecordingHub, seqr: Sequencer, store: Store, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load, messages keep arriving while the check reads the database: what the read saw
    is older than them, not a database that went back."""
    hub.register(Connection(web.WebSocketResponse(), alice, "s", queue_limit=10))
    conn = next(iter(hub.connections.values()))
    hub.begin_join(conn, "general")
    hub.finish_join(conn, "general", "history", Position(0))
    for i in range(3):
        await store.append_message("general", alice, f"m{i}", None)
    seqr.offer("general", frame(1), 1)
    seqr.offer("general", frame(2), 2)
    read = store.last_seqs

    async def read_while_more_arrive(rooms: list[str]) -> dict[str, int]:
        positions = await read(rooms)  # sees seq 3 committed
        await store.append_message("general", alice, "m3", None)
        seqr.offer("general", frame(3), 3)
        seqr.offer("general", frame(4), 4)  # delivered before the read's answer is looked at
        return positions

    monkeypatch.setattr(store, "last_seqs", read_while_more_arrive)
    assert await seqr.check_positions() == 0
    seqr.offer("general", frame(5), 5)  # the room's next message is not held for a gap
    assert hub.seqs() == [1, 2, 3, 4, 5]
    await asyncio.sleep(0.15)  # three gap waits: nothing read again, nothing twice
    assert hub.seqs() == [1, 2, 3, 4, 5]
