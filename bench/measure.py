"""What a scenario measures with: a window of CPU use over the server's processes, any Redis,
the generator and CPU 0 as a whole (from /proc), and latency percentiles."""

from __future__ import annotations

import os
import resource
import time
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.server import cpu_seconds


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_busy(cpu: int) -> tuple[float, float]:
    """Seconds one CPU spent in processes (user + nice + system) and in interrupts (irq +
    softirq: loopback TCP is largely softirq work) since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            tck = os.sysconf("SC_CLK_TCK")
            return (v[0] + v[1] + v[2]) / tck, (v[5] + v[6]) / tck
    return 0.0, 0.0


class Window:
    """CPU of the server's processes, of any Redis beside them, of this generator and of CPU 0 as
    a whole over one measured window."""

    def __init__(self, *server_pids: int, redis_pids: Sequence[int] = ()) -> None:
        self.pids, self.redis_pids = server_pids, tuple(redis_pids)
        self.t0 = time.monotonic()
        self.server0 = sum(map(cpu_seconds, server_pids))
        self.redis0 = sum(map(cpu_seconds, self.redis_pids))
        self.own0 = own_cpu()
        self.cpu0 = cpu_busy(0)
        self.cpu1 = cpu_busy(1)

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        server = sum(map(cpu_seconds, self.pids)) - self.server0
        redis = sum(map(cpu_seconds, self.redis_pids)) - self.redis0
        own = own_cpu() - self.own0
        # Whatever else ran on the server's CPU (other helpers' tests...) disturbs the figures.
        procs, irqs = cpu_busy(0)
        other = max(0.0, procs - self.cpu0[0] - server - redis)
        # ...and whatever else ran on the generator's CPU.
        other1 = max(0.0, cpu_busy(1)[0] - self.cpu1[0] - own)
        costs = {
            "other_load_cpu1_frac": round(other1 / wall, 3) if wall else 0.0,
            "irq_cpu0_frac": round((irqs - self.cpu0[1]) / wall, 3) if wall else 0.0,
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 3),
            "gen_cpu_frac": round(own / wall, 3) if wall else 0.0,
            "other_load_cpu0_frac": round(other / wall, 3) if wall else 0.0,
        }
        if self.redis_pids:
            costs["redis_cpu_s"] = round(redis, 3)
        return costs


def percentiles(samples: Iterable[array[int]]) -> dict[str, float | None]:
    values = sorted(v for arr in samples for v in arr)
    if not values:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "samples": 0}

    def at(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))] / 1e6, 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "p999_ms": at(0.999), "samples": len(values)}
