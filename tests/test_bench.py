"""The load benchmark still runs: its quickest shape end to end (real servers, real sockets).

Speed is never asserted here (that is what `python -m bench` is for); only that every scenario
produced its row and that the messages it sent arrived.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_runs_every_scenario_and_delivers_what_it_sent(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "command: python -m bench --quick" in run.stdout
    report = orjson.loads(out.read_bytes())
    rows = {r["scenario"]: r for r in report["results"]}
    assert set(rows) == {
        "broadcast 20/s",
        "broadcast 20/s [baseline]",
        "ingest",
        "idle",
        "connect",
        "storm",
    }
    for name in ("broadcast 20/s", "broadcast 20/s [baseline]"):
        assert rows[name]["delivered"] == rows[name]["sent"] * rows[name]["clients"]
        assert rows[name]["dropped"] == 0
        assert rows[name]["samples"] > 0
    assert rows["ingest"]["acked"] == rows["ingest"]["sent"] > 0
    assert rows["idle"]["dropped"] == 0 and rows["idle"]["rss_per_conn_kib"] is not None
    assert rows["connect"]["connects_per_s"] > 0
    assert report["ratios"], "no ratio to the baseline was printed"
    assert rows["storm"]["dropped"] == 0 and rows["storm"]["all_joined_s"] is not None
