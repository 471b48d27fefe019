"""Every benchmark in one invocation: a table, the ratios, and the targets met or missed.

    python bench/run_all.py            # the full set (about 5 minutes on 2 cores)
    python bench/run_all.py --quick    # smaller sizes, one round (about a minute)
    python bench/run_all.py --json results.json   # also write the raw numbers

Sizes (full / --quick): run mode 3000 / 1000 calls at 64 concurrent, 2 / 1 rounds; subscribe
200 x 0.3 s at 50 concurrent (both); memory run 100k / 20k calls; plan 1M / skipped;
resume 1M / 100k lines. --tiny (for the smoke test) shrinks everything to a few dozen requests.
Ratios are taken within this one run; the machine is shared, so absolute rates move between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_memory
import bench_resume
import bench_run_mode
import bench_subscribe
import harness

SIZES = {
    "full": {"n": 3000, "rounds": 2, "jobs": 200, "memory": 100_000, "plan": True, "resume": 1_000_000},
    "quick": {"n": 1000, "rounds": 1, "jobs": 200, "memory": 20_000, "plan": False, "resume": 100_000},
    "tiny": {"n": 50, "rounds": 1, "jobs": 20, "memory": 50, "plan": False, "resume": 100},
}


def _check(targets: list[dict[str, Any]], name: str, value: float | None, limit: float, *, at_least: bool,
           unit: str = "") -> None:
    met = value is not None and (value >= limit if at_least else value <= limit)
    targets.append({"target": name, "value": value, "limit": f"{'>=' if at_least else '<='} {limit}{unit}",
                    "met": met})


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    run = result["run_mode"].get("https") or result["run_mode"]["http"]
    r = run["ratios"]
    _check(out, "run mode: batchrun / fal-client req/s", r.get("batchrun/fal-client"), 5, at_least=True, unit="x")
    _check(out, "run mode: batchrun / bare aiohttp req/s", r.get("batchrun/aiohttp"), 0.6, at_least=True, unit="x")
    sub = result["subscribe"]["rows"]["batchrun"]
    _check(out, "subscribe: makespan / ideal", sub["makespan_x_ideal"], 1.15, at_least=False, unit="x")
    _check(out, "subscribe: HTTP requests per job (stream)", sub["http_per_job"], 3, at_least=False)
    mem = result["memory"]["run"]
    _check(out, f"{mem['requests']:,}-request run: peak RSS", mem["peak_rss_mb"], 150, at_least=False, unit=" MB")
    plan = result["memory"].get("plan", {}).get("plan")
    if plan:
        _check(out, "1M plan: peak RSS", plan["peak_rss_mb"], 100, at_least=False, unit=" MB")
        _check(out, "1M plan: seconds", plan["seconds"], 30, at_least=False, unit=" s")
    res = result["resume"]
    _check(out, f"resume over {res['lines']:,} lines: seconds (whole run)", res["run"]["wall_s"], 10,
           at_least=False, unit=" s")
    _check(out, f"resume over {res['lines']:,} lines: peak RSS (whole run)", res["run"]["peak_rss_mb"], 200,
           at_least=False, unit=" MB")
    return out


def render(result: dict[str, Any]) -> str:
    """The markdown tables RESULTS.md keeps."""
    m = result["machine"]
    lines = [f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, load average at start "
             f"{', '.join(f'{x:.1f}' for x in m['load_avg'])}; "
             + ", ".join(f"{k} {v}" for k, v in m["packages"].items()), ""]
    rm = result["run_mode"]
    lines += [
        f"Run mode: {rm['n']} calls to local/echo at {rm['concurrency']} concurrent, best of {rm['rounds']} round(s)",
        "",
        "| scheme | client | req/s | CPU ms/req | peak RSS MB |",
        "|---|---|---:|---:|---:|",
    ]
    for scheme in ("https", "http"):
        if scheme not in rm:
            continue
        for client, row in rm[scheme]["rows"].items():
            extra = f" ({row['rps_wall']:.0f} incl. start-up)" if "rps_wall" in row else ""
            rps, cpu, rss = f"{row['rps']:.0f}{extra}", f"{row['cpu_ms_per_req']:.2f}", f"{row['peak_rss_mb']:.0f}"
            cells = [scheme, client, rps, cpu, rss]
            lines.append("| " + " | ".join(cells) + " |")
    for scheme in ("https", "http"):
        if scheme in rm:
            lines.append("")
            lines.append(f"Ratios ({scheme}): " + ", ".join(f"{k} = {v}x" for k, v in rm[scheme]["ratios"].items()))
    s = result["subscribe"]
    lines += [
        "",
        f"Subscribe: {s['jobs']} jobs x {s['seconds']} s at {s['concurrency']} concurrent, "
        f"{s['runners']} runners, https; ideal {s['ideal_s']} s",
        "",
        "| client | makespan s | x ideal | HTTP/job | overhead p50/p95 s | lag p50/p95 s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for client, row in s["rows"].items():
        lag = f"{row['lag_p50_s']}/{row['lag_p95_s']}" if row["lag_p50_s"] is not None else "-"
        lines.append(
            f"| {client} | {row['makespan_s']:.2f} | {row['makespan_x_ideal']:.2f} | {row['http_per_job']} "
            f"| {row['overhead_p50_s']}/{row['overhead_p95_s']} | {lag} |"
        )
    mem = result["memory"]
    lines += [
        "",
        f"Memory: {mem['run']['requests']:,}-request run: peak RSS {mem['run']['peak_rss_mb']} MB, "
        f"{mem['run']['wall_s']} s ({mem['run']['rps_wall']} req/s incl. start-up)",
    ]
    for phase, row in mem.get("plan", {}).items():
        lines.append(f"1M {phase}: {row['seconds']} s, peak RSS {row['peak_rss_mb']} MB")
    res = result["resume"]
    lines += [
        f"Resume over {res['lines']:,} lines ({res['output_mb']} MB): whole `batchrun run` "
        f"{res['run']['wall_s']} s, peak RSS {res['run']['peak_rss_mb']} MB; scanner alone "
        f"{res['scan']['seconds']} s, {res['scan']['peak_rss_mb']} MB",
        "",
        "| target | value | limit | met |",
        "|---|---:|---:|---|",
    ]
    for t in result["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | {t['limit']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    sizes = SIZES["tiny" if args.tiny else "quick" if args.quick else "full"]
    result: dict[str, Any] = {"machine": harness.machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        print("run mode ...", file=sys.stderr, flush=True)
        result["run_mode"] = bench_run_mode.bench(
            work, n=sizes["n"], concurrency=64, rounds=sizes["rounds"], scheme="both"
        )
        print("subscribe ...", file=sys.stderr, flush=True)
        result["subscribe"] = bench_subscribe.bench(
            work, jobs=sizes["jobs"], seconds=0.3, concurrency=50, runners=64, rounds=sizes["rounds"]
        )
        print("memory ...", file=sys.stderr, flush=True)
        result["memory"] = {"run": bench_memory.bench_run(work, requests=sizes["memory"])}
        if sizes["plan"]:
            result["memory"]["plan"] = bench_memory.bench_plan(work)
        print("resume ...", file=sys.stderr, flush=True)
        result["resume"] = bench_resume.bench(work, requests=sizes["resume"])
    result["targets"] = targets(result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
