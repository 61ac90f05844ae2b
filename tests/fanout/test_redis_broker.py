"""Two brokers in this process, as two nodes would have, on a real redis-server and one store."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from chat.fanout.broker import CloseSockets
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
from tests.conftest import make_settings
from tests.fanout.test_sequencer import RecordingHub
from tests.servers import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return make_settings(
        tmp_path,
        REDIS_URL=redis_url,
        REDIS_PREFIX=redis_prefix,
        PRESENCE_TTL_SECONDS="2",
        PRESENCE_HEARTBEAT_SECONDS="0.3",
        REDIS_BACKOFF_MAX_SECONDS="0.3",
        REDIS_TIMEOUT_SECONDS="0.5",
        FANOUT_GAP_SECONDS="0.1",
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    store = await Store.open(settings.database_url, history_limit=50)
    try:
        yield store
    finally:
        await store.close()


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


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


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
