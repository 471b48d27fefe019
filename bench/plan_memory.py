"""Plan a 1,000,000-request spec and report seconds and peak RSS, per phase, each in a fresh process.

    python bench/plan_memory.py            # both phases
    python bench/plan_memory.py --phase plan

Phases:
  plan      build_plan() over a Spec built in memory (the planner alone: lazy, bounded memory)
  validate  load_spec() on the YAML file (schema, checks, and one full pass for duplicate ids)
The spec: a 1000 x 1000 matrix (2 templated arguments), limits.max_requests raised to 1,000,000.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
version: 1
name: million
limits: {max_requests: 1000000}
jobs:
  - name: sweep
    endpoint: local/echo
    arguments:
      prompt: "a photo of object ${{ matrix.a }} in style ${{ matrix.b }}"
      seed: "${{ matrix.a }}"
      steps: "${{ matrix.b }}"
      image_size: square
    matrix:
      a: [%s]
      b: [%s]
"""


def peak_rss_mb() -> float:
    """VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent process."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_phase(phase: str, spec_path: Path) -> None:
    from batchrun.load import load_spec
    from batchrun.plan.planner import build_plan
    from batchrun.spec.model import Job, Spec

    base = peak_rss_mb()
    start = time.perf_counter()
    if phase == "validate":
        spec = load_spec(spec_path)
        n = spec.max_requests
    else:
        values = list(range(1000))
        job = Job(name="sweep", endpoint="local/echo",
                  arguments={"prompt": "a photo of object ${{ matrix.a }} in style ${{ matrix.b }}",
                             "seed": "${{ matrix.a }}", "steps": "${{ matrix.b }}", "image_size": "square"},
                  matrix={"a": values, "b": values})
        spec = Spec(version=1, name="million", jobs=[job], source=spec_path, max_requests=1_000_000)
        n = 0
        for _ in build_plan(spec):
            n += 1
    elapsed = time.perf_counter() - start
    print(f"{phase:8s}: {n:,} requests in {elapsed:.1f} s ({n / elapsed:,.0f}/s); "
          f"peak RSS {peak_rss_mb():.0f} MB (interpreter + imports before: {base:.0f} MB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=("plan", "validate"))
    parser.add_argument("--spec", type=Path)
    args = parser.parse_args()
    if args.phase:
        spec = args.spec
        if spec is None:
            raise SystemExit("--phase needs --spec")
        run_phase(args.phase, spec)
        return 0
    values = ", ".join(str(i) for i in range(1000))
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "million.yaml"
        spec.write_text(SPEC % (values, values))
        for phase in ("plan", "validate"):
            subprocess.run([sys.executable, __file__, "--phase", phase, "--spec", str(spec)], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
