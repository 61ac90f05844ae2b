"""The load benchmark still runs: its quickest shape end to end (real servers, real sockets).

Speed is never asserted here (that is what `python -m bench` is for); only that every scenario
produced its row and that the messages it sent arrived.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parent.parent

# fanout-nodes and workers start redis-server processes.
pytestmark = [pytest.mark.redis]


def test_quick_bench_runs_every_scenario_and_delivers_what_it_sent(tmp_path: Path) -> None:
    need(shutil.which("redis-server") is not None, "redis-server (several nodes, --workers)")
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "command: python -m bench --quick" in run.stdout
    report = orjson.loads(out.read_bytes())
    rows = {r["scenario"]: r for r in report["results"]}
    assert set(rows) == {
        "broadcast 20/s spread",
        "broadcast 20/s spread [baseline]",
        "broadcast 20/s",
        "broadcast 20/s [baseline]",
        "ingest",
        "idle",
        "connect",
        "storm",
        "fanout-nodes 2x1 redis",
        "ingest on redis",
        "ingest --workers 2",
        "ceiling 60",
    }
    for name in rows:
        if name.startswith("broadcast"):
            assert rows[name]["delivered"] == rows[name]["sent"] * rows[name]["clients"]
            assert rows[name]["dropped"] == rows[name]["repeats"] == 0
            assert rows[name]["samples"] > 0
    assert rows["ingest"]["acked"] == rows["ingest"]["sent"] > 0
    assert rows["idle"]["dropped"] == 0 and rows["idle"]["rss_per_conn_kib"] is not None
    assert rows["connect"]["connects_per_s"] > 0
    assert report["ratios"], "no ratio to the baseline was printed"
    assert rows["storm"]["dropped"] == 0 and rows["storm"]["all_joined_s"] is not None
    nodes = rows["fanout-nodes 2x1 redis"]
    assert nodes["delivered"] == nodes["sent"] * 4 > 0  # rooms of 4 in the quick shape
    # Each node heard from Redis exactly what its members needed, counted by the server.
    assert nodes["heard_per_node"] == nodes["needed_per_node"]
    assert min(nodes["needed_per_node"]) > 0
    for name, processes in (("ingest on redis", 1), ("ingest --workers 2", 3)):
        row = rows[name]
        assert row["acked"] == row["sent"] > 0 and row["server_processes"] == processes
        assert row["redis_cpu_s"] is not None
    top = rows["ceiling 60"]
    assert top["connected"] == 60 and top["dropped"] == 0 and top["source_addresses"] == 3
    assert None not in top["room_all_have_it_s"] and top["room_members"] == 30
