"""Every piece of application state, under a typed key. Nothing lives in a module global."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from chat.fanout.broker import Broker
from chat.fanout.presence import Presence
from chat.live.hub import Hub
from chat.notify.notice import NoticeSink
from chat.notify.vapid import Vapid
from chat.ratelimit import TokenBuckets
from chat.server.descriptors import Headroom
from chat.settings import Settings
from chat.storage.store import Store
from chat.web.metrics import Metrics
from chat.web.passwords import PasswordHasher

if TYPE_CHECKING:
    # Only for the key's type: chat.conversation reads its backends under these keys.
    from chat.conversation import Conversations


@dataclass(frozen=True, slots=True)
class Limits:
    """The rate limiters, one per kind of action (all settings)."""

    chat: TokenBuckets
    typing: TokenBuckets
    reaction: TokenBuckets
    login_by_ip: TokenBuckets
    login_by_name: TokenBuckets
    register_by_ip: TokenBuckets
    create_room: TokenBuckets  # keyed by user id
    upload: TokenBuckets  # keyed by user id

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        per_minute = s.login_attempts_per_minute
        return cls(
            chat=TokenBuckets(s.chat_rate_per_second, s.chat_burst),
            typing=TokenBuckets(s.typing_rate_per_second, s.typing_burst),
            reaction=TokenBuckets(s.reaction_rate_per_second, s.reaction_burst),
            login_by_ip=TokenBuckets(per_minute / 60.0, per_minute),
            login_by_name=TokenBuckets(per_minute / 60.0, per_minute),
            register_by_ip=TokenBuckets(
                s.registrations_per_hour / 3600.0, s.registrations_per_hour
            ),
            create_room=TokenBuckets(s.rooms_per_hour / 3600.0, s.rooms_per_hour),
            upload=TokenBuckets(s.upload_rate_per_minute / 60.0, s.upload_rate_per_minute),
        )


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
BROKER = web.AppKey[Broker]("broker")
PRESENCE = web.AppKey[Presence]("presence")
PASSWORDS = web.AppKey("passwords", PasswordHasher)
LIMITS = web.AppKey("limits", Limits)
METRICS = web.AppKey("metrics", Metrics)
HEADROOM = web.AppKey("headroom", Headroom)
# Images decoded and re-encoded at once (IMAGES_IN_FLIGHT): chat.web.files.
IMAGE_WORK = web.AppKey("image_work", asyncio.Semaphore)
CONVERSATIONS: web.AppKey[Conversations] = web.AppKey("conversations")
NOTICE_SINKS = web.AppKey[tuple[NoticeSink, ...]]("notice_sinks")
VAPID = web.AppKey("vapid", Vapid)
