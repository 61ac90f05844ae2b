"""The Web Push sink: tells a recipient's subscribed browsers about a Notice, through their
push services (RFC 8030), encrypted (RFC 8291) and signed (RFC 8292). docs/architecture.md,
"Web Push".

`send` only queues the notice (chat.notify.queue). A fixed number of sender tasks read the
recipients' subscriptions, skip a message deleted meanwhile, and POST to each subscription at
once, with a timeout; 429 and 5xx (and a push service that cannot be reached) are retried a
bounded number of times, after Retry-After when the service says, and a 404 or 410 deletes that
subscription. A slow or dead push service keeps a sender busy, never the chat path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import Counter

from chat.errors import ChatError
from chat.keys import METRICS, NOTICE_SINKS, SETTINGS, STORE, VAPID
from chat.notify.notice import Notice, Reason
from chat.notify.queue import RareWarning, WorkQueue
from chat.notify.vapid import Vapid, encrypt
from chat.settings import Settings
from chat.storage.push import PushSubscription
from chat.storage.store import Store

log = logging.getLogger(__name__)

# A push service tells the device to wake at once for these, and may wait for a better moment
# (power, network) for the rest (RFC 8030, section 5.3).
HIGH: frozenset[Reason] = frozenset({"mention", "here", "direct"})
OUTCOMES = ("sent", "gone", "retried", "failed")
# Characters of an excerpt pushed (at most 4 bytes each in UTF-8, 6 once JSON-escaped).
MAX_EXCERPT = 400
MAX_PAYLOAD = 3900
FAILURE_LOG_SECONDS = 60.0


def payload(notice: Notice) -> bytes:
    """What the service worker gets: nothing beyond what the notification shows, within the
    3993 bytes one aes128gcm record of 4 KiB holds (RFC 8291), the excerpt shortened to fit."""
    excerpt = notice.excerpt[:MAX_EXCERPT]
    while True:
        body = orjson.dumps(
            {
                "room": notice.room,
                "title": notice.title[:100],
                "url": notice.url[:500],
                "author": notice.author,
                "excerpt": excerpt,
                "seq": notice.seq,
                "tag": f"chat:{notice.room}:{notice.seq}",
            }
        )
        if len(body) <= MAX_PAYLOAD or not excerpt:
            return body
        excerpt = excerpt[: len(excerpt) // 2]


def topic(room: str) -> str:
    """A room's Topic header: a newer ordinary message replaces an older one the push service
    still holds for an offline device (at most 32 base64url characters, RFC 8030 5.4)."""
    digest = hashlib.sha256(room.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def retry_delay(header: str | None, attempt: int, cap: float) -> float:
    """Retry-After in seconds or as an HTTP date; else exponential backoff. Never above cap."""
    if header:
        header = header.strip()
        try:
            return min(cap, max(0.0, float(header)))
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError):
                pass
            else:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return min(cap, max(0.0, (when - datetime.now(UTC)).total_seconds()))
    return min(cap, 0.5 * 2.0**attempt)


class WebPushSink:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        vapid: Vapid,
        http: aiohttp.ClientSession,
        metrics: dict[str, Counter],
    ) -> None:
        self._store = store
        self._settings = settings
        self._vapid = vapid
        self._http = http
        self._requests = metrics["requests"]
        self._skipped = metrics["skipped"]
        # At most a line a minute: a push service that is down fails every push.
        self._failures = RareWarning(FAILURE_LOG_SECONDS)
        self.queue: WorkQueue[Notice] = WorkQueue(
            "web-push",
            self._deliver,
            size=settings.push_queue_size,
            workers=settings.push_senders,
            dropped=metrics["dropped"],
        )

    def send(self, notice: Notice) -> None:
        if notice.recipients:
            self.queue.put(notice)

    async def _deliver(self, notice: Notice) -> None:
        reasons: dict[int, Reason] = {}
        for r in notice.recipients:
            # One push per person: the loudest reason wins.
            if r.user_id not in reasons or r.reason in HIGH:
                reasons[r.user_id] = r.reason
        subscriptions = await self._store.push_subscriptions(reasons)
        if not subscriptions:
            return
        try:
            still_there = await self._store.message_at(notice.room, notice.seq) is not None
        except ChatError:
            still_there = False  # the room itself is gone
        if not still_there:
            self._skipped.inc()
            return
        body = payload(notice)
        pushes: list[asyncio.Task[None]] = []
        try:
            for sub in subscriptions:
                # Encrypting costs milliseconds of CPU per subscription: one at a time, the loop
                # let through between them, so an @here to many people never stalls the chat.
                data = encrypt(body, sub.p256dh, sub.auth)
                push = self._push(sub, data, reasons[sub.user_id], notice.room)
                pushes.append(asyncio.create_task(push))
                await asyncio.sleep(0)
            # One subscription's failure (the database, say) is logged, not the others' end.
            for outcome in await asyncio.gather(*pushes, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("push failed", exc_info=outcome)
        finally:
            for task in pushes:
                task.cancel()  # only still running if this sender was cancelled (shutdown)

    async def _push(self, sub: PushSubscription, data: bytes, reason: Reason, room: str) -> None:
        s = self._settings
        headers = {
            "TTL": str(s.push_ttl_seconds),
            "Urgency": "high" if reason in HIGH else "normal",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        if reason not in HIGH:
            headers["Topic"] = topic(room)
        for attempt in range(s.push_retries + 1):
            headers["Authorization"] = self._vapid.authorization(sub.endpoint)
            status, retry_after = await self._post(sub.endpoint, data, headers)
            if status is not None and 200 <= status < 300:
                self._requests.labels("sent").inc()
                return
            if status in (404, 410):
                # The browser unsubscribed, or the subscription expired: forget it.
                self._requests.labels("gone").inc()
                await self._store.drop_push_endpoint(sub.endpoint)
                log.info("push subscription %d gone (%d): removed", sub.id, status)
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt == s.push_retries:
                break
            self._requests.labels("retried").inc()
            await asyncio.sleep(retry_delay(retry_after, attempt, s.push_retry_max_seconds))
        self._requests.labels("failed").inc()
        failed = self._failures.count()
        if failed is not None:
            log.warning(
                "%d pushes failed since the last warning; the latest, to subscription %d: %s",
                failed,
                sub.id,
                "no answer" if status is None else f"HTTP {status}",
                extra={"event": "push_failed", "status": status},
            )

    async def _post(
        self, endpoint: str, data: bytes, headers: dict[str, str]
    ) -> tuple[int | None, str | None]:
        try:
            async with self._http.post(
                endpoint, data=data, headers=headers, allow_redirects=False
            ) as response:
                return response.status, response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.debug("push to %s: %s", endpoint.split("/")[2], exc)
            return None, None


def _metrics(app: web.Application) -> dict[str, Counter]:
    registry = app[METRICS].registry
    requests = Counter(
        "chat_push_requests",
        "Web Push requests by outcome (sent, gone, retried, failed)",
        ["outcome"],
        registry=registry,
    )
    for outcome in OUTCOMES:
        requests.labels(outcome)
    return {
        "requests": requests,
        "dropped": Counter(
            "chat_push_dropped", "Notices not pushed: the push queue was full", registry=registry
        ),
        "skipped": Counter(
            "chat_push_skipped", "Notices not pushed: the message was deleted", registry=registry
        ),
    }


async def webpush_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the senders and add the sink to app[NOTICE_SINKS]; stop them at shutdown."""
    settings = app[SETTINGS]
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.push_timeout_seconds),
        cookie_jar=aiohttp.DummyCookieJar(),
        connector=aiohttp.TCPConnector(limit=max(10, settings.push_senders * 4)),
        headers={"User-Agent": "chat-webpush"},
    )
    sink = WebPushSink(app[STORE], settings, app[VAPID], http, _metrics(app))
    sink.queue.start()
    sinks: tuple[Any, ...] = app.get(NOTICE_SINKS, ())
    app[NOTICE_SINKS] = (*sinks, sink)
    try:
        yield
    finally:
        await sink.queue.stop()
        await http.close()
