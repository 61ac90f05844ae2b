"""Formatted messages through the whole server: a message's `html` (its sanitized markup) comes
with it live, in a join's history, in history.json and on the server-rendered page; an edit
re-renders it, a deletion drops it, and the plain text stays what is stored and quoted."""

from __future__ import annotations

import html as htmlmod
import re

from tests.helpers import Client, chat, join, receive_type, update

BOLD = "<p>it <strong>works</strong></p>"


async def test_a_formatted_message_carries_its_markup_to_everyone(
    client: Client, bob: Client
) -> None:
    async with client.ws_connect("/ws") as a, bob.ws_connect("/ws") as b:
        await join(a, "general")
        await join(b, "general")
        plain = await chat(a, "general", "just text")
        assert "html" not in plain
        said = await chat(a, "general", "it **works**")
        assert said["text"] == "it **works**" and said["html"] == BOLD
        heard = await receive_type(b, "chat")
        while heard["seq"] != said["seq"]:
            heard = await receive_type(b, "chat")
        assert heard["html"] == BOLD
        hostile = await chat(a, "general", "**<img src=x onerror=alert(1)>**")
        assert hostile["html"] == "<p><strong>&lt;img src=x onerror=alert(1)&gt;</strong></p>"


async def test_an_edit_renders_again_and_a_deletion_drops_the_markup(client: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        said = await chat(a, "general", "plain at first")
        seq = said["seq"]
        edited = await update(a, type="edit", room="general", seq=seq, text="now _italic_")
        assert edited["message"]["html"] == "<p>now <em>italic</em></p>"
        again = await update(a, type="edit", room="general", seq=seq, text="plain again")
        assert "html" not in again["message"]
        await update(a, type="edit", room="general", seq=seq, text="`code`")
        # A reply quotes the plain text, not the markup.
        reply = await chat(a, "general", "answer", reply_to=seq)
        assert reply["reply"]["text"] == "`code`" and "html" not in reply["reply"]
        deleted = await update(a, type="delete", room="general", seq=seq)
        assert deleted["message"]["deleted"] is True and "html" not in deleted["message"]


async def test_history_pages_and_the_page_carry_the_same_markup(client: Client) -> None:
    async with client.ws_connect("/ws") as a:
        await join(a, "general")
        said = await chat(a, "general", "it **works**")
        await chat(a, "general", "just text")
        await chat(a, "general", "> quoted <b>\nsee https://example.com")
        history = await join(a, "general")
    by_seq = {m["seq"]: m for m in history["messages"]}
    assert by_seq[said["seq"]]["html"] == BOLD
    polled = await (await client.get("/rooms/general/history.json?before=1000")).json()
    assert {m["seq"]: m.get("html") for m in polled["messages"]} == {
        seq: m.get("html") for seq, m in by_seq.items()
    }

    page = await (await client.get("/rooms/general")).text()
    # The page renders the markup itself (no script needed), and carries the same dict as the
    # socket in data-state for the script.
    assert f'<div class="text formatted">{BOLD}</div>' in page
    assert '<p class="text">just text</p>' in page
    link = (
        '<a href="https://example.com" target="_blank" rel="noopener noreferrer nofollow">'
        "https://example.com</a>"
    )
    assert link in page and "&lt;b&gt;" in page and "<b>" not in page
    states = [htmlmod.unescape(s) for s in re.findall(r'data-state="([^"]*)"', page)]
    assert any(f'"html":"{BOLD}"' in s for s in states)
