"""Subscribe (queue) mode: J jobs of S seconds at concurrency C, batchrun against fal-client.

    python bench/bench_subscribe.py [--jobs 200] [--seconds 0.3] [--concurrency 50] [--runners 64]

One https server process with enough runners that nothing waits in its queue, so the ideal
makespan is ceil(J / C) * S (1.2 s for 200 x 0.3 s at 50). For each client:
  makespan      first start to last finish (batchrun: from its records; fal-client: its own loop)
  http/job      HTTP requests the server counted (submit + status + stream + result) / J
  overhead      per job, latency minus the S seconds of work: median and p95. For batchrun also
  lag           latency - queue_s - the server's inference_time: from the runner finishing to the
                record (median, p95), i.e. how late the client learns of the completion
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

COUNTED = ("submit", "status", "stream", "result")


def _http_per_job(before: dict[str, Any], after: dict[str, Any], jobs: int) -> tuple[float, dict[str, int]]:
    ops = {op: after["requests"][op] - before["requests"][op] for op in COUNTED}
    return round(sum(ops.values()) / jobs, 2), ops


def _batchrun(srv: harness.Server, workdir: Path, jobs: int, seconds: float, concurrency: int) -> dict[str, Any]:
    spec = harness.write_spec(workdir / "subscribe.json", endpoint="local/sleep", mode="subscribe", repeat=jobs,
                              arguments={"seconds": seconds, "i": "${{ repeat }}"}, concurrency=concurrency)
    out = workdir / "subscribe.jsonl"
    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)
    before = srv.stats()
    child = harness.run_child(harness.batchrun_cmd(spec, out, srv, concurrency), env=srv.client_env())
    after = srv.stats()
    records = harness.read_records(out) if out.exists() else []
    ok = sum(r["status"] == "ok" for r in records)
    if child.returncode != 0 or ok != jobs:
        raise RuntimeError(
            f"batchrun subscribe failed (exit {child.returncode}, {ok}/{jobs} ok): {child.stderr[-2000:]}"
        )
    latencies = [r["timing"]["latency_s"] for r in records]
    lags = [
        r["timing"]["latency_s"] - (r["timing"]["queue_s"] or 0.0) - (r["metrics"] or {}).get("inference_time", seconds)
        for r in records
    ]
    per_job, ops = _http_per_job(before, after, jobs)
    return {
        "jobs": jobs,
        "ok": ok,
        "makespan_s": round(harness.records_span(records), 3),
        "http_per_job": per_job,
        "ops": ops,
        "overhead_p50_s": round(harness.quantile(latencies, 0.5) - seconds, 3),
        "overhead_p95_s": round(harness.quantile(latencies, 0.95) - seconds, 3),
        "lag_p50_s": round(harness.quantile(lags, 0.5), 3),
        "lag_p95_s": round(harness.quantile(lags, 0.95), 3),
        "wall_s": round(child.wall_s, 2),
        "cpu_s": round(child.cpu_s, 2),
        "peak_rss_mb": round(child.peak_rss_mb, 1),
    }


def _fal_client(srv: harness.Server, jobs: int, seconds: float, concurrency: int) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(harness.BENCH_DIR / "clients.py"),
        "fal-client",
        "--n",
        str(jobs),
        "--concurrency",
        str(concurrency),
        "--subscribe",
        str(seconds),
    ]
    before = srv.stats()
    child = harness.run_child(cmd, env=srv.client_env())
    after = srv.stats()
    if child.returncode != 0:
        raise RuntimeError(f"fal-client subscribe failed (exit {child.returncode}): {child.stderr[-2000:]}")
    row = json.loads(child.stdout.strip().splitlines()[-1])
    per_job, ops = _http_per_job(before, after, jobs)
    latencies = row.pop("latencies")
    return {
        "jobs": jobs,
        "ok": row["ok"],
        "makespan_s": row["seconds"],
        "http_per_job": per_job,
        "ops": ops,
        "overhead_p50_s": round(harness.quantile(latencies, 0.5) - seconds, 3),
        "overhead_p95_s": round(harness.quantile(latencies, 0.95) - seconds, 3),
        "lag_p50_s": None,
        "lag_p95_s": None,
        "wall_s": round(child.wall_s, 2),
        "cpu_s": round(child.cpu_s, 2),
        "peak_rss_mb": round(child.peak_rss_mb, 1),
    }


def bench(
    workdir: Path, *, jobs: int, seconds: float, concurrency: int, runners: int, rounds: int = 1
) -> dict[str, Any]:
    ideal = math.ceil(jobs / concurrency) * seconds
    rows: dict[str, dict[str, Any]] = {}
    with harness.server(workdir, runners=runners, tls=True) as srv:
        for r in range(rounds):
            for name in ("batchrun", "fal-client"):
                row = (
                    _batchrun(srv, workdir, jobs, seconds, concurrency)
                    if name == "batchrun"
                    else _fal_client(srv, jobs, seconds, concurrency)
                )
                row["makespan_x_ideal"] = round(row["makespan_s"] / ideal, 3)
                print(
                    f"  subscribe round {r + 1}: {name:10s} makespan {row['makespan_s']:.2f} s "
                    f"({row['makespan_x_ideal']:.2f}x ideal), {row['http_per_job']} HTTP/job",
                    file=sys.stderr,
                    flush=True,
                )
                if name not in rows or row["makespan_s"] < rows[name]["makespan_s"]:
                    rows[name] = row
    return {
        "jobs": jobs,
        "seconds": seconds,
        "concurrency": concurrency,
        "runners": runners,
        "ideal_s": round(ideal, 3),
        "rows": rows,
        "ratios": {
            "fal-client/batchrun makespan": round(rows["fal-client"]["makespan_s"] / rows["batchrun"]["makespan_s"], 2)
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--runners", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sub-") as tmp:
        result = bench(
            Path(tmp),
            jobs=args.jobs,
            seconds=args.seconds,
            concurrency=args.concurrency,
            runners=args.runners,
            rounds=args.rounds,
        )
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
