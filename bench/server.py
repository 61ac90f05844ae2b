"""Start a server for one scenario (ours or the baseline), pinned to CPU 0, and read its costs
from /proc. Also: accounts and rooms in the fresh database, and logins through the real /login."""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "bench password 1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child between fork and exec: SIGTERM when the bench dies, however it dies (a timeout,
    SIGKILL), so no server outlives the run. Linux's prctl(PR_SET_PDEATHSIG); kept across exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def pin(cpu: int) -> list[str]:
    """`taskset -c N` when the machine has 2+ cores and taskset exists."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def pin_self(cpu: int) -> bool:
    if (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def bench_env(var_dir: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "CHAT_HOST": HOST,
        "CHAT_PORT": str(port),
        "CHAT_VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'bench.sqlite3'}",
        "SECRET_KEY": "bench secret key, not for production",
        # Still Argon2id, but cheap: the bench logs in thousands of sessions.
        "PASSWORD_TIME_COST": "1",
        "PASSWORD_MEMORY_KIB": "1024",
        # The bench offers its load on purpose; the limits have their own tests.
        "CHAT_RATE_PER_SECOND": "100000",
        "CHAT_BURST": "100000",
        "MAX_CONNECTIONS_PER_USER": "100",
        "LOGIN_ATTEMPTS_PER_MINUTE": "100000",
        # One INFO line per connection would be part of what we measure.
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.update(extra or {})
    return env


def stop_process(proc: subprocess.Popen[bytes] | None, how: signal.Signals) -> None:
    """Ask a child to stop with `how`; kill it if it has not within 10 s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(how)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Server:
    """A server process on CPU 0 with a fresh temporary database; always killed on exit."""

    kind: str  # "chat" or "baseline"
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: int = 1  # `serve --workers N` (needs REDIS_URL in extra_env)
    port: int = field(default_factory=free_port)
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chat-bench-")))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        return bench_env(self.tmp / "var", self.port, self.extra_env)

    def command(self) -> list[str]:
        if self.kind == "baseline":
            args = [sys.executable, str(ROOT / "bench" / "baseline.py"), "--port", str(self.port)]
        else:
            args = [sys.executable, "-m", "chat", "serve"]
            if self.workers > 1:
                args += ["--workers", str(self.workers)]
        return pin(0) + args

    def pids(self) -> list[int]:
        """The server's processes: the one started, and with --workers its children."""
        return [self.pid, *children(self.pid)]

    async def prepare(self, accounts: int, rooms: list[str]) -> None:
        """Accounts and rooms straight into the fresh database, before the server starts."""
        if self.kind == "baseline":
            return
        env = self.env
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.setup_db",
            str(accounts),
            *rooms,
            env=env,
            cwd=ROOT,
        )
        if await proc.wait() != 0:
            raise RuntimeError("creating the bench accounts failed")

    def spawn(self) -> None:
        with (self.tmp / "server.log").open("wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    async def start(self) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.log_tail()}")
                try:
                    async with http.get(f"http://{HOST}:{self.port}/login") as r:
                        if r.status in (200, 404):
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start in 30 s")

    def log_tail(self, n: int = 2000) -> str:
        path = self.tmp / "server.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT)
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def children(pid: int) -> list[int]:
    """Live child processes of `pid`, from /proc/<n>/stat (field 4 is the parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@dataclass
class RedisServer:
    """A throwaway redis-server on a free loopback port, pinned with the servers to CPU 0: no
    persistence; always stopped on exit."""

    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="chat-bench-redis-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [
                *pin(0), "redis-server", "--bind", HOST, "--port", str(self.port),
                "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
                "--logfile", "redis.log",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )  # fmt: skip

    async def start(self) -> None:
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise RuntimeError("redis-server did not listen within 20 s")

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)
        shutil.rmtree(self.tmp, ignore_errors=True)


def username(i: int) -> str:
    return f"bench{i:05d}"


async def login_all(port: int, accounts: int, concurrency: int = 16) -> list[str]:
    """Log every account in through the real /login (CSRF token from the page); return the
    session cookies."""
    cookies: list[str] = [""] * accounts
    next_i = iter(range(accounts))

    async def worker() -> None:
        for i in next_i:
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(cookie_jar=jar) as http:
                base = f"http://{HOST}:{port}"
                async with http.get(f"{base}/login") as r:
                    match = CSRF_RE.search(await r.text())
                    assert match, "no CSRF token on /login"
                form = {"username": username(i), "password": PASSWORD, "csrf_token": match[1]}
                async with http.post(f"{base}/login", data=form, allow_redirects=False) as r:
                    if r.status != 302:
                        raise RuntimeError(f"login of {username(i)} failed: {r.status}")
                cookie = next((c.value for c in jar if c.key == "chat_session"), None)
                assert cookie, "no session cookie after login"
                cookies[i] = cookie

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return cookies
