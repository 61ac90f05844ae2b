"""Operations: /healthz, /readyz, /metrics (Prometheus text, loopback or token), JSON logs,
start-up validation of the new settings, and migration 0002 keeping existing data."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from chat.keys import STORE
from chat.server.logs import JsonFormatter
from chat.settings import Settings, SettingsError
from chat.web.metrics import metrics_allowed
from tests.conftest import make_settings
from tests.helpers import Client, chat, join, login, send


async def test_healthz_is_json_ok(anon: Client) -> None:
    response = await anon.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(anon: Client, app: web.Application) -> None:
    response = await anon.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"status": "ready", "checks": {"database": "ok"}}
    # Point the store at a database that cannot be opened: not ready, and it says why.
    store = app[STORE]
    working = store.engine
    store.engine = create_async_engine("sqlite+aiosqlite:////nonexistent-dir/x/chat.sqlite3")
    try:
        response = await anon.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("error:")
    finally:
        await store.engine.dispose()
        store.engine = working
    assert (await anon.get("/readyz")).status == 200


def scrape(text: str) -> dict[str, float]:
    """Every sample as name{labels} -> value."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.mark.parametrize("settings_env", [{"CHAT_RATE_PER_SECOND": "1", "CHAT_BURST": "2"}])
async def test_metrics_count_what_happens(client: Client, bob: Client, new_client: object) -> None:
    before = scrape(await (await client.get("/metrics")).text())
    assert before["chat_open_connections"] == 0
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general", since=0)
        await chat(a, "general", "one")
        await chat(a, "general", "two")
        assert (await chat(a, "general", "three"))["code"] == "rate_limited"
        await send(a, type="nonsense")
        response = await client.get("/metrics")
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        now = scrape(await response.text())
    assert now["chat_open_connections"] == 2
    assert now["chat_joined_rooms"] == 2
    assert now["chat_messages_in_total"] == 2
    assert now["chat_messages_out_total"] == 4  # two messages to two sockets
    assert now["chat_frames_in_total"] >= 6
    assert now["chat_rate_limit_hits_total{limit=chat}"] == 1
    assert now["chat_history_resumes_total"] == 1
    assert now["chat_send_queue_depth_gcount"] == 2
    assert "chat_send_queue_depth_bucket{le=+Inf}" in now
    for name in ("chat_frames_dropped_total", "chat_slow_consumer_closes_total"):
        assert name in now
    anon = await new_client()  # type: ignore[operator]
    await login(anon, "alice", "wrong password")
    after = scrape(await (await client.get("/metrics")).text())
    assert after["chat_login_failures_total"] == 1
    assert after["chat_open_connections"] == 0


async def test_metrics_use_a_registry_per_app(client: Client) -> None:
    await client.get("/metrics")
    assert REGISTRY.get_sample_value("chat_open_connections") is None


def test_metrics_are_for_loopback_or_the_token() -> None:
    token = "s3cret-metrics-token"
    for remote in ("127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"):
        assert metrics_allowed(remote, None, None), remote
    others: list[str | None] = ["10.0.0.5", "192.168.1.2", "2001:db8::1", None, "not an ip"]
    for other in others:
        assert not metrics_allowed(other, None, token), other
        assert not metrics_allowed(other, "Bearer wrong", token), other
        assert not metrics_allowed(other, f"Bearer {token}", None), other
        assert metrics_allowed(other, f"Bearer {token}", token), other


@pytest.mark.parametrize("settings_env", [{"METRICS_TOKEN": "s3cret-metrics-token"}])
async def test_metrics_with_a_token_still_answer_loopback_and_the_token(anon: Client) -> None:
    assert (await anon.get("/metrics")).status == 200
    response = await anon.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert response.status == 200


def test_json_log_lines_carry_the_event_fields() -> None:
    record = logging.LogRecord(
        "chat.moderation", logging.WARNING, __file__, 1, "ban: %s", ("bob",), None
    )
    record.event = "moderation"
    record.actor = "alice"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "ban: bob" and data["level"] == "WARNING"
    assert data["event"] == "moderation" and data["actor"] == "alice"
    assert data["logger"] == "chat.moderation" and data["ts"].endswith("+00:00")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected text or json"),
        ({"TLS_CERT": "/etc/hostname"}, "TLS_KEY: expected a file path"),
        ({"TLS_KEY": "/etc/hostname"}, "TLS_CERT: expected a file path"),
        ({"TLS_CERT": "/nope.pem", "TLS_KEY": "/etc/hostname"}, "TLS_CERT: expected a readable"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN: expected at least 16"),
        ({"READY_TIMEOUT": "0"}, "READY_TIMEOUT: expected a number >= 0.1"),
    ],
)
def test_new_settings_are_validated_with_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as info:
        make_settings(tmp_path, **env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_tls_makes_cookies_secure_by_default_unless_told_otherwise(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("placeholder")
    assert make_settings(tmp_path, TLS_CERT=pem, TLS_KEY=pem).cookie_secure
    assert not make_settings(tmp_path, TLS_CERT=pem, TLS_KEY=pem, COOKIE_SECURE="0").cookie_secure
    assert not make_settings(tmp_path).cookie_secure
    assert Settings().scheme == "http"


async def test_migration_0002_keeps_data_written_under_0001(tmp_path: Path) -> None:
    """A database made by 0001 upgrades in place: users, rooms and messages survive."""
    from alembic import command

    from chat.storage.engine import create_engine
    from chat.storage.migrate import alembic_config
    from chat.storage.store import Store

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0001"))
    await engine.dispose()
    db = sqlite3.connect(tmp_path / "old.sqlite3")
    with db:
        db.execute("INSERT INTO users VALUES (1, 'old', 'hash', 1, 0)")
        db.execute("INSERT INTO rooms VALUES (1, 'general', 1, 1, 0)")
        db.execute("INSERT INTO messages VALUES (1, 1, 1, 'from before', 0, NULL)")
    db.close()
    store = await Store.open(url, history_limit=50)
    try:
        user = await store.user_by_name("old")
        assert user is not None and user.session_version == 0 and not user.banned
        messages, at = await store.history("general", None)
        complete = at.complete
        assert [m.text for m in messages] == ["from before"] and complete
        room = await store.room_by_name("general")
        assert room is not None and not room.is_private
    finally:
        await store.close()
    # And back down, still without losing a row.
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0001"))
    await engine.dispose()
    db = sqlite3.connect(tmp_path / "old.sqlite3")
    assert db.execute("SELECT text FROM messages").fetchall() == [("from before",)]
    assert db.execute("SELECT username FROM users").fetchall() == [("old",)]
    db.close()
