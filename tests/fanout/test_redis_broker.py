"""Two brokers in this process, as two nodes would have, on a real redis-server and one store."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chat.fanout.broker import CloseSockets
from chat.fanout.envelope import decode_room_frames, encode_room_frames, pack
from chat.fanout.redis_broker import (
    Envelope,
    RedisBroker,
    control_envelope,
    control_event,
)
from chat.live.hub import Hub
from chat.live.protocol import chat_frame
from chat.models import User
from chat.settings import Settings
from chat.storage.store import Store
from tests.fanout.brokers import fast_settings, opened_store, until
from tests.fanout.test_sequencer import RecordingHub
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return fast_settings(tmp_path, redis_url, redis_prefix, PRESENCE_TTL_SECONDS="2")


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with opened_store(settings) as store:
        yield store


async def start_broker(hub: Hub, store: Store, settings: Settings) -> RedisBroker:
    broker = RedisBroker(hub, store, settings)
    await broker.start()
    await until(broker.all_subscribed)
    # The RecordingHub has a member in every room; this node hears `general` from seq 0.
    await broker.follow("general")
    broker.joined("general", 0)
    return broker


async def stop_broker(broker: RedisBroker) -> None:
    await broker.stop()


async def test_a_frozen_redis_is_noticed_and_what_it_missed_arrives_once(
    settings: Settings, store: Store, redis_server: RedisServer
) -> None:
    """Redis stops answering without closing anything (SIGSTOP, like a network partition): the
    subscriber notices by its idle ping, and after Redis thaws the message sent meanwhile
    arrives exactly once."""
    alice = await store.create_user("alice", "not-a-real-hash")
    here, there = RecordingHub(), RecordingHub()
    a = await start_broker(here, store, settings)
    b = await start_broker(there, store, settings)
    assert redis_server.proc is not None
    try:
        await publish(a, store, alice, "before")
        await until(lambda: there.seqs() == [1])

        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            await until(lambda: not b.all_subscribed())
            await publish(a, store, alice, "while frozen")
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        await until(b.all_subscribed)
        await until(lambda: there.seqs() == [1, 2])
        await publish(a, store, alice, "after")
        await until(lambda: there.seqs() == [1, 2, 3])
        await asyncio.sleep(0.3)  # room for a late duplicate to show up; none may
        assert there.seqs() == [1, 2, 3]
        assert here.seqs() == [1, 2, 3]
    finally:
        await stop_broker(a)
        await stop_broker(b)


def test_control_events_cross_nodes_with_every_field() -> None:
    event = CloseSockets(
        "removed from the room", user_id=7, room="secret", keep_session_id="s1", code=1000
    )
    assert control_event(control_envelope("node-a.1", event)) == event
    with pytest.raises(TypeError):  # from a newer node with a field this one lacks: refused
        control_event(Envelope("c", "x", payload='{"reason": "r", "colour": "red"}'))


async def publish(broker: RedisBroker, store: Store, user: User, text: str) -> None:
    """What the /ws handler does with a chat message: commit, then publish."""
    message, _ = await store.append_message("general", user, text, None)
    broker.publish("general", chat_frame(message), message.seq)


def test_a_rooms_frames_travel_together_whatever_they_hold() -> None:
    frames: list[tuple[int | None, str]] = [
        (7, '{"text": "two\\nlines"}'),
        (
            None,
            "a raw\nnewline, 12 34\n",
        ),  # a frame may hold anything, even what looks like a header
        (8, "Grüße, 🎉"),
    ]
    data = encode_room_frames("node-a.1", "dev ops", frames)
    assert decode_room_frames(data) == ("dev ops", frames)
    assert decode_room_frames(encode_room_frames("n", "r", frames[:1])) == ("r", frames[:1])
    for broken in (data[:-1], data + b"x", data.replace(b" 3 dev", b" 4 dev")):
        with pytest.raises(ValueError, match=r"past the end|after the last frame"):
            decode_room_frames(broken)


def test_frames_are_packed_per_room_and_never_across_a_control_event() -> None:
    control = control_envelope("n", CloseSockets("removed", user_id=1, room="a")).encode()
    batch: list[tuple[str, bytes | tuple[str, int | None, str]]] = [
        ("ch:a", ("a", 1, "a1")),
        ("ch:b", ("b", 1, "b1")),
        ("ch:a", ("a", 2, "a2")),
        ("control", control),
        ("ch:a", ("a", 3, "a3")),
    ]
    sent = pack("n", batch)
    assert [channel for channel, _ in sent] == ["ch:a", "ch:b", "control", "ch:a"]
    assert [decode_room_frames(data)[1] for _, data in sent if data != control] == [
        [(1, "a1"), (2, "a2")],
        [(1, "b1")],
        [(3, "a3")],
    ]


async def test_a_burst_in_a_room_is_one_publish_and_every_frame_arrives_in_order(
    settings: Settings, store: Store, redis_server: RedisServer
) -> None:
    alice = await store.create_user("alice", "not-a-real-hash")
    here, there = RecordingHub(), RecordingHub()
    a = await start_broker(here, store, settings)
    b = await start_broker(there, store, settings)
    redis = Redis.from_url(redis_server.url)
    try:
        await until(lambda: a.shards[0].subscribed.is_set())
        messages = [await store.append_message("general", alice, f"m{i}", None) for i in range(30)]
        await redis.config_resetstat()
        for message, _ in messages:  # one burst: nothing awaited in between
            a.publish("general", chat_frame(message), message.seq)
        a.publish("general", '{"type": "typing"}')
        await until(lambda: len(there.delivered) == 31)
        assert there.seqs() == [*range(1, 31), None]
        assert [payload for _, _, payload in there.delivered[:30]] == [
            chat_frame(m) for m, _ in messages
        ]
        publishes = (await redis.info("commandstats"))["cmdstat_publish"]["calls"]
        assert publishes == 1
        assert b.shards[0].frames_heard == 31
    finally:
        await redis.aclose()
        await stop_broker(a)
        await stop_broker(b)
