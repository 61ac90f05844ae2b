"""A database that fails a store, on every backend: the sender gets `unavailable` with
`retry_after` on a socket that stays open (never a 1006 drop with a traceback), and sends again."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chat.app import create_app
from tests.conftest import make_settings
from tests.helpers import chat, fail_batches_holding, join, register

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]

UNAVAILABLE = {
    "type": "error",
    "code": "unavailable",
    "message": "The message could not be stored.",
    "ref": "d-1",
    "retry_after": 2.0,
}

# A real PostgreSQL error for one message (as a full disk or a lost connection would be for
# all of them): the trigger refuses it inside the storing transaction.
REFUSE_DOOMED = """
CREATE FUNCTION refuse_doomed() RETURNS trigger AS $$
BEGIN
  IF NEW.text = 'doomed' THEN RAISE EXCEPTION 'disk full (simulated)'; END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER refuse_doomed BEFORE INSERT ON messages
  FOR EACH ROW EXECUTE FUNCTION refuse_doomed();
"""


async def _refuse_doomed(pg_url: str) -> None:
    engine = create_async_engine(pg_url)
    try:
        async with engine.begin() as conn:
            for statement in REFUSE_DOOMED.split(";\nCREATE TRIGGER"):
                if not statement.lstrip().startswith("CREATE FUNCTION"):
                    statement = "CREATE TRIGGER" + statement
                await conn.execute(text(statement.strip().rstrip(";")))
    finally:
        await engine.dispose()


async def _unavailable_then_stored(
    client: TestClient[web.Request, web.Application], caplog: pytest.LogCaptureFixture
) -> None:
    await register(client, "alice")
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        with caplog.at_level(logging.WARNING):
            error = await chat(ws, "general", "doomed", client_id="d-1")
        assert error == UNAVAILABLE
        assert not ws.closed
        # The same socket goes on: the next message takes seq 1 (the failed one took none).
        ack = await chat(ws, "general", "fine")
        assert ack["type"] == "chat" and ack["seq"] == 1
    # Handled: no "Error handling request" traceback from aiohttp.
    assert not [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info]
    assert any("the database failed a chat frame" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
async def test_a_failed_store_on_postgresql_is_unavailable_on_an_open_socket(
    tmp_path: Path, pg_url: str, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(tmp_path, DATABASE_URL=pg_url))
    client = await aiohttp_client(app)
    await _refuse_doomed(pg_url)
    await _unavailable_then_stored(client, caplog)


@pytest.mark.redis
async def test_a_failed_store_with_redis_is_unavailable_on_an_open_socket(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    aiohttp_client: AiohttpClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With Redis, the handler awaits the store (SQLite's group commit) instead of handing the
    message over: the same promise."""
    app = create_app(make_settings(tmp_path, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix))
    client = await aiohttp_client(app)
    fail_batches_holding(monkeypatch, "doomed", sqlite3.OperationalError("disk I/O error"))
    await _unavailable_then_stored(client, caplog)
