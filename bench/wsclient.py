"""A lean WebSocket client on a bare asyncio Protocol, so the load generator is not the bottleneck.

It speaks just enough RFC 6455 for the bench: an upgrade with a session cookie, unfragmented text
frames out (masked with an all-zero key, which RFC 6455 allows and which makes masking free), and
frames in, fragmented or not (a text message may come as a first frame with FIN clear and
continuation frames, with control frames in between). During setup every JSON document is parsed;
during a measurement a client counts `chat` documents (`bytes.count`, C speed) and, from their
`room` and `seq`, the distinct messages it got (what a user sees: a repeat is not a delivery); a
*probe* client also reads the send timestamp (wall clock, ns) out of each message text to sample
end-to-end latency, up to the kernel's receive stamp of the data (SO_TIMESTAMPNS) unless told to
stop the clock when it reads.

A server text frame may carry several JSON documents separated by "\\n" (docs/protocol.md,
"Batching"); everything here handles that.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
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
# The head of every chat document (chat/live/protocol.py writes type, room, seq first).
CHAT_SEQ = re.compile(rb'"type":"chat","room":"((?:[^"\\]|\\.)*)","seq":(\d+)')


CHAT_HEAD = b'"type":"chat","room":"'
SEQ_KEY = b'","seq":'


def chat_head(buf: bytearray, at: int, end: int) -> tuple[bytes, int]:
    """The room and seq of the chat document whose CHAT_HEAD is at `at`. Inside a JSON string
    every quote is escaped, so the first `","seq":` after the room's opening quote ends it."""
    room = at + len(CHAT_HEAD)
    key = buf.find(SEQ_KEY, room, end)
    digits = key + len(SEQ_KEY)
    stop = buf.find(b",", digits, end)  # chat/live/protocol.py: "user" follows "seq"
    return bytes(buf[room:key]), int(buf[digits : stop if stop >= 0 else end])


def unmask(key: bytes | bytearray, payload: bytes | bytearray) -> bytes:
    """XOR a masked payload with its 4-byte key (RFC 6455 5.3)."""
    n = len(payload)
    stream = (bytes(key) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


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
        self.sent = 0  # chat messages this client sent (bench/scenarios.py `pace`)
        self.chats = 0  # chat documents read
        self.delivered = 0  # distinct (room, seq) among them: what a user would see
        self.repeats = 0  # chat documents whose (room, seq) this client had already seen
        self.last_seq: dict[bytes, int] = {}
        self.errors = 0
        # The fragments of a text message so far (None: not inside a fragmented message).
        self.fragments: bytearray | None = None
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
            second = buf[pos + 1]
            length = second & 0x7F
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
            if second & 0x80:  # a masked frame: servers must not, but read it right anyway
                head += 4
            start = pos + head
            end = start + length
            if end > n:
                break
            if second & 0x80:
                buf[start:end] = unmask(buf[start - 4 : start], buf[start:end])
            self._on_frame(buf[pos], buf, start, end)
            pos = end
        if pos:
            del buf[:pos]

    def _on_frame(self, first: int, buf: bytearray, start: int, end: int) -> None:
        """One frame: a whole text message, a fragment of one (FIN bit clear, then continuation
        frames until one has FIN set; control frames may come in between), or a control frame."""
        opcode, fin = first & 0x0F, first & 0x80
        if opcode == 1 and fin and self.fragments is None:
            self._on_text(buf, start, end)
        elif opcode == 1 or opcode == 0:
            if opcode == 1:
                self.fragments = bytearray()
            if self.fragments is None:
                self.errors += 1  # a continuation with nothing to continue: a protocol error
                return
            self.fragments += buf[start:end]
            if fin:
                message, self.fragments = self.fragments, None
                self._on_text(message, 0, len(message))
        elif opcode == 8:
            self.close_code = int.from_bytes(buf[start : start + 2], "big") if end > start else 1005
        elif opcode == 9 and self.transport is not None:
            payload = bytes(buf[start:end])
            self.transport.write(bytes((0x8A, 0x80 | len(payload))) + b"\0\0\0\0" + payload)

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
        n = buf.count(CHAT_MARK, start, end)
        if n:
            self.chats += n
            self._count_distinct(buf, start, end, n)
        if self.probe or self.ack_mark is not None:
            self._sample(bytes(buf[start:end]))
        elif buf.count(ERROR_MARK, start, end):
            self.errors += buf.count(ERROR_MARK, start, end)

    def _count_distinct(self, buf: bytearray, start: int, end: int, n: int) -> None:
        """Count each (room, seq) once. A room's seqs arrive in order, one apart, so a frame
        whose chat documents are all one room's next seqs is counted from its first and last
        document; anything else document by document."""
        first = buf.find(CHAT_HEAD, start, end)
        if first < 0:
            self._count_each(buf, start, end)
            return
        room, seq = chat_head(buf, first, end)
        if n > 1:
            tail = buf.rfind(CHAT_HEAD, start, end)
            if chat_head(buf, tail, end) != (room, seq + n - 1):
                self._count_each(buf, start, end)
                return
        if seq > self.last_seq.get(room, 0):
            self.last_seq[room] = seq + n - 1
            self.delivered += n
        else:
            self._count_each(buf, start, end)

    def _count_each(self, buf: bytearray, start: int, end: int) -> None:
        last = self.last_seq
        for room, raw in CHAT_SEQ.findall(buf, start, end):
            seq = int(raw)
            if seq > last.get(room, 0):
                last[room] = seq
                self.delivered += 1
            else:
                self.repeats += 1

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


async def connect(
    host: str,
    port: int,
    cookie: str | None,
    within: float = 30.0,
    source: str | None = None,
) -> WSClient:
    """An upgraded client; from the loopback address `source` (with any port) when given."""
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: WSClient(host, port, cookie),
        host,
        port,
        local_addr=None if source is None else (source, 0),
    )
    async with asyncio.timeout(within):
        await proto.upgraded
    return proto
