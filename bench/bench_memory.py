"""Memory: peak RSS of a long run, and of planning a million requests.

    python bench/bench_memory.py [--requests 100000] [--plan]

run   `batchrun run` of N direct local/echo calls at concurrency 64 against a `batchrun serve`
      process; peak RSS and CPU of the batchrun process alone (wait4), its wall time and rate.
plan  bench/plan_memory.py's "plan" phase (build_plan over a 1000 x 1000 matrix) and its
      "validate" phase (load_spec of the same spec as YAML: schema, checks, duplicate-id pass),
      each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

_PLAN_LINE = re.compile(r"^(\w+)\s*: ([\d,]+) requests in ([\d.]+) s .*peak RSS ([\d.]+) MB")


def bench_run(workdir: Path, *, requests: int, concurrency: int = 64) -> dict[str, Any]:
    spec = harness.write_spec(workdir / "memory.json", endpoint="local/echo", mode="run", repeat=requests,
                              arguments={"prompt": "a lighthouse at dusk", "seed": "${{ repeat }}"},
                              concurrency=concurrency)
    out = workdir / "memory.jsonl"
    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)
    with harness.server(workdir, runners=4, tls=False) as srv:
        child = harness.run_child(harness.batchrun_cmd(spec, out, srv, concurrency), env=srv.client_env(),
                                  timeout=1800)
    lines = sum(1 for _ in open(out, "rb")) if out.exists() else 0
    if child.returncode != 0 or lines != requests:
        raise RuntimeError(
            f"batchrun run failed (exit {child.returncode}, {lines}/{requests} lines): {child.stderr[-2000:]}"
        )
    size_mb = out.stat().st_size / 2**20
    out.unlink()
    return {
        "requests": requests,
        "peak_rss_mb": round(child.peak_rss_mb, 1),
        "wall_s": round(child.wall_s, 1),
        "rps_wall": round(requests / child.wall_s, 1),
        "cpu_ms_per_req": round(1000 * child.cpu_s / requests, 3),
        "output_mb": round(size_mb, 1),
    }


def bench_plan(workdir: Path, *, requests: int = 1_000_000) -> dict[str, Any]:
    """bench/plan_memory.py (owned by the planner's engineer), one phase per fresh process."""
    side = round(requests**0.5)
    values = ", ".join(str(i) for i in range(side))
    sys.path.insert(0, str(harness.BENCH_DIR))
    import plan_memory

    spec = workdir / "million.yaml"
    text = plan_memory.SPEC % (values, values)
    spec.write_text(text.replace("max_requests: 1000000", f"max_requests: {side * side}"))
    rows: dict[str, Any] = {}
    for phase in ("plan", "validate"):
        if phase == "plan" and side != 1000:
            continue  # the plan phase builds its 1000 x 1000 spec in code
        child = harness.run_child(
            [sys.executable, str(harness.BENCH_DIR / "plan_memory.py"), "--phase", phase, "--spec", str(spec)]
        )
        match = _PLAN_LINE.match(child.stdout.strip().splitlines()[-1] if child.stdout.strip() else "")
        if child.returncode != 0 or match is None:
            raise RuntimeError(f"plan_memory.py --phase {phase} failed: {child.stdout[-500:]} {child.stderr[-2000:]}")
        rows[phase] = {
            "requests": int(match.group(2).replace(",", "")),
            "seconds": float(match.group(3)),
            "peak_rss_mb": round(child.peak_rss_mb, 1),
            "wall_s": round(child.wall_s, 1),
        }
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--plan", action="store_true", help="also the 1M plan (about 35 s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        result: dict[str, Any] = {"run": bench_run(Path(tmp), requests=args.requests)}
        if args.plan:
            result["plan"] = bench_plan(Path(tmp))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
