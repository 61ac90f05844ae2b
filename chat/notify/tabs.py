"""The open-tabs sink: a `notify` frame to each recipient's open sockets, on whatever node.

See docs/architecture.md ("Notifications"). The node that stored the message sends one broker
signal per notice (the control-event path every node hears, not the rooms' channels: nodes
without the recipients' sockets just drop it); each node writes the frame to the sockets its
hub has for each recipient. The page decides what to show (static/notify.js): a desktop
notification and a count in the title while it is hidden.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from aiohttp import web

from chat.keys import BROKER, HUB
from chat.notify.notice import Notice

TABS_SIGNAL = "notify-tabs"


def notify_frame(notice: dict[str, Any], reason: str) -> str:
    """`notify`: someone is told of message `seq` of `room` (docs/protocol.md)."""
    return orjson.dumps(
        {
            "type": "notify",
            "room": notice["room"],
            "title": notice["title"],
            "url": notice["url"],
            "seq": notice["seq"],
            "author": notice["author"],
            "excerpt": notice["excerpt"],
            "reason": reason,
        }
    ).decode()


class TabSink:
    """Implements chat.notify.notice.NoticeSink for the open tabs."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.listening = False

    async def started(self, app: web.Application) -> None:
        """on_startup, after the broker exists: hear the notices of every node."""
        if not self.listening:
            app[BROKER].on_signal(TABS_SIGNAL, self._heard)
            self.listening = True

    def send(self, notice: Notice) -> None:
        body = dataclasses.asdict(notice)
        body["recipients"] = [[r.user_id, r.reason] for r in notice.recipients]
        self.app[BROKER].signal(TABS_SIGNAL, body)

    def _heard(self, body: dict[str, Any]) -> None:
        hub = self.app[HUB]
        for user_id, reason in body["recipients"]:
            frame = None
            for conn in hub.of_user(int(user_id)):
                frame = frame or notify_frame(body, str(reason))
                conn.send(frame)
        hub.write_now()
