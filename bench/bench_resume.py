"""Resume: `batchrun run` against an output that already holds every planned request.

    python bench/bench_resume.py [--requests 1000000]

The spec is bench/plan_memory.py's 1000 x 1000 matrix; the output holds one realistic ok record
(~600 bytes, an image-style result) per planned id, generated once per size and cached under
$TMPDIR/batchrun-bench-cache. Measured, each in a fresh process (wait4 for peak RSS):
  run    the whole `batchrun run SPEC -o OUT` (load + validate the spec, scan the output, walk the
         plan to skip everything, write nothing): the figure a user sees
  scan   batchrun.output.resume.scan_output alone (the resume scanner)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

CACHE = Path(tempfile.gettempdir()) / "batchrun-bench-cache"

_GENERATE = r"""
import sys, orjson
from batchrun.plan.planner import build_plan
from batchrun.load import load_spec
spec = load_spec(sys.argv[1])
with open(sys.argv[2], "wb") as f:
    for r in build_plan(spec):
        rec = {"id": r.id, "index": r.index, "job": r.job.name, "endpoint": r.endpoint, "path": r.path,
               "mode": r.mode, "arguments": r.arguments, "matrix": r.matrix, "row": r.row, "repeat": r.repeat,
               "status": "ok", "result": {"images": [{"url": f"https://v3.fal.media/files/b/{r.id}.png",
               "width": 1024, "height": 768, "content_type": "image/png"}], "seed": r.index,
               "has_nsfw_concepts": [False]},
               "error": None, "request_id": f"{r.index:08x}-4b3e-4e38-9200-304cf45b{r.index % 9999:04d}",
               "attempts": 1, "logs": None, "metrics": {"inference_time": 0.41},
               "timing": {"started_at": "2026-01-02T03:04:05.678Z", "finished_at": "2026-01-02T03:04:06.123Z",
                          "latency_s": 0.445, "queue_s": 0.01}, "served_from": "runner-1"}
        f.write(orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE))
"""

_SCAN = r"""
import sys, time
from pathlib import Path
from batchrun.output.resume import scan_output
t0 = time.perf_counter()
state = scan_output(Path(sys.argv[1]))
print(state.lines, round(time.perf_counter() - t0, 3))
"""


def _spec(side: int) -> str:
    sys.path.insert(0, str(harness.BENCH_DIR))
    import plan_memory

    values = ", ".join(str(i) for i in range(side))
    text: str = plan_memory.SPEC % (values, values)
    return text.replace("max_requests: 1000000", f"max_requests: {side * side}").replace(
        "version: 1\n", "version: 1\ntarget: fal\n", 1
    )


def prepare(requests: int) -> tuple[Path, Path]:
    """(spec, cached full output) for a side x side matrix of about `requests` requests."""
    side = round(requests**0.5)
    CACHE.mkdir(exist_ok=True)
    spec = CACHE / f"resume-{side}x{side}.yaml"
    done = CACHE / f"resume-{side}x{side}.jsonl"
    if not spec.exists() or spec.read_text() != _spec(side):
        spec.write_text(_spec(side))
        done.unlink(missing_ok=True)
    if not done.exists():
        partial = done.with_suffix(".partial")
        child = harness.run_child([sys.executable, "-c", _GENERATE, str(spec), str(partial)], timeout=1800)
        if child.returncode != 0:
            raise RuntimeError(f"generating {done} failed: {child.stderr[-2000:]}")
        os.replace(partial, done)
    return spec, done


def bench(workdir: Path, *, requests: int) -> dict[str, Any]:
    spec, done = prepare(requests)
    out = workdir / "resume.jsonl"
    out.unlink(missing_ok=True)
    os.link(done, out) if done.stat().st_dev == workdir.stat().st_dev else out.write_bytes(done.read_bytes())
    lines = sum(1 for _ in open(done, "rb"))
    size_mb = done.stat().st_size / 2**20
    env = {**os.environ, "FAL_KEY": "bench-id:bench-secret"}
    # Nothing is left to send, so nothing connects: any URL will do.
    cmd = [
        sys.executable,
        "-m",
        "batchrun",
        "run",
        str(spec),
        "-o",
        str(out),
        "--run-url",
        "http://127.0.0.1:9/run",
        "--queue-url",
        "http://127.0.0.1:9/queue",
        "--no-progress",
    ]
    run = harness.run_child(cmd, env=env, timeout=1800)
    if run.returncode != 0 or f"{lines} of {lines} planned requests are already done" not in run.stderr:
        raise RuntimeError(f"batchrun run (resume) failed (exit {run.returncode}): {run.stderr[-2000:]}")
    if sum(1 for _ in open(out, "rb")) != lines:
        raise RuntimeError("the resumed run changed the output")
    scan = harness.run_child([sys.executable, "-c", _SCAN, str(out)], timeout=600)
    scanned, scan_s = scan.stdout.split()
    if int(scanned) != lines:
        raise RuntimeError(f"the scanner saw {scanned} of {lines} lines")
    out.unlink()
    return {
        "lines": lines,
        "output_mb": round(size_mb, 1),
        "run": {"wall_s": round(run.wall_s, 2), "peak_rss_mb": round(run.peak_rss_mb, 1)},
        "scan": {"seconds": float(scan_s), "wall_s": round(scan.wall_s, 2), "peak_rss_mb": round(scan.peak_rss_mb, 1)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as tmp:
        result = bench(Path(tmp), requests=args.requests)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
