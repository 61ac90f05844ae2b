"""TLS served directly: a real `python -m chat` process with a certificate this test makes,
spoken to over https and wss. Its logs are JSON lines (LOG_FORMAT=json)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chat.settings import PROJECT_ROOT
from tests.helpers import CSRF_RE, PASSWORD


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chat test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, ssl.SSLContext, Path]]:
    cert, key = make_certificate(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "CHAT_HOST": "127.0.0.1",
        "CHAT_PORT": str(port),
        "CHAT_VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "tls test secret key, long enough",
        "PASSWORD_TIME_COST": "1",
        "PASSWORD_MEMORY_KIB": "8192",
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chat",
            "serve",
            env=env,
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    client_ssl = ssl.create_default_context(cafile=str(cert))
    base = f"https://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(200):  # bounded: about 20 s at most
                if proc.returncode is not None:
                    pytest.fail(f"server exited: {log_path.read_text()}")
                try:
                    async with probe.get(f"{base}/healthz", ssl=client_ssl) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("the TLS server did not come up")
        yield base, client_ssl, log_path
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_https_and_wss_with_a_generated_certificate(
    tls_server: tuple[str, ssl.SSLContext, Path],
) -> None:
    base, client_ssl, log_path = tls_server
    # Plain http on the TLS port gets nowhere.
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError):
            async with plain.get(base.replace("https", "http") + "/healthz") as r:
                await r.read()
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for a bare IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{base}/register", ssl=client_ssl) as page:
            assert page.status == 200
            assert "Secure" in page.headers["Set-Cookie"]  # Secure by default under TLS
            assert page.headers["Strict-Transport-Security"] == "max-age=31536000"
            match = CSRF_RE.search(await page.text())
            assert match
        form = {"username": "alice", "password": PASSWORD, "confirm": PASSWORD}
        async with browser.post(
            f"{base}/register",
            data={**form, "csrf_token": match.group(1)},
            ssl=client_ssl,
            allow_redirects=False,
        ) as response:
            assert response.status == 302
        wss = base.replace("https", "wss") + "/ws"
        async with browser.ws_connect(wss, ssl=client_ssl, headers={"Origin": base}) as ws:
            await ws.send_json({"type": "join", "room": "general"})
            await ws.send_json(
                {"type": "chat", "room": "general", "text": "over TLS", "client_id": "t1"}
            )
            async with asyncio.timeout(10):
                async for msg in ws:
                    # A frame may carry several documents, one per line (docs/protocol.md).
                    frames = [json.loads(line) for line in msg.data.split("\n")]
                    chats = [f for f in frames if f["type"] == "chat"]
                    if chats:
                        assert chats[0]["text"] == "over TLS" and chats[0]["client_id"] == "t1"
                        break
    # Every log line is one JSON object; the access log has the request's fields.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert any(e.get("event") == "serving" and e.get("scheme") == "https" for e in lines)
    access = [e for e in lines if e.get("event") == "http"]
    assert any(e["path"] == "/register" and e["status"] == 302 for e in access)


async def test_a_bad_certificate_stops_start_up_with_one_line(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "CHAT_VAR_DIR": str(tmp_path / "var"),
        "TLS_CERT": str(cert),
        "TLS_KEY": str(garbage),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chat",
        "serve",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chat: bad setting: TLS_CERT/TLS_KEY:")
