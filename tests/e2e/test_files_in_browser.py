"""Files in the browser: attached by the button, by dropping them on the room and by pasting
them, uploaded with a progress bar, then shown to everyone as a thumbnail (an image) or a card
(any other file), live and after a reload."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image
from playwright.sync_api import FilePayload, Page, expect

from tests.e2e.conftest import TIMEOUT_MS, PersonFactory
from tests.e2e.test_chat_in_browser import open_room, say

pytestmark = pytest.mark.e2e
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def server_env() -> dict[str, str]:
    return {"MAX_UPLOAD_BYTES": str(64 * 1024)}


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


# A File built in the page from base64, carried by a DataTransfer as a drop or a paste would.
DISPATCH = """([kind, name, type, b64]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type }));
  const options = { bubbles: true, cancelable: true };
  if (kind === "drop") {
    const room = document.getElementById("room");
    room.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, ...options }));
    room.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, ...options }));
  } else {
    document.getElementById("text").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: transfer, ...options }));
  }
}"""


def dispatch(page: Page, kind: str, name: str, type_: str, data: bytes) -> None:
    page.evaluate(DISPATCH, [kind, name, type_, base64.b64encode(data).decode()])


def uploaded(page: Page, n: int) -> None:
    expect(page.locator("#attach-tray .upload[data-status=done]")).to_have_count(n)


def thumbnails_loaded(page: Page) -> int:
    return int(
        page.evaluate(
            """() => [...document.querySelectorAll('#messages .file-image img')]
                 .filter((img) => img.complete && img.naturalWidth > 0).length"""
        )
    )


def check_files(page: Page) -> None:
    images = page.locator("#messages .msg .file-image")
    expect(images).to_have_count(2)
    expect(images.nth(0)).to_have_attribute(
        "title", re.compile(r"^red\.png \(\d+ B\)$"), timeout=TIMEOUT_MS
    )
    cards = page.locator("#messages .msg .file-card")
    expect(cards).to_have_count(1)
    expect(cards.locator(".file-name")).to_have_text("<img src=x onerror=alert(1)>.txt")
    expect(cards.locator(".file-size")).to_have_text("25 B · download")
    page.wait_for_function(
        """() => [...document.querySelectorAll('#messages .file-image img')]
             .every((img) => img.complete && img.naturalWidth > 0)"""
    )
    assert thumbnails_loaded(page) == 2
    # The caption is the message's text; a file alone has none.
    expect(
        page.locator("#messages .msg", has=page.locator(".file-card")).locator(".text")
    ).to_have_text("")


def test_files_by_button_drop_and_paste_reach_everyone_live_and_after_reload(
    person: PersonFactory,
) -> None:
    alice, bob = person("alice"), person("bob")
    a, b = open_room(alice), open_room(bob)
    red = png((220, 20, 20))
    # By the button (its file input), with a caption.
    a.set_input_files(
        "#attach-input", files=[FilePayload(name="red.png", mimeType="image/png", buffer=red)]
    )
    uploaded(a, 1)
    say(a, "a red square")
    expect(a.locator("#attach-tray")).to_be_hidden()
    # Dropped on the room: a text file, whose name is only ever text.
    dispatch(
        a, "drop", "<img src=x onerror=alert(1)>.txt", "text/plain", b"nothing to see here, bob."
    )
    uploaded(a, 1)
    a.locator("#text").press("Enter")  # no caption
    # Pasted into the message: a screenshot.
    dispatch(a, "paste", "image.png", "image/png", png((20, 20, 220)))
    uploaded(a, 1)
    expect(a.locator("#attach-tray .upload-name")).to_have_text(
        re.compile(r"pasted-\d{4}-\d\d-\d\d-\d{6}\.png")
    )
    say(a, "and blue")
    for page in (a, b):
        check_files(page)
    b.reload()
    expect(b.locator("#room")).to_have_attribute("data-joined", "true")
    check_files(b)
    # The full size opens from the thumbnail, served as an image.
    href = b.locator("#messages .file-image").nth(0).get_attribute("href")
    assert href is not None
    response = b.request.get(href)
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    assert alice.console_errors == [] and bob.console_errors == []


def test_a_file_too_large_is_refused_before_it_is_sent(person: PersonFactory) -> None:
    alice = person("alice")
    a = open_room(alice)
    big = b"x" * (100 * 1024)
    a.set_input_files(
        "#attach-input",
        files=[FilePayload(name="big.bin", mimeType="application/octet-stream", buffer=big)],
    )
    expect(a.locator("#composer-error")).to_contain_text(
        "big.bin is 100 KB: files are at most 64 KB"
    )
    expect(a.locator("#attach-tray .upload")).to_have_count(0)
