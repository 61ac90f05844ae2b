"""Prometheus metrics, one registry per application (never the process-global default, so two
apps in one process, as in the tests, never mix their numbers).

Counters that the request handlers bump live here; what the hub knows (connections, rooms,
queues, and the counts of the per-message path: frames in, messages in and out) is read from it
at scrape time, so the message path pays nothing for being measured but an integer add.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from chat.live.hub import Hub

QUEUE_DEPTH_BUCKETS = (0, 1, 4, 16, 64, 128, 256, 1024)


class Metrics:
    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rate_limited = Counter(
            "chat_rate_limit_hits", "Actions refused by a rate limit", ["limit"], registry=r
        )
        self.history_resumes = Counter(
            "chat_history_resumes", "Joins that resumed from a known seq (since)", registry=r
        )
        self.login_failures = Counter(
            "chat_login_failures", "Failed logins (wrong name or password, banned)", registry=r
        )
        self.moderation = Counter(
            "chat_moderation_actions", "Moderation actions taken", ["action"], registry=r
        )
        # Decided on the node that stored the message (chat.notify.rules): once per message.
        self.notices = Counter(
            "chat_notices", "Stored messages that told someone (mention, level)", registry=r
        )
        self.notice_recipients = Counter(
            "chat_notice_recipients", "People told of a stored message", registry=r
        )
        for limit in (
            "chat",
            "typing",
            "reaction",
            "login",
            "register",
            "connections",
            "password_change",
            "password_hash",
            "create_room",
            "here",
        ):
            self.rate_limited.labels(limit)
        r.register(HubCollector(hub))

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The body and its content type; a scraper that asks for OpenMetrics gets it."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class HubCollector(Collector):
    """What the hub holds right now, and its running counters."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterable[Metric]:
        hub = self.hub
        conns = list(hub.connections.values())
        yield GaugeMetricFamily(
            "chat_open_connections", "Open WebSocket connections on this node", value=len(conns)
        )
        yield GaugeMetricFamily(
            "chat_joined_rooms",
            "Room subscriptions of the open connections (one per connection per room)",
            value=sum(len(c.rooms) for c in conns),
        )
        yield GaugeMetricFamily(
            "chat_active_rooms",
            "Rooms with at least one connection here",
            value=len(hub.room_names()),
        )
        stats = hub.stats
        for name, doc, value in (
            ("chat_frames_in", "Text frames received from clients", stats.frames_in),
            ("chat_messages_in", "Chat messages accepted from clients and stored",
             stats.messages_in),
            ("chat_messages_out", "Chat messages queued for clients (one per recipient)",
             stats.messages_out),
            ("chat_frames_out", "Frames queued for clients", stats.frames_out),
            ("chat_frames_dropped", "Frames not sent because their socket was closing",
             stats.frames_dropped),
            ("chat_slow_consumer_closes", "Sockets closed with 1013: send queue full",
             stats.slow_closes),
            ("chat_fanout_frames_heard", "Room frames received from other nodes via Redis",
             stats.frames_heard),
        ):  # fmt: skip
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeHistogramMetricFamily(
            "chat_send_queue_depth",
            "Frames waiting in each connection's send queue, sampled at scrape time",
            buckets=list(_buckets(c.queued for c in conns)),
            gsum_value=sum(c.queued for c in conns),
        )


def _buckets(depths: Iterable[int]) -> Iterator[tuple[str, float]]:
    values = sorted(depths)
    i = 0
    for bound in QUEUE_DEPTH_BUCKETS:
        while i < len(values) and values[i] <= bound:
            i += 1
        yield str(bound), float(i)
    yield "+Inf", float(len(values))


def metrics_allowed(remote: str | None, authorization: str | None, token: str | None) -> bool:
    """Loopback may always scrape; anyone else needs the configured bearer token."""
    if token is not None and authorization is not None:
        scheme, _, sent = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(sent.strip(), token):
            return True
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
