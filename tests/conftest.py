"""Fixtures: an app on a real SQLite file, a logged-in client, a second user; and, for tests of
the storage layer alone, a store on a real SQLite file with one user in it.

Helpers that speak the pages (register, log in, CSRF) and the socket live in tests/helpers.py.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from chat.app import create_app
from chat.models import User
from chat.settings import Settings
from chat.storage.store import Store
from tests.helpers import register

# The real redis-server and PostgreSQL fixtures (redis_url, pg_url, ...).
pytest_plugins = ["tests.servers"]

REQUIRE_ALL = os.environ.get("CHAT_TEST_REQUIRE_ALL") == "1"

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


def need(condition: bool, reason: str) -> None:
    """Skip locally when a real component is missing; in CI (CHAT_TEST_REQUIRE_ALL=1) fail."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required component missing: {reason}")
    pytest.skip(reason)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    env = {
        "CHAT_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test secret key, long enough",
        # Argon2id still, but cheap: tests register many accounts.
        "PASSWORD_TIME_COST": "1",
        "PASSWORD_MEMORY_KIB": "8192",
        # Tests send bursts on purpose; the rate limit has its own tests with its own values.
        "CHAT_RATE_PER_SECOND": "1000",
        "CHAT_BURST": "1000",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


@pytest.fixture
def settings_env() -> dict[str, object]:
    """Overrides for the app's environment; a test module may redefine this fixture."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, settings_env: dict[str, object]) -> Settings:
    return make_settings(tmp_path, **settings_env)


@pytest.fixture
def app(settings: Settings) -> web.Application:
    return create_app(settings)


@pytest.fixture
async def server(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], app: web.Application
) -> TestServer:
    return await aiohttp_server(app)


@pytest.fixture
def new_client(
    aiohttp_client: Callable[[TestServer], Awaitable[TestClient[web.Request, web.Application]]],
    server: TestServer,
) -> ClientFactory:
    """Make a client with its own cookie jar on the shared server, registered as `username`."""

    async def make(username: str | None = None) -> TestClient[web.Request, web.Application]:
        client = await aiohttp_client(server)
        if username is not None:
            await register(client, username)
        return client

    return make


@pytest.fixture
async def client(new_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    """Logged in as alice, the first account, hence the admin."""
    return await new_client("alice")


@pytest.fixture
async def bob(new_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    """A second, ordinary user."""
    return await new_client("bob")


@pytest.fixture
async def anon(new_client: ClientFactory) -> TestClient[web.Request, web.Application]:
    return await new_client()


@pytest.fixture
def history_limit() -> int:
    """The `store` fixture's HISTORY_LIMIT; a test module may redefine this fixture."""
    return 50


@pytest.fixture
async def store(tmp_path: Path, history_limit: int) -> AsyncIterator[Store]:
    """A store on a fresh SQLite file (tmp_path / "chat.sqlite3"), group commit included."""
    store = await Store.open(
        f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}", history_limit=history_limit
    )
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def alice(store: Store) -> User:
    """The store's first user (a row, no session: for tests below the web layer)."""
    return await store.create_user("alice", "not-a-real-hash")
