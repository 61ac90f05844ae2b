"""`serve --workers N`: N server processes on one port of one host.

The parent binds the listening socket once, then forks N children that all accept on it (the
kernel hands each new connection to one of them). The children share nothing else: messages and
presence go through Redis like between hosts, so each one is a node named `NODE_ID-<n>`.

The parent only supervises. SIGTERM or SIGINT is passed on to every child, which closes its
sockets and stops within `shutdown_timeout`; a child still alive well after that is killed.
A child that dies on its own (a crash, the OOM killer) is started again, unless it failed right
after starting (a broken configuration would otherwise restart in a tight loop): then everything
stops, with exit code 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from chat.settings import Settings

log = logging.getLogger(__name__)

MAX_WORKERS = 128
# A child that exits sooner than this after starting is a configuration problem, not bad luck.
CRASH_LOOP_SECONDS = 5.0
POLL_SECONDS = 0.1

RunOne = Callable[[Settings, socket.socket], None]


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


class Supervisor:
    def __init__(self, settings: Settings, workers: int, run_one: RunOne) -> None:
        self.settings = settings
        self.workers = workers
        self.run_one = run_one
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.stopping = False
        self.kill_at: float | None = None
        self.exit_code = 0

    def run(self, sock: socket.socket) -> int:
        for index in range(1, self.workers + 1):
            self._spawn(index, sock)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        while self.children:
            self._reap(sock)
            if self.kill_at is not None and time.monotonic() > self.kill_at:
                for pid in self.children:
                    log.warning("worker %d did not stop in time; killing it", pid)
                    _signal(pid, signal.SIGKILL)
                self.kill_at = None
            time.sleep(POLL_SECONDS)
        sock.close()
        return self.exit_code

    def _spawn(self, index: int, sock: socket.socket) -> None:
        settings = replace(self.settings, node_id=f"{self.settings.node_id}-{index}")
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                self.run_one(settings, sock)
                code = 0
            except BaseException:  # noqa: BLE001 - the child must never return into the parent's loop
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        log.info("worker %d started as pid %d (node %s)", index, pid, settings.node_id)

    def _reap(self, sock: socket.socket) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            index, started = self.children.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                log.info("worker %d (pid %d) stopped with %d", index, pid, code)
                continue
            log.error("worker %d (pid %d) exited with %d", index, pid, code)
            if code > 0 and time.monotonic() - started < CRASH_LOOP_SECONDS:
                log.error("worker %d died right after starting; stopping every worker", index)
                self.exit_code = 1
                self._stop_all()
            else:
                self._spawn(index, sock)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.children))
        self._stop_all()

    def _stop_all(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.kill_at = time.monotonic() + self.settings.shutdown_timeout + 10.0
        for pid in self.children:
            _signal(pid, signal.SIGTERM)


def _signal(pid: int, signum: int) -> None:
    # Already gone: the reaper collects it.
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
