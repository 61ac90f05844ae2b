"""Files and images in messages: uploaded over HTTP, attached by a `chat` frame, served only to
those who may read the room, typed by their content, images re-encoded; they live exactly as
long as their message."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from typing import IO, Any

import pytest
from aiohttp import FormData, web
from PIL import Image, PngImagePlugin

from chat.keys import SETTINGS
from chat.media import DOWNLOAD, clean_name
from chat.web.files import browser_name
from tests.conftest import ClientFactory
from tests.helpers import Client, chat, csrf, join, post_form, receive_type, send
from tests.test_private_rooms import change_member, create_private


@pytest.fixture
def settings_env() -> dict[str, object]:
    return {
        "MAX_UPLOAD_BYTES": 64 * 1024,
        "UPLOAD_QUOTA_BYTES": 200 * 1024,
        "UPLOAD_RATE_PER_MINUTE": 6,
        "MAX_IMAGE_PIXELS": 1_000_000,
        "THUMBNAIL_PIXELS": 64,
    }


async def upload(
    client: Client,
    data: bytes | IO[bytes],
    name: str = "photo.png",
    room: str = "general",
    content_type: str = "image/png",
) -> Any:
    token = await csrf(client, f"/rooms/{room}" if room == "general" else "/")
    form = FormData(quote_fields=False)  # names as a browser sends them: UTF-8
    form.add_field("file", data, filename=name, content_type=content_type)
    return await client.post(f"/rooms/{room}/files", data=form, headers={"X-CSRF-Token": token})


async def uploaded(
    client: Client, data: bytes | IO[bytes], name: str = "photo.png", **kw: Any
) -> Any:
    response = await upload(client, data, name, **kw)
    assert response.status == 201, await response.text()
    return (await response.json())["file"]


def png(size: tuple[int, int] = (120, 80), **info: str) -> bytes:
    out = io.BytesIO()
    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    Image.new("RGB", size, (200, 30, 30)).save(out, "PNG", pnginfo=meta)
    return out.getvalue()


def count_rows(app: web.Application) -> tuple[int, int]:
    path = app[SETTINGS].var_dir / "chat.sqlite3"
    with sqlite3.connect(path) as db:
        files = db.execute("SELECT count(*) FROM files").fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM file_chunks").fetchone()[0]
    return int(files), int(chunks)


async def test_an_image_is_reencoded_attached_and_shown_to_the_room(
    client: Client, bob: Client
) -> None:
    secret = "GPS 51.5N 0.1W; <script>alert(1)</script>"
    file = await uploaded(client, png(Comment=secret), "holiday.png")
    assert file["type"] == "image/png" and (file["width"], file["height"]) == (120, 80)
    assert file["url"] == f"/files/{file['id']}/holiday.png"
    assert file["thumb"] == f"/files/{file['id']}/thumb/holiday.png"
    assert len(file["id"]) >= 22  # 128 random bits
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        ack = await chat(a, "general", "", files=[file["id"]], client_id="with-file")
        assert ack["type"] == "chat", ack
        assert ack["text"] == "" and ack["files"] == [file]
        seen = await receive_type(b, "chat")
        assert seen["files"] == [file]
    # What bob downloads: only pixels, shown inline, never sniffed.
    response = await bob.get(file["url"])
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert "private" in response.headers["Cache-Control"]
    body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body) == file["size"]
    assert b"GPS" not in body and b"script" not in body
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (120, 80) and "Comment" not in image.info
    # Asked again with its ETag: not sent again, but still checked.
    again = await bob.get(file["url"], headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    thumb = await bob.get(file["thumb"])
    assert thumb.status == 200 and thumb.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(await thumb.read())) as small:
        assert max(small.size) == 64
    # After a reload: the page and a join's history carry the same files.
    page = await (await bob.get("/rooms/general")).text()
    assert file["id"] in page
    async with bob.ws_connect("/ws") as b:
        history = await join(b, "general")
        assert history["messages"][-1]["files"] == [file]


async def test_a_png_name_with_html_inside_is_only_a_download(client: Client) -> None:
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    file = await uploaded(client, html, "cat.png")
    assert file["type"] == "application/octet-stream" and file["thumb"] is None
    assert file["width"] is None
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "look", files=[file["id"]])
    response = await client.get(file["url"])
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert await response.read() == html
    assert (await client.get(f"/files/{file['id']}/thumb/cat.png")).status == 404


async def test_an_svg_with_script_is_a_sandboxed_download(client: Client) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    file = await uploaded(client, svg, "logo.svg", content_type="image/svg+xml")
    assert file["type"] == "application/octet-stream" and file["name"] == "logo.svg"
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "logo", files=[file["id"]])
    response = await client.get(file["url"])
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"logo.svg\"; filename*=UTF-8''logo.svg"
    )
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_html_hidden_in_a_gif_does_not_survive(client: Client) -> None:
    out = io.BytesIO()
    Image.new("P", (10, 10), 1).save(out, "GIF", comment=b"<script>alert(1)</script>")
    polyglot = out.getvalue() + b"<html><script>alert(2)</script></html>"
    file = await uploaded(client, polyglot, "funny.gif")
    assert file["type"] == "image/gif"
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "lol", files=[file["id"]])
    body = await (await client.get(file["url"])).read()
    assert b"script" not in body and b"html" not in body
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (10, 10)


async def test_names_are_cleaned_and_sent_as_rfc_5987(client: Client) -> None:
    file = await uploaded(
        client, b"%PDF-1.4 not really", "../../etc/\u202eevil r\u00e9sum\u00e9.pdf"
    )
    assert file["name"] == "evil résumé.pdf"
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "cv", files=[file["id"]])
    response = await client.get(file["url"])
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"evil r_sum_.pdf\"; filename*=UTF-8''evil%20r%C3%A9sum%C3%A9.pdf"
    )


def test_names_lose_paths_controls_and_a_false_image_extension() -> None:
    assert clean_name("C:\\Users\\me\\a\x00b\u2066.txt", DOWNLOAD) == "ab.txt"
    assert clean_name("shot.gif", "image/png") == "shot.png"
    assert clean_name("shot", "image/webp") == "shot.webp"
    assert clean_name("shot.JPEG", "image/jpeg") == "shot.JPEG"
    assert clean_name("", DOWNLOAD) == "file" and clean_name("...", DOWNLOAD) == "file"
    assert len(clean_name("x" * 500 + ".txt", DOWNLOAD)) == 200
    # As browsers send a name in multipart/form-data (the HTML standard escapes these three).
    assert browser_name("say %22hi%22%0A.txt") == 'say "hi"\n.txt'


async def test_too_large_a_file_is_refused_with_413(client: Client) -> None:
    response = await upload(client, b"x" * (64 * 1024 + 1), "big.bin")
    assert response.status == 413
    assert "larger than" in (await response.json())["message"]


async def test_a_decompression_bomb_is_refused(client: Client) -> None:
    out = io.BytesIO()
    Image.new("L", (4000, 4000)).save(out, "PNG", optimize=True)
    assert len(out.getvalue()) < 64 * 1024  # small on the wire, 16 million pixels inside
    response = await upload(client, out.getvalue(), "bomb.png")
    assert response.status == 413
    assert "too many pixels" in (await response.json())["message"]


async def test_the_quota_counts_what_is_stored(client: Client) -> None:
    noise = bytes(range(256)) * 240  # 60 KiB
    for _ in range(3):
        await uploaded(client, noise, "n.bin")
    response = await upload(client, noise, "n.bin")
    assert response.status == 413
    assert "of the 0.2 MB you may store" in (await response.json())["message"]


async def test_uploads_made_at_once_cannot_pass_the_quota_together(client: Client) -> None:
    """Four tabs upload at the same moment: three files fit the quota, not all four."""
    noise = bytes(range(256)) * 240  # 60 KiB
    responses = await asyncio.gather(*(upload(client, noise, f"n{i}.bin") for i in range(4)))
    assert sorted(r.status for r in responses) == [201, 201, 201, 413]
    refused = next(r for r in responses if r.status == 413)
    assert "of the 0.2 MB you may store" in (await refused.json())["message"]
    # What the three stored take is what counts: the next upload that fits is taken.
    await uploaded(client, b"x" * 1024, "small.txt")


async def test_uploads_are_rate_limited(bob: Client) -> None:
    for _ in range(6):
        await uploaded(bob, b"tiny file", "t.txt")
    response = await upload(bob, b"tiny file", "t.txt")
    assert response.status == 429 and "Retry-After" in response.headers


async def test_an_upload_needs_the_csrf_token_and_a_login(client: Client, anon: Client) -> None:
    form = FormData()
    form.add_field("file", b"data", filename="a.txt")
    assert (await client.post("/rooms/general/files", data=form)).status == 403
    token = await csrf(anon, "/login")
    form = FormData()
    form.add_field("file", b"data", filename="a.txt")
    response = await anon.post("/rooms/general/files", data=form, headers={"X-CSRF-Token": token})
    assert response.status == 401


async def test_only_the_uploader_attaches_and_only_in_its_room(client: Client, bob: Client) -> None:
    await post_form(client, "/rooms", {"name": "other"}, page="/")
    file = await uploaded(client, b"alice's notes", "notes.txt")
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(a, "other")
        await join(b, "general")
        stolen = await chat(b, "general", "mine now", files=[file["id"]])
        assert stolen["type"] == "error" and stolen["code"] == "no_such_file"
        moved = await chat(a, "other", "here", files=[file["id"]])
        assert moved["type"] == "error" and moved["code"] == "no_such_file"
        ok = await chat(a, "general", "here", files=[file["id"]])
        assert ok["files"][0]["id"] == file["id"]
        twice = await chat(a, "general", "again", files=[file["id"]])
        assert twice["type"] == "error" and twice["code"] == "no_such_file"
    # Not attached: nobody but its uploader sees an upload.
    pending = await uploaded(client, b"draft", "draft.txt")
    assert (await bob.get(pending["url"])).status == 404
    assert (await client.get(pending["url"])).status == 200


async def test_a_removed_member_a_stranger_and_a_guess_get_404(
    bob: Client, new_client: ClientFactory
) -> None:
    carol, dave = await new_client("carol"), await new_client("dave")
    await create_private(bob, "secret")
    await change_member(bob, "secret", "carol", "invite")
    file = await uploaded(bob, png(), "plan.png", room="secret")
    async with bob.ws_connect("/ws") as b:
        await join(b, "secret")
        await chat(b, "secret", "the plan", files=[file["id"]])
    assert (await carol.get(file["url"])).status == 200
    assert (await dave.get(file["url"])).status == 404
    assert (await dave.get(file["thumb"])).status == 404
    await change_member(bob, "secret", "carol", "remove")
    assert (await carol.get(file["url"])).status == 404
    assert (await carol.get(file["thumb"])).status == 404
    assert (await carol.get("/files/AAAAAAAAAAAAAAAAAAAAAA/plan.png")).status == 404
    # Nor can a stranger upload into it.
    assert (await upload(dave, png(), "x.png", room="secret")).status == 404


async def test_trimming_a_message_out_of_the_history_removes_its_files(
    client: Client, app: web.Application
) -> None:
    file = await uploaded(client, png(), "first.png")
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "first", files=[file["id"]])
        assert count_rows(app) == (1, 2)  # the file and its thumbnail, one chunk each
        for i in range(49):
            await chat(a, "general", f"filler {i}")
        assert count_rows(app) == (1, 2)  # 50 kept: still there
        await chat(a, "general", "the 51st")
    assert count_rows(app) == (0, 0)
    assert (await client.get(file["url"])).status == 404


async def test_deleting_a_message_removes_its_files(client: Client, app: web.Application) -> None:
    file = await uploaded(client, b"to be deleted", "gone.txt")
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        ack = await chat(a, "general", "oops", files=[file["id"]])
        assert count_rows(app) == (1, 1)
        await send(a, type="delete", room="general", seq=ack["seq"])
        update = await receive_type(a, "update")
        assert update["message"]["deleted"] is True and "files" not in update["message"]
    assert count_rows(app) == (0, 0)
    assert (await client.get(file["url"])).status == 404


async def test_uploads_never_attached_expire(client: Client, app: web.Application) -> None:
    from chat.keys import STORE
    from chat.server.upkeep import prune_uploads
    from chat.storage.statements import now_ms

    kept = await uploaded(client, b"attached", "a.txt")
    await uploaded(client, b"forgotten", "f.txt")
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "keep", files=[kept["id"]])
    assert count_rows(app) == (2, 2)
    assert await prune_uploads(app[STORE], app[SETTINGS]) == 0  # not a day old yet
    day_ago = now_ms() - 24 * 3600 * 1000 - 1
    with sqlite3.connect(app[SETTINGS].var_dir / "chat.sqlite3") as db:
        db.execute("UPDATE files SET created = ?", (day_ago,))
    assert await prune_uploads(app[STORE], app[SETTINGS]) == 1  # UPLOAD_EXPIRY_SECONDS
    assert count_rows(app) == (1, 1)
    assert (await client.get(kept["url"])).status == 200


async def test_a_resent_message_with_files_is_acked_with_its_files_once(
    client: Client, app: web.Application
) -> None:
    file = await uploaded(client, b"sent twice", "twice.txt")
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        first = await chat(a, "general", "once", files=[file["id"]], client_id="resend-me")
    async with client.ws_connect("/ws") as a:  # the ack was lost: the page sends it again
        await join(a, "general", since=first["seq"])
        again = await chat(a, "general", "once", files=[file["id"]], client_id="resend-me")
    assert again["type"] == "chat" and again["seq"] == first["seq"]
    assert again["files"] == first["files"]
    assert count_rows(app) == (1, 1)


@pytest.mark.parametrize("settings_env", [{"MAX_UPLOAD_BYTES": 4 * 1024 * 1024}])
async def test_a_file_of_several_chunks_is_stored_and_streamed_whole(client: Client) -> None:
    data = bytes((i * 7919) % 251 for i in range(3 * 1024 * 1024 + 12345))
    file = await uploaded(client, io.BytesIO(data), "big.bin")
    assert file["size"] == len(data)
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "big", files=[file["id"]])
    response = await client.get(file["url"])
    assert response.status == 200 and int(response.headers["Content-Length"]) == len(data)
    assert await response.read() == data


async def test_a_photo_is_turned_upright_and_loses_its_exif(client: Client) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show it rotated 90° clockwise
    exif[0x010F] = "SpyCam"  # Make
    out = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 200, 0)).save(out, "JPEG", exif=exif.tobytes())
    file = await uploaded(client, out.getvalue(), "IMG_0001.JPG")
    assert file["type"] == "image/jpeg" and (file["width"], file["height"]) == (20, 40)
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        await chat(a, "general", "upright", files=[file["id"]])
    body = await (await client.get(file["url"])).read()
    assert b"SpyCam" not in body
    with Image.open(io.BytesIO(body)) as image:
        assert image.size == (20, 40) and not image.getexif()
