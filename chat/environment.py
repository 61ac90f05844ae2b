"""Reading the environment for chat.settings: typed values, files and addresses, each with a
one-line error naming the variable and what it expected (`SettingsError`)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


def _kind(convert: Callable[[str], object]) -> str:
    """How a value's type reads in an error message."""
    if convert is int:
        return "an integer"
    if convert is float:
        return "a number"
    return getattr(convert, "__name__", "a value")


class Reader:
    """Typed access to the environment with one-line errors."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, convert: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return convert(raw)
        except ValueError:
            raise SettingsError(f"{name}: expected {_kind(convert)}, got {raw!r}") from None

    def number(
        self,
        name: str,
        convert: Callable[[str], T],
        default: T,
        *,
        low: float | None = None,
        high: float | None = None,
    ) -> T:
        value = self.get(name, convert, default)
        assert isinstance(value, int | float)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = " and ".join(
                part
                for part in (
                    None if low is None else f">= {low}",
                    None if high is None else f"<= {high}",
                )
                if part
            )
            raise SettingsError(f"{name}: expected {_kind(convert)} {bounds}, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._env.get(name, "").strip().lower()
        if raw == "":
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")


def tls_files(env: Mapping[str, str]) -> tuple[Path | None, Path | None]:
    """TLS_CERT and TLS_KEY: both or neither, and both readable files."""
    cert, key = env.get("TLS_CERT") or None, env.get("TLS_KEY") or None
    if (cert is None) != (key is None):
        missing = "TLS_KEY" if key is None else "TLS_CERT"
        raise SettingsError(
            f"{missing}: expected a file path, since TLS_CERT and TLS_KEY go together"
        )
    if cert is None or key is None:
        return None, None
    for name, value in (("TLS_CERT", cert), ("TLS_KEY", key)):
        if not Path(value).is_file():
            raise SettingsError(f"{name}: expected a readable PEM file, {value!r} is not a file")
    return Path(cert), Path(key)


def networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """TRUSTED_PROXIES: comma-separated addresses or CIDRs (a bare address is a /32 or /128)."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                f"TRUSTED_PROXIES: expected comma-separated IP addresses or CIDRs, got {item!r}"
            ) from None
    return tuple(networks)


def redis_server_name(url: str) -> str:
    """What names a Redis server among several (chat.fanout.shards hashes rooms by it): its
    `host:port`, or `unix:<path>`; no credentials and no database number, since pub/sub
    channels are shared by every database of one server."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        raise SettingsError(f"REDIS_URL: bad port in {parts.hostname}") from None
    return f"{(parts.hostname or 'localhost').lower()}:{port}"


def redis_urls(raw: str) -> tuple[str, ...]:
    """REDIS_URL: one URL, or several independent servers separated by commas."""
    urls = tuple(u.strip() for u in raw.split(","))
    seen: set[str] = set()
    for url in urls:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                "REDIS_URL: expected a redis://, rediss:// or unix:// URL "
                "(several: separated by commas)"
            )
        name = redis_server_name(url)
        if name in seen:
            raise SettingsError(
                f"REDIS_URL: {name} is listed twice (each Redis server once: "
                "its databases share one set of pub/sub channels)"
            )
        seen.add(name)
    return urls


def public_url(raw: str) -> str | None:
    """PUBLIC_URL: the origin browsers use, scheme://host[:port] (a trailing / is dropped)."""
    raw = raw.strip().rstrip("/")
    if not raw:
        return None
    parts = urlsplit(raw)
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise SettingsError(f"PUBLIC_URL: expected http(s)://host[:port] and no path, got {raw!r}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise SettingsError(f"PUBLIC_URL: bad port in {raw!r}") from None
    return f"{parts.scheme}://{parts.netloc.lower()}"


def secret_from(raw: str) -> bytes:
    """Any operator-chosen string becomes 32 key bytes; all nodes sharing it agree."""
    if len(raw) < 16:
        raise SettingsError("SECRET_KEY: expected at least 16 characters")
    return hashlib.sha256(raw.encode()).digest()


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in `path`, made with `make` and written there (mode 0600) on first use,
    so that what it protects survives a restart."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    data = make()
    # O_EXCL: if two processes race on first start, one writes and both then read the same one.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(data + "\n")
    return data


def load_or_create_secret(var_dir: Path) -> bytes:
    """Keep a generated key in var/ (mode 0600) so sessions survive a restart."""
    path = var_dir / "secret_key"
    data = kept_secret(path, lambda: secrets.token_hex(32))
    try:
        return bytes.fromhex(data)
    except ValueError:
        raise SettingsError(f"SECRET_KEY: the file {path} is not 64 hex characters") from None
