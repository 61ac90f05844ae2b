"""WebSocket text frames built by hand, so one message is framed once and the same bytes are
written to every recipient's transport (server frames are never masked, and we never compress).

Batching (docs/protocol.md): several queued JSON documents go out as one text frame, joined with
"\n". JSON never contains a raw newline (orjson escapes it inside strings), so "\n" is an
unambiguous separator and each part is still one complete JSON document.
"""

from __future__ import annotations

_TEXT = 0x81  # FIN + opcode 1 (text)
# FIN + opcode 9 (ping), no payload: the peer must answer with a pong.
PING_FRAME = b"\x89\x00"


def text_frame(data: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame carrying `data` (UTF-8 JSON)."""
    n = len(data)
    if n < 126:
        return bytes((_TEXT, n)) + data
    if n < 65536:
        return bytes((_TEXT, 126)) + n.to_bytes(2, "big") + data
    return bytes((_TEXT, 127)) + n.to_bytes(8, "big") + data


def batch_frame(documents: list[bytes]) -> bytes:
    """One text frame carrying several JSON documents separated by "\n"."""
    return text_frame(b"\n".join(documents))
