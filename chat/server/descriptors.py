"""Open file descriptors: every socket, every database connection, every log file is one.

The common default soft limit (1024) is far below what one process serves, and when it is
reached the kernel refuses `accept()` (the client is reset in the handshake) or whatever else
asks for a descriptor next, such as a database connection. So the server raises its soft limit
to the hard one at start-up, and keeps `FD_RESERVE` descriptors back: an upgrade that would
take the process into that reserve gets 503 with `Retry-After` instead, while the descriptors
the message path needs (the database's and Redis's connections) were all opened at start-up.
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path

log = logging.getLogger(__name__)

NR_OPEN = Path("/proc/sys/fs/nr_open")
# One warning per this many seconds while upgrades are being refused, not one per upgrade.
LOG_EVERY_SECONDS = 10.0


def raise_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; log and return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        # An unlimited hard limit still cannot be exceeded by the kernel's own ceiling.
        try:
            target = int(NR_OPEN.read_text())
        except (OSError, ValueError):
            target = soft
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
        else:
            soft = target
    log.info(
        "open-file limit: %d (hard limit %s)",
        soft,
        "unlimited" if hard == resource.RLIM_INFINITY else hard,
        extra={"event": "open_files_limit", "soft": soft, "hard": hard},
    )
    return soft


def current_limit() -> int | None:
    """The soft limit now, or None when there is none."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class Headroom:
    """Whether one more long-lived socket fits under the open-file limit, with `reserve` kept
    for what the process needs besides sockets (connections, files, the next accept)."""

    def __init__(self, reserve: int) -> None:
        self.reserve = reserve
        self.refused = 0
        self._logged_at = -LOG_EVERY_SECONDS

    def room_for(self, fileno: int, sockets: int) -> bool:
        """`fileno` is the descriptor of the connection asking: Linux hands out the lowest free
        one, so a high number means every one below it was taken when it was accepted.
        `sockets` is how many sockets this process keeps open. Both cost nothing to know."""
        limit = current_limit()
        if limit is None:
            return True
        if max(fileno, sockets) < limit - self.reserve:
            return True
        self.refused += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning(
                "out of file descriptors: refusing new sockets with 503 (limit %d, %d kept in "
                "reserve, %d sockets open, %d refused so far)",
                limit,
                self.reserve,
                sockets,
                self.refused,
                extra={"event": "out_of_descriptors", "limit": limit, "refused": self.refused},
            )
        return False
