"""Rooms list, creating rooms, the room page, the admin page, error pages, headers."""

from __future__ import annotations

import re

import pytest
from aiohttp import web

from chat.keys import STORE
from tests.helpers import Client, chat, create_room, join, post_form


async def test_general_exists_from_the_start(client: Client) -> None:
    response = await client.get("/")
    assert response.status == 200
    assert 'href="/rooms/general"' in await response.text()


async def test_create_room_and_open_it(client: Client) -> None:
    response = await create_room(client, "Design-Team")  # names are lower-cased
    assert response.status == 302
    assert response.headers["Location"] == "/rooms/design-team"
    page = await client.get("/rooms/design-team")
    assert page.status == 200
    assert "#design-team" in await page.text()


async def test_bad_and_taken_room_names(client: Client) -> None:
    for name, status, message in [
        ("has space", 400, "Room names are"),
        ("-leading", 400, "Room names are"),
        ("x" * 33, 400, "Room names are"),
        ("general", 409, "already exists"),
    ]:
        response = await create_room(client, name)
        assert response.status == status, name
        body = await response.text()
        assert message in body
        assert 'class="form-error"' in body


async def test_rooms_list_counts_people_in_each_room(client: Client, bob: Client) -> None:
    async with bob.ws_connect("/ws") as ws:
        await join(ws, "general")
        body = await (await client.get("/")).text()
        assert '<span class="count">1</span> online' in body


async def test_room_page_renders_history_escaped_without_javascript(client: Client) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        await chat(ws, "general", "hello <script>alert(1)</script>")
        last = await chat(ws, "general", "second")
    body = await (await client.get("/rooms/general")).text()
    assert "hello &lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "<script>alert(1)" not in body
    assert f'data-last-seq="{last["seq"]}"' in body
    assert body.index("hello &lt;") < body.index("second")


async def test_unknown_room_is_a_404_page(client: Client) -> None:
    response = await client.get("/rooms/nowhere")
    assert response.status == 404
    body = await response.text()
    assert "There is no room named" in body
    assert "Traceback" not in body
    assert response.content_type == "text/html"


async def test_unknown_path_is_a_rendered_404(client: Client) -> None:
    response = await client.get("/no/such/page")
    assert response.status == 404
    assert "<!doctype html>" in await response.text()


async def test_admin_page_forbidden_to_others(client: Client, bob: Client, anon: Client) -> None:
    response = await bob.get("/admin")
    assert response.status == 403
    assert "Only administrators" in await response.text()
    response = await anon.get("/admin", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/login?next=/admin"


async def test_admin_page_lists_who_is_online(
    client: Client, bob: Client, app: web.Application
) -> None:
    await app[STORE].create_room("random", creator_id=None)
    async with bob.ws_connect("/ws") as ws1, bob.ws_connect("/ws") as ws2:
        await join(ws1, "general")
        await join(ws2, "random")
        body = await (await client.get("/admin")).text()
    row = body[body.index('<tr data-user="bob">') :]
    row = row[: row.index("</tr>")]
    assert "#general" in row and "#random" in row
    assert '<td class="connections">2</td>' in row
    assert "<time datetime=" in row


async def test_security_headers_on_every_page(anon: Client) -> None:
    for path in ["/login", "/register", "/nowhere", "/static/chat.js"]:
        response = await anon.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


async def test_pages_have_no_inline_scripts_or_styles(client: Client) -> None:
    for path in ["/", "/rooms/general", "/admin", "/login"]:
        body = await (await client.get(path)).text()
        assert "<script>" not in body and "style=" not in body and "<style" not in body


async def test_the_first_visitor_creates_the_administrator(anon: Client, bob: Client) -> None:
    """(bob registered first here, so he is the admin; `anon` then sees the ordinary page.)"""
    page = await (await bob.get("/")).text()
    assert "You are the administrator of chat" in page
    assert "You are the administrator" not in await (await bob.get("/")).text()  # said once
    register = await (await anon.get("/register")).text()
    assert "Create an account" in register and "administrator account" not in register


async def test_with_no_account_the_front_page_asks_for_the_administrator(anon: Client) -> None:
    response = await anon.get("/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/register"
    page = await (await anon.get("/register")).text()
    assert "<h1>Create the administrator account</h1>" in page


@pytest.mark.parametrize("settings_env", [{"INSTANCE_NAME": "Acme <Team>"}])
async def test_the_instance_name_is_in_the_header_and_titles(client: Client) -> None:
    page = await (await client.get("/")).text()
    assert "<title>Rooms · Acme &lt;Team&gt;</title>" in page
    assert '<a class="brand" href="/">Acme &lt;Team&gt;</a>' in page


@pytest.mark.parametrize("settings_env", [{"HISTORY_LIMIT": "30", "HISTORY_PAGE_SIZE": "10"}])
async def test_a_long_history_is_served_a_page_at_a_time(
    client: Client, bob: Client, anon: Client
) -> None:
    async with client.ws_connect("/ws") as ws:
        await join(ws, "general")
        for i in range(1, 36):  # 35 said, the last 30 (6..35) kept
            await chat(ws, "general", f"m{i}")
    page = await (await client.get("/rooms/general")).text()
    assert page.count('class="msg') == 10 and ">m26</p>" in page and ">m25</p>" not in page
    assert 'data-oldest-seq="26"' in page and 'id="load-older"' in page

    older = await (await client.get("/rooms/general/history.json?before=26")).json()
    assert [m["text"] for m in older["messages"]] == [f"m{i}" for i in range(16, 26)]
    assert older["older"] and older["oldest_seq"] == 16
    last = await (await client.get("/rooms/general/history.json?before=6")).json()
    assert last == {"messages": [], "older": False, "forgotten": True, "oldest_seq": 6}
    first = await (await client.get("/rooms/general/history.json?before=16")).json()
    assert [m["seq"] for m in first["messages"]] == list(range(6, 16))
    assert first["older"] is False and first["forgotten"] is True

    assert (await anon.get("/rooms/general/history.json?before=5")).status == 401
    assert (await client.get("/rooms/general/history.json?before=x")).status == 400
    for before in ("9" * 30, "9" * 5000, "%C2%B2", "-1"):  # too big for a seq, for int(); '²'
        url = f"/rooms/general/history.json?before={before}"
        assert (await client.get(url)).status == 400
    await post_form(client, "/rooms", {"name": "hidden", "private": "1"}, page="/")
    assert (await bob.get("/rooms/hidden/history.json?before=5")).status == 404


async def test_scripts_load_as_modules_and_imports_are_never_stale(client: Client) -> None:
    page = await (await client.get("/rooms/general")).text()
    match = re.search(r'<script type="module" src="(/static/chat\.js\?v=[^"]+)"></script>', page)
    assert match, "chat.js is a module with a versioned URL"
    versioned = await client.get(match.group(1))
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    for module in ("outbox.js", "typing.js", "bucket.js", "text.js"):  # imported by bare URL
        response = await client.get(f"/static/{module}")
        assert response.status == 200 and response.headers["Cache-Control"] == "no-cache"
        assert "javascript" in response.headers["Content-Type"]
