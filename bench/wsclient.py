"""A lean WebSocket client on a bare asyncio Protocol, so the load generator is not the bottleneck.

It speaks just enough RFC 6455 for the bench: an upgrade with a session cookie, unfragmented text
frames out (masked with an all-zero key, which RFC 6455 allows and which makes masking free), and
unfragmented frames in. During setup every JSON document is parsed; during a measurement a client
only counts `chat` documents with `bytes.count` (C speed), and a *probe* client also reads the send
timestamp (wall clock, ns) out of each message text to sample end-to-end latency, up to the
kernel's receive stamp of the data (SO_TIMESTAMPNS) unless told to stop the clock when it reads.

A server text frame may carry several JSON documents separated by "\\n" (docs/protocol.md,
"Batching"); everything here handles that.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
from array import array
from collections import deque
from typing import Any, cast

import orjson

# Linux values; Python's socket module does not export them.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
CHAT_MARK = b'"type":"chat"'
ERROR_MARK = b'"type":"error"'
TEXT_MARK = b'"text":"'


def text_frame(payload: bytes) -> bytes:
    """A client text frame with a zero mask key (XOR with zero leaves the payload as it is)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + b"\x00\x00\x00\x00" + payload


class Closed(Exception):
    """The server closed the connection (or the TCP connection dropped)."""


class WSClient(asyncio.Protocol):
    def __init__(self, host: str, port: int, cookie: str | None, path: str = "/ws") -> None:
        self.host, self.port, self.cookie, self.path = host, port, cookie, path
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed_fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        # Setup mode: parsed documents, and an event to wait on.
        self.parse_all = True
        self.docs: deque[dict[str, Any]] = deque()
        self.arrived = asyncio.Event()
        # Measurement mode counters.
        self.chats = 0
        self.errors = 0
        self.probe = False
        self.latencies: array[int] | None = None
        # Ingest: acks of our own messages, found by our client_id prefix.
        self.ack_mark: bytes | None = None
        self.acks = 0
        # Measuring with kernel receive stamps (see `measure`): our own reading socket, and the
        # stamp of the data being processed.
        self._stamped: socket.socket | None = None
        self.received_ns: int | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        # As browsers do: without it, Nagle holds each small chat frame back for the server's
        # delayed ACK (up to 40 ms on Linux), which is then counted as server latency.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.cookie:
            lines.append(f"Cookie: chat_session={self.cookie}")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            del buf[: end + 4]
            if b" 101 " not in status:
                self.upgraded.set_exception(Closed(status.decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
        pos, n = 0, len(buf)
        while n - pos >= 2:
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            end = start + length
            if end > n:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 1:
                self._on_text(buf, start, end)
            elif opcode == 8:
                self.close_code = int.from_bytes(buf[start : start + 2], "big") if length else 1005
            elif opcode == 9 and self.transport is not None:
                payload = bytes(buf[start:end])
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)
            pos = end
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(Closed("connection lost before the upgrade"))
        if not self.closed_fut.done():
            self.closed_fut.set_result(self.close_code or 1006)
        self.arrived.set()

    # --- frames ---

    def _on_text(self, buf: bytearray, start: int, end: int) -> None:
        if self.parse_all:
            for doc in bytes(buf[start:end]).split(b"\n"):
                self.docs.append(orjson.loads(doc))
            self.arrived.set()
            return
        self.chats += buf.count(CHAT_MARK, start, end)
        if self.probe or self.ack_mark is not None:
            self._sample(bytes(buf[start:end]))
        elif buf.count(ERROR_MARK, start, end):
            self.errors += buf.count(ERROR_MARK, start, end)

    def _sample(self, payload: bytes) -> None:
        now = self.received_ns or time.time_ns()
        lat = self.latencies
        assert lat is not None
        self.errors += payload.count(ERROR_MARK)
        mark = self.ack_mark
        if mark is not None:
            # Only our own messages: the ack latency.
            i = payload.find(mark)
            while i >= 0:
                t = payload.rfind(TEXT_MARK, 0, i) + 8
                lat.append(now - int(payload[t : payload.index(b" ", t)]))
                self.acks += 1
                i = payload.find(mark, i + 1)
            return
        i = payload.find(TEXT_MARK)
        while i >= 0:
            t = i + 8
            sp = payload.find(b" ", t, t + 24)
            if sp > t and payload[t:sp].isdigit():
                lat.append(now - int(payload[t:sp]))
            i = payload.find(TEXT_MARK, t)

    def send(self, frame: dict[str, Any]) -> None:
        self.send_raw(orjson.dumps(frame))

    def send_raw(self, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise Closed("connection is closed")
        self.transport.write(text_frame(payload))

    @property
    def backlog(self) -> int:
        """Bytes this client has not managed to send yet (it is not keeping up)."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    async def next_doc(self, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while not self.docs:
                if self.closed_fut.done():
                    raise Closed(f"closed with {self.closed_fut.result()}")
                self.arrived.clear()
                await self.arrived.wait()
            return self.docs.popleft()

    async def wait_type(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                doc = await self.next_doc(within)
                if doc.get("type") == kind:
                    return doc
                if doc.get("type") == "error":
                    raise Closed(f"error frame: {doc}")

    async def join(self, room: str, within: float = 30.0) -> None:
        self.send({"type": "join", "room": room})
        await self.wait_type("history", within)
        await self.wait_type("presence", within)

    def measure(self, probe: bool, kernel_stamps: bool = True) -> None:
        """Switch from setup (parse everything) to counting. With `kernel_stamps`, latency ends
        when the data reached this socket (the kernel's receive stamp), not when this process
        got round to reading it: one process reads a thousand sockets one after another, a
        queue that a browser reading its own socket does not have."""
        self.parse_all = False
        self.docs.clear()
        self.probe = probe
        if probe or self.ack_mark is not None:
            self.latencies = array("q")
            if kernel_stamps:
                self._read_with_kernel_stamps()

    def _read_with_kernel_stamps(self) -> None:
        # The transport keeps writing; reading moves to a duplicate of its socket, read with
        # recvmsg, which hands over SO_TIMESTAMPNS stamps (the transport's reads cannot).
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        self.transport.pause_reading()
        stamped = socket.socket(fileno=os.dup(sock.fileno()))
        stamped.setblocking(False)
        stamped.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._stamped = stamped
        asyncio.get_running_loop().add_reader(stamped.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._stamped is not None
        try:
            data, ancillary, _, _ = self._stamped.recvmsg(1 << 18, socket.CMSG_SPACE(16))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._stop_stamped()
            self.connection_lost(exc)
            return
        if not data:
            self._stop_stamped()
            self.connection_lost(None)
            return
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                # For data spanning several segments, the last one's: never too early.
                self.received_ns = seconds * 1_000_000_000 + nanoseconds
        self.data_received(data)
        self.received_ns = None

    def _stop_stamped(self) -> None:
        if self._stamped is not None:
            asyncio.get_running_loop().remove_reader(self._stamped.fileno())
            self._stamped.close()
            self._stamped = None

    def close(self) -> None:
        self._stop_stamped()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def connect(host: str, port: int, cookie: str | None, within: float = 30.0) -> WSClient:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: WSClient(host, port, cookie), host, port)
    async with asyncio.timeout(within):
        await proto.upgraded
    return proto
