"""A real `python -m chat` process on a free loopback port, for the browser tests.

It can be stopped and started again on the same port and database, which is how the
reconnect scenario takes the server away from under two open pages.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChatServer:
    """Start, stop and restart one server process; its log goes to a file shown on failure."""

    def __init__(self, var_dir: Path, **env: str) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = var_dir / "server.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "CHAT_HOST": "127.0.0.1",
            "CHAT_PORT": str(self.port),
            "CHAT_VAR_DIR": str(var_dir),
            "DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'chat.sqlite3'}",
            "SECRET_KEY": "e2e secret key, fixed so sessions survive a restart",
            "PASSWORD_TIME_COST": "1",
            "PASSWORD_MEMORY_KIB": "8192",
            "SHUTDOWN_TIMEOUT": "2",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None
        var_dir.mkdir(parents=True, exist_ok=True)

    def run_command(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "chat", *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            input=stdin.encode(),
            capture_output=True,
            timeout=30,
            check=True,
        )
        return done.stdout.decode()

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chat", "serve"],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited at start-up:\n{self.log()}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def _answers(self) -> bool:
        connection = HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            connection.request("GET", "/login")
            return connection.getresponse().status == 200
        except OSError:  # refused while it starts; ConnectionError and timeouts are OSErrors
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown closes the sockets with 1001), SIGKILL if it hangs."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]
