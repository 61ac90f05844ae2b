"""The cryptography of Web Push, all of it done by libraries: the server's VAPID key (RFC 8292,
signed with py_vapid) and the message encryption (RFC 8291, aes128gcm, with http_ece).

See docs/architecture.md ("Web Push"). The VAPID key is a raw P-256 private key in base64url,
as the usual Web Push tools print it: given in VAPID_PRIVATE_KEY (the same on every node, since
browsers subscribed with its public half), or generated once into var/ (mode 0600) like the
session secret.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid02, VapidException

from chat.environment import SettingsError, kept_secret

__all__ = ["Vapid", "VapidException", "encrypt", "load_or_create_vapid_key", "vapid_key_from"]

KEY_FILE = "vapid_private_key"
# How long a signed VAPID token stays valid (RFC 8292 allows at most 24 hours).
TOKEN_SECONDS = 12 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """base64url with or without padding; raises ValueError on anything else."""
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("not base64url") from exc


def new_private_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def vapid_key_from(raw: str, name: str = "VAPID_PRIVATE_KEY") -> str:
    """Check a raw P-256 private key in base64url; return it as given (stripped)."""
    raw = raw.strip()
    try:
        data = unb64url(raw)
        if len(data) != 32:
            raise ValueError("not 32 bytes")
        Vapid02.from_raw(raw.encode())
    except (ValueError, VapidException):
        raise SettingsError(
            f"{name}: expected a P-256 private key as 43 base64url characters "
            "(python -m chat vapid-key prints a new one)"
        ) from None
    return raw


def load_or_create_vapid_key(var_dir: Path) -> str:
    """The key kept in var/ (mode 0600), made on first start so subscriptions survive restarts."""
    path = var_dir / KEY_FILE
    data = kept_secret(path, new_private_key)
    return vapid_key_from(data, f"VAPID_PRIVATE_KEY: the file {path} is not valid;")


class Vapid:
    """Signs the `Authorization` header of a push request (RFC 8292) and encrypts its body
    (RFC 8291)."""

    def __init__(self, private_key: str, subject: str) -> None:
        self._vapid = Vapid02.from_raw(private_key.encode())
        self.subject = subject
        public = self._vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        # What the browser's pushManager.subscribe takes as applicationServerKey.
        self.public_key = b64url(public)
        # (audience, expiry, header): one signature per push service origin while it is valid.
        self._tokens: dict[str, tuple[float, str]] = {}

    def authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is not None and cached[0] - now > TOKEN_SECONDS / 2:
            return cached[1]
        expires = int(now) + TOKEN_SECONDS
        headers = self._vapid.sign({"aud": audience, "exp": expires, "sub": self.subject})
        header = str(headers["Authorization"])
        if len(self._tokens) > 100:
            self._tokens.clear()  # a handful of push services in practice
        self._tokens[audience] = (expires, header)
        return header


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body for one subscription (RFC 8291): a fresh ephemeral key per message."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=ephemeral,
        dh=unb64url(p256dh),
        auth_secret=unb64url(auth),
        version="aes128gcm",
    )
    return body


def valid_subscription_keys(p256dh: str, auth: str) -> bool:
    """A browser's keys: an uncompressed P-256 point and a 16-byte secret."""
    try:
        point = unb64url(p256dh)
        secret = unb64url(auth)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        return False
    return len(point) == 65 and len(secret) == 16
