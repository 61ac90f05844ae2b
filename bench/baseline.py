"""A bare aiohttp one-room broadcast server: no accounts, no storage, no queues, no limits.

It shows what the stack itself allows: each chat message is encoded once into a complete
WebSocket frame and that same frame is written to every connected transport. The bench runs the
broadcast scenario against it and prints our ratio to it. It speaks just enough of our protocol
(join -> history + presence, chat -> chat to everyone) for the same load generator to drive it.

    python bench/baseline.py --port 8099
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson
from aiohttp import WSMsgType, web

CONNECTIONS = web.AppKey("connections", set[asyncio.Transport])
SEQ = web.AppKey("seq", list[int])


def frame(payload: bytes) -> bytes:
    """An unmasked server text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=16 * 1024)
    await ws.prepare(request)
    transport = request.transport
    assert transport is not None
    members = request.app[CONNECTIONS]
    seq = request.app[SEQ]
    members.add(transport)
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                break
            obj = orjson.loads(msg.data)
            room = obj.get("room", "general")
            if obj.get("type") == "join":
                await ws.send_str(
                    orjson.dumps(
                        {"type": "history", "room": room, "messages": [], "complete": True}
                    ).decode()
                )
                await ws.send_str(
                    orjson.dumps({"type": "presence", "room": room, "users": []}).decode()
                )
            elif obj.get("type") == "chat":
                seq[0] += 1
                data = frame(
                    orjson.dumps(
                        {
                            "type": "chat",
                            "room": room,
                            "seq": seq[0],
                            "user": "u",
                            "text": obj["text"],
                            "ts": int(time.time() * 1000),
                            "client_id": obj.get("client_id"),
                        }
                    )
                )
                for t in members:
                    if not t.is_closing():
                        t.write(data)
    finally:
        members.discard(transport)
    return ws


async def ready(_: web.Request) -> web.Response:
    """What the bench polls to know the server is up."""
    return web.Response(text="baseline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    app = web.Application()
    app[CONNECTIONS] = set()
    app[SEQ] = [0]
    app.router.add_get("/ws", websocket)
    app.router.add_get("/login", ready)
    loop: asyncio.AbstractEventLoop | None = None
    try:
        import uvloop  # same event loop as the chat server, when installed
    except ImportError:
        pass
    else:
        loop = uvloop.new_event_loop()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
