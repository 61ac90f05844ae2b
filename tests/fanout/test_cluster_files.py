"""Files on several nodes: they live in the shared database, so any node serves what another
took in, and trims them with their message."""

from __future__ import annotations

import io

import pytest
from aiohttp import FormData
from PIL import Image
from sqlalchemy import text

from chat.storage.engine import create_engine
from tests.cluster import Cluster
from tests.helpers import chat, csrf, join, receive_type

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


@pytest.mark.postgres
async def test_an_upload_to_one_node_is_served_by_the_other(cluster: Cluster, pg_url: str) -> None:
    a, b = await cluster.start(pg_url, "node-a", "node-b")
    alice = await cluster.browser(a, "alice")
    bob = await cluster.browser(b, "bob")
    image = io.BytesIO()
    Image.new("RGB", (300, 200), (10, 120, 200)).save(image, "JPEG")
    token = await csrf(alice.client, "/rooms/general")
    form = FormData(quote_fields=False)
    form.add_field("file", image.getvalue(), filename="sky.jpg", content_type="image/jpeg")
    async with alice.session.post(
        f"{a.url}/rooms/general/files", data=form, headers={"X-CSRF-Token": token}
    ) as response:
        assert response.status == 201, await response.text()
        file = (await response.json())["file"]
    assert file["type"] == "image/jpeg" and (file["width"], file["height"]) == (300, 200)
    async with alice.ws(a) as wa, bob.ws(b) as wb:
        await join(wa, "general")
        await join(wb, "general")
        ack = await chat(wa, "general", "the sky today", files=[file["id"]])
        assert ack["files"] == [file]
        seen = await receive_type(wb, "chat")
        assert seen["files"] == [file]
    async with bob.session.get(f"{b.url}{file['url']}") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        body = await response.read()
    assert len(body) == file["size"]
    with Image.open(io.BytesIO(body)) as decoded:
        assert decoded.size == (300, 200)
    async with bob.session.get(f"{b.url}{file['thumb']}") as response:
        assert response.status == 200 and response.headers["Content-Type"] == "image/webp"
    # The page node b renders carries it too.
    assert file["id"] in await bob.page(b, "/rooms/general")
    assert await rows(pg_url) == (1, 2)
    # Trimmed out of the kept history (50 messages) on PostgreSQL: its rows go with it.
    async with alice.ws(a) as wa:
        await join(wa, "general")
        for i in range(50):
            await chat(wa, "general", f"filler {i}")
    assert await rows(pg_url) == (0, 0)
    async with bob.session.get(f"{b.url}{file['url']}") as response:
        assert response.status == 404


async def rows(database_url: str) -> tuple[int, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            files = (await conn.execute(text("SELECT count(*) FROM files"))).scalar_one()
            chunks = (await conn.execute(text("SELECT count(*) FROM file_chunks"))).scalar_one()
    finally:
        await engine.dispose()
    return int(files), int(chunks)
