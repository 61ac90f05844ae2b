"""The load benchmark: `python -m bench` (or `python bench/run.py`).

Starts the real server itself for each scenario (fresh temporary database, one process pinned to
CPU 0), while this process, the load generator, runs on CPU 1. Prints one table row per scenario
and writes everything as JSON under bench/results/. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import ceiling, nodes, scenarios, storm
from bench.scenarios import Shape
from bench.server import pin_self

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = (
    "broadcast", "ingest", "idle", "connect", "storm", "fanout-nodes", "workers", "ceiling",
)  # fmt: skip
SCENARIO_TIMEOUT = 600.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few clients, ~2 s windows (smoke test)")
    p.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    p.add_argument("--no-baseline", action="store_true", help="skip bench/baseline.py")
    p.add_argument("--rates", type=int, nargs="+", help="broadcast msg/s per sender")
    p.add_argument("--clients", type=int, help="broadcast clients in the room")
    p.add_argument("--duration", type=float, help="seconds of sending per window")
    p.add_argument("--ingest-rate", type=float, help="msg/s per ingest member")
    p.add_argument("--idle", type=int, help="idle connections")
    p.add_argument("--connect", type=int, help="connections in the connect scenario")
    p.add_argument("--storm", type=int, help="clients joining one room at once in the storm")
    p.add_argument("--nodes", type=int, nargs="+", help="fanout-nodes: server processes")
    p.add_argument("--shards", type=int, nargs="+", help="fanout-nodes: Redis servers")
    p.add_argument("--node-rooms", type=int, help="fanout-nodes: rooms (of 10 members)")
    p.add_argument("--node-rate", type=float, help="fanout-nodes: msg/s per member")
    p.add_argument("--workers", type=int, help="workers: `serve --workers N`")
    p.add_argument("--ceiling", type=int, help="ceiling: idle connections in one process")
    p.add_argument("--ceiling-room", type=int, help="ceiling: members of the broadcast room")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--spread",
        action="store_true",
        help="senders evenly out of phase only (default for broadcast: a row each way; other "
        "single-server scenarios: in step, so messages come in bursts)",
    )
    mode.add_argument("--in-step", action="store_true", help="broadcast: senders in step only")
    p.add_argument(
        "--latency-at",
        choices=("kernel", "read"),
        default="kernel",
        help="end the latency clock at the kernel's receive stamp of the data (default) or "
        "when the generator reads it (adds the generator's own queue of sockets)",
    )
    p.add_argument("--out", type=Path, help="JSON file (default bench/results/<time>.json)")
    return p.parse_args(argv)


def shape_from(args: argparse.Namespace) -> Shape:
    shape = Shape.quick() if args.quick else Shape()
    changes: dict[str, Any] = {}
    for arg, name in (
        ("rates", "rates"),
        ("clients", "clients"),
        ("duration", "duration"),
        ("ingest_rate", "ingest_rate"),
        ("idle", "idle"),
        ("connect", "connect"),
        ("storm", "storm"),
        ("spread", "spread"),
        ("nodes", "node_counts"),
        ("shards", "shard_counts"),
        ("node_rooms", "node_rooms"),
        ("node_rate", "node_rate"),
        ("workers", "workers"),
        ("ceiling", "ceiling"),
        ("ceiling_room", "ceiling_room"),
    ):
        value = getattr(args, arg)
        if value is not None and value is not False:
            changes[name] = tuple(value) if isinstance(value, list) else value
    changes["kernel_stamps"] = args.latency_at == "kernel"
    if args.spread or args.in_step:
        changes["broadcast_modes"] = (bool(args.spread),)
    return Shape(**{**shape.__dict__, **changes})


COLUMNS = (
    ("scenario", "scenario", 26),
    ("offered/s", "offered_per_s", 10),
    ("done/s", "rate", 9),
    ("done %", "pct", 7),
    ("dropped", "dropped", 7),
    ("p50 ms", "p50_ms", 7),
    ("p99 ms", "p99_ms", 7),
    ("p99.9 ms", "p999_ms", 8),
    ("all in s", "all_joined_s", 8),
    ("CPU-s/1M", "cpu_s_per_1m", 8),
    ("KiB/conn", "rss_per_conn_kib", 8),
    ("heard/need", "heard_ratio", 10),
    ("gen CPU", "gen_cpu_frac", 7),
    ("other CPU0", "other_load_cpu0_frac", 10),
    ("other CPU1", "other_load_cpu1_frac", 10),
)


def row(result: dict[str, Any]) -> str:
    r = dict(result)
    r["rate"] = r.get("delivered_per_s") or r.get("acked_per_s") or r.get("connects_per_s")
    if r["scenario"].startswith("ingest"):
        r["rate"], r["pct"] = r["acked_per_s"], r["acked_pct"]
    else:
        r["pct"] = r.get("delivered_pct")
    cells = []
    for _, key, width in COLUMNS:
        value = r.get(key)
        cells.append(("-" if value is None else str(value)).rjust(width))
    notes = []
    if r.get("gen_cpu_frac", 0) > 0.9:
        notes.append("load generator SATURATED")
    if r.get("other_load_cpu0_frac", 0) > 0.1:
        notes.append("other load on CPU 0: figures disturbed")
    shards = r.get("redis_commands_per_shard", [])
    if len(shards) > 1 and min(shards) * 10 < max(shards):
        notes.append("one Redis shard did almost nothing: is REDIS_URL's list supported?")
    if r.get("other_load_cpu1_frac", 0) > 0.1:
        notes.append("other load on CPU 1: the generator was disturbed")
    return " ".join(cells) + ("  <- " + "; ".join(notes) if notes else "")


def header() -> str:
    return " ".join(title.rjust(width) for title, _, width in COLUMNS)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    shape = shape_from(args)
    wanted = args.only or SCENARIOS
    # SIGTERM (a timeout, a CI cancel) stops the run as Ctrl-C does: servers stopped, files gone.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    results: list[dict[str, Any]] = []
    print(header(), flush=True)

    async def one(coro: Any, name: str | None = None) -> None:
        """Run one scenario. A named one that fails (a setup a branch does not support yet, a
        limit of this machine) gives an error row instead of ending the whole run."""
        try:
            async with asyncio.timeout(SCENARIO_TIMEOUT):
                result = await coro
        except Exception as exc:
            if name is None:
                raise
            result = {"scenario": name, "error": f"{type(exc).__name__}: {exc}"[:300]}
            print(f"{name.rjust(COLUMNS[0][2])} FAILED: {result['error']}", flush=True)
            results.append(result)
            return
        results.append(result)
        print(row(result), flush=True)

    if "broadcast" in wanted:
        for rate in shape.rates:
            for spread in shape.broadcast_modes:  # spread first: the headline row
                moded = dataclasses.replace(shape, spread=spread)
                await one(scenarios.broadcast("chat", moded, rate))
                if not args.no_baseline:
                    await one(scenarios.broadcast("baseline", moded, rate))
    if "ingest" in wanted:
        await one(scenarios.ingest(shape))
    if "idle" in wanted:
        await one(scenarios.idle(shape))
    if "connect" in wanted:
        await one(scenarios.connect_rate(shape))
    if "storm" in wanted:
        await one(storm.storm(shape))
    if "fanout-nodes" in wanted:
        for count in shape.node_counts:
            for shards in shape.shard_counts:
                name = f"fanout-nodes {count}x{shards} redis"
                await one(nodes.fanout_nodes(shape, count, shards), name)
    if "workers" in wanted:
        # One process on Redis, then N: the broker's cost and the workers' apart.
        await one(nodes.workers(shape, 1), "ingest on redis")
        await one(nodes.workers(shape, shape.workers), f"ingest --workers {shape.workers}")
    if "ceiling" in wanted:
        top = shape
        if args.ceiling is None:
            # The default asks for what this machine's open-file limit allows (a sandbox may
            # cap the hard limit); --ceiling asks for exactly that many, or fails saying why.
            fit = ceiling.most_allowed(shape.ceiling)
            if fit < shape.ceiling:
                print(f"ceiling: {fit} connections, not {shape.ceiling}: the open-file limit")
                top = dataclasses.replace(shape, ceiling=fit)
        await one(ceiling.ceiling(top), f"ceiling {top.ceiling}")

    ratios = (
        ratio_to_baseline(results)
        + workers_ratio(results)
        + heard_lines(results)
        + ceiling.summary(results)
    )
    for line in ratios:
        print(line)
    return {"shape": shape.__dict__, "results": results, "ratios": ratios}


def ratio_to_baseline(results: list[dict[str, Any]]) -> list[str]:
    """Ours vs bench/baseline.py at each rate and sender pattern: delivered/s, and CPU per
    delivery (inverse)."""
    lines = []
    ours = {
        (r["offered_per_s"], r["spread"]): r
        for r in results
        if r.get("server") == "chat" and "senders" in r
    }
    for base in (r for r in results if r.get("server") == "baseline"):
        mine = ours.get((base["offered_per_s"], base["spread"]))
        if mine is None or not base["delivered_per_s"]:
            continue
        throughput = mine["delivered_per_s"] / base["delivered_per_s"]
        cpu = (
            base["cpu_s_per_1m"] / mine["cpu_s_per_1m"]
            if mine["cpu_s_per_1m"] and base["cpu_s_per_1m"]
            else None
        )
        lines.append(
            f"ratio to baseline at {base['offered_per_s']}/s offered"
            f"{', spread' if base['spread'] else ', in step'}: delivered/s "
            f"{throughput:.2f}, CPU efficiency (baseline CPU-s/1M / ours) "
            f"{'-' if cpu is None else f'{cpu:.2f}'}"
        )
    return lines


def workers_ratio(results: list[dict[str, Any]]) -> list[str]:
    """CPU per delivery of one process on Redis and of `serve --workers N` (all its processes,
    Redis apart) against one process without Redis (the ingest row)."""
    one = next((r for r in results if r["scenario"] == "ingest"), None)
    if one is None or not one.get("cpu_s_per_1m"):
        return []
    lines = []
    for r in results:
        if "redis_cpu_s" not in r or "workers" not in r or not r.get("cpu_s_per_1m"):
            continue
        lines.append(
            f"{r['scenario']} against one process (ingest): CPU per delivery "
            f"{r['cpu_s_per_1m'] / one['cpu_s_per_1m']:.2f}x (and Redis {r['redis_cpu_s']} "
            f"CPU-s), delivered/s {r['delivered_per_s']} against {one['delivered_per_s']}; "
            "the server's processes and Redis share CPU 0, the generator has CPU 1"
        )
    return lines


def heard_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per node of each fanout-nodes row: frames heard from Redis / frames its members needed."""
    return [
        f"{r['scenario']}: heard/needed per node "
        + ", ".join(
            f"{h}/{n}" for h, n in zip(r["heard_per_node"], r["needed_per_node"], strict=True)
        )
        + " (whole chat per node: "
        + ", ".join(map(str, r["whole_chat_per_node"]))
        + "); Redis commands per shard "
        + ", ".join(map(str, r["redis_commands_per_shard"]))
        for r in results
        if "heard_per_node" in r
    ]


