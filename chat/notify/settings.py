"""The Web Push settings, read from the environment for chat.settings (see the README's settings
table and docs/architecture.md, "Web Push")."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chat.environment import Reader, SettingsError, public_url
from chat.notify.vapid import Vapid, VapidException, load_or_create_vapid_key, vapid_key_from

if TYPE_CHECKING:
    from chat.settings import Settings

# The push services of the browsers people use (Chrome, Edge, Firefox, Safari): the only hosts
# the server POSTs to unless PUSH_ENDPOINT_HOSTS says otherwise, so that a subscription cannot
# make the server send requests into its own network.
PUSH_SERVICES = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "push.apple.com",
    "notify.windows.com",
)


def push_settings(
    env: Mapping[str, str], reader: Reader, var_dir: Path, d: Settings
) -> dict[str, Any]:
    raw_key = env.get("VAPID_PRIVATE_KEY")
    key = vapid_key_from(raw_key) if raw_key else load_or_create_vapid_key(var_dir)
    site = public_url(env.get("PUBLIC_URL", ""))
    # An https PUBLIC_URL with a port is no subject the signing library accepts.
    https = site is not None and site.startswith("https://") and ":" not in site[8:]
    default_subject = site if https and site else "mailto:admin@localhost"
    subject = reader.get("VAPID_SUBJECT", str, default_subject).strip()
    try:
        # Signed once now: a subject the signing library refuses would fail every push later.
        Vapid(key, subject).authorization("https://push.example.com/x")
    except VapidException:
        raise SettingsError(
            "VAPID_SUBJECT: expected mailto:someone@example.com or https://host (no port or "
            f"path), got {subject!r}"
        ) from None
    raw_hosts = env.get("PUSH_ENDPOINT_HOSTS")
    hosts = d.push_endpoint_hosts if raw_hosts is None else endpoint_hosts(raw_hosts)
    return {
        "vapid_private_key": key,
        "vapid_subject": subject,
        "push_endpoint_hosts": hosts,
        "push_subscriptions_per_user": reader.number(
            "PUSH_SUBSCRIPTIONS_PER_USER", int, d.push_subscriptions_per_user, low=1, high=1000
        ),
        "push_queue_size": reader.number(
            "PUSH_QUEUE_SIZE", int, d.push_queue_size, low=1, high=1_000_000
        ),
        "push_senders": reader.number("PUSH_SENDERS", int, d.push_senders, low=1, high=256),
        "push_timeout_seconds": reader.number(
            "PUSH_TIMEOUT_SECONDS", float, d.push_timeout_seconds, low=0.1, high=300
        ),
        "push_ttl_seconds": reader.number(
            "PUSH_TTL_SECONDS", int, d.push_ttl_seconds, low=0, high=2419200
        ),
        "push_retries": reader.number("PUSH_RETRIES", int, d.push_retries, low=0, high=20),
        "push_retry_max_seconds": reader.number(
            "PUSH_RETRY_MAX_SECONDS", float, d.push_retry_max_seconds, low=0.01, high=3600
        ),
    }


def endpoint_hosts(raw: str) -> tuple[str, ...]:
    """PUSH_ENDPOINT_HOSTS: comma-separated host names (a subscription's endpoint host must be
    one of them or end with "." and one), or "*" for any https host."""
    hosts = tuple(h.strip().lower().rstrip(".") for h in raw.split(",") if h.strip())
    for host in hosts:
        if host == "*":
            continue
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if not all(part.isalnum() or "-" in part for part in host.split(".")) or not host:
                raise SettingsError(
                    f"PUSH_ENDPOINT_HOSTS: expected comma-separated host names, got {host!r}"
                ) from None
    return hosts


def endpoint_allowed(endpoint: str, hosts: tuple[str, ...]) -> bool:
    """An https endpoint on an allowed host; plain http only to a loopback address listed
    explicitly (a push service under test)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    listed = any(h == host or host.endswith("." + h) for h in hosts) or (
        "*" in hosts and parts.scheme == "https"
    )
    if not listed:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
