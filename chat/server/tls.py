"""TLS served directly: https and wss from TLS_CERT/TLS_KEY (PEM files), modern protocols only."""

from __future__ import annotations

import ssl

from chat.settings import Settings, SettingsError


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's SSL context, or None to serve plain http (TLS ends at a proxy, or nowhere)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        # Checked at start-up like every other setting: one line, naming the variable.
        raise SettingsError(f"TLS_CERT/TLS_KEY: cannot load the pair: {exc}") from None
    return context