def event_loop_name() -> str:
    try:
        return f"uvloop {importlib.metadata.version('uvloop')}"
    except importlib.metadata.PackageNotFoundError:
        return "asyncio"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    pinned = pin_self(1)
    started = dt.datetime.now(dt.UTC)
    print(f"command: {command}")
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" {event_loop_name()}; server on CPU 0, generator on CPU "
        f"{'1' if pinned else 'any (one core only)'}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        "latency: from the send stamp in the message to "
        + (
            "the kernel's receive stamp at the client socket (SO_TIMESTAMPNS)"
            if args.latency_at == "kernel"
            else "when the generator reads it"
        ),
        flush=True,
    )
    loop_factory = None
    try:
        import uvloop
    except ImportError:
        pass
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        try:
            report = runner.run(run(args))
        except asyncio.CancelledError:
            print("stopped (SIGTERM)", file=sys.stderr)
            return 128 + signal.SIGTERM
    report.update(
        command=command,
        started=started.isoformat(timespec="seconds"),
        cpus=os.cpu_count(),
        python=platform.python_version(),
        event_loop=event_loop_name(),
        load_average_end=os.getloadavg(),
    )
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"{started:%Y%m%dT%H%M%SZ}.json"
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    print(f"results: {out}")
    return 1 if any("error" in r for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
