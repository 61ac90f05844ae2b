"""A logout ends the session on every node: two real server processes on one Redis and one
database, a copy of the cookie taken before the logout on one node tried on the other."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from tests.cluster import Cluster
from tests.helpers import post_form

pytestmark = [pytest.mark.redis]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite3'}"
    url = request.getfixturevalue("pg_url")
    assert isinstance(url, str)
    return url


async def test_a_cookie_copied_before_logout_is_refused_on_every_node(
    cluster: Cluster, database_url: str
) -> None:
    a, b = await cluster.start(database_url, "a", "b")
    alice = await cluster.browser(a, "alice")
    jar = alice.session.cookie_jar.filter_cookies(URL(a.url))
    stolen = {"Cookie": f"chat_session={jar['chat_session'].value}"}
    async with aiohttp.ClientSession() as thief:
        async with thief.get(f"{b.url}/rooms.json", headers=stolen) as before:
            assert before.status == 200
        async with alice.ws(b) as socket_on_b:
            await post_form(alice.client, "/logout", {}, page="/")
            # The socket on the other node is closed too.
            closed = await socket_on_b.receive(timeout=10)
            assert closed.type in {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED}
        for node in (a, b):
            async with thief.get(f"{node.url}/", headers=stolen, allow_redirects=False) as page:
                assert page.status == 302 and page.headers["Location"].startswith("/login")
            async with thief.get(f"{node.url}/rooms.json", headers=stolen) as feed:
                assert feed.status == 401
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await thief.ws_connect(f"{node.url}/ws", headers=stolen)
            assert refused.value.status == 401
