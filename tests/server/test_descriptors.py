"""File descriptors: the server raises its open-file limit at start-up, and when it is running
out it refuses new sockets with 503 and `Retry-After` (and says so in its log) while the sockets
it has keep chatting."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import PASSWORD
from tests.server.test_process import chat_env, free_port, log_in, run_cli

SOFT, HARD, RESERVE = 96, 160, 32


def _low_limits() -> None:  # in the child, before exec: a soft limit below a low hard one
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    env = chat_env(tmp_path / "var", free_port())
    env.update(MAX_CONNECTIONS_PER_USER="1000", FD_RESERVE=str(RESERVE), LOG_LEVEL="INFO")
    made = run_cli(env, "create-user", "ann", "--password-stdin", stdin=PASSWORD)
    assert made.returncode == 0, made.stderr
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chat"],
            env=env,
            stdout=out,
            stderr=out,
            preexec_fn=_low_limits,
        )
    try:
        url = f"http://127.0.0.1:{env['CHAT_PORT']}"
        deadline = time.monotonic() + 30
        while "serving" not in log.read_text() or "open-file limit" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield url, log
    finally:
        proc.kill()
        proc.wait()


async def test_out_of_descriptors_refuses_upgrades_with_503_and_keeps_the_message_path(
    server: tuple[str, Path],
) -> None:
    url, log = server
    assert f"open-file limit: {HARD} (hard limit {HARD})" in log.read_text()
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        await log_in(http, url, "ann")
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        refused: aiohttp.WSServerHandshakeError | None = None
        try:
            for _ in range(HARD):
                try:
                    sockets.append(await http.ws_connect(f"{url}/ws"))
                except aiohttp.WSServerHandshakeError as exc:
                    refused = exc
                    break
            # Refused before the reserve, and past what the old soft limit would have allowed.
            assert refused is not None and refused.status == 503
            assert refused.headers is not None and int(refused.headers["Retry-After"]) > 0
            assert SOFT - RESERVE <= len(sockets) < HARD - RESERVE
            assert "out of file descriptors" in log.read_text()

            # The sockets already open still join and chat: the message path needs no new
            # descriptor.
            ws = sockets[0]
            await ws.send_json({"type": "join", "room": "general"})
            await ws.send_json({"type": "chat", "room": "general", "text": "hi", "client_id": "a"})
            got: set[str] = set()
            while "chat" not in got:
                frame = await asyncio.wait_for(ws.receive_json(), 10)
                got.add(frame["type"])
                assert frame["type"] != "error", frame

            # Descriptors freed: upgrades are accepted again.
            for old in sockets[-20:]:
                await old.close()
            del sockets[-20:]
            await asyncio.sleep(0.2)
            sockets.append(await http.ws_connect(f"{url}/ws"))
        finally:
            for ws in sockets:
                await ws.close()
