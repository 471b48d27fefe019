"""batchrun check SPEC OUTPUT [--write] [--shard I/N]: re-evaluate the spec's current expectations
against the newest ok record of each planned id (batchrun.toolkit.recheck), without sending anything.

Exit codes: 0 every expectation passes, 1 some failed, 2 invalid spec, unreadable output or usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batchrun.errors import Problem, SinkError
from batchrun.load import load_spec
from batchrun.plan.planner import parse_shard
from batchrun.report.stats import MAX_LISTED, plural
from batchrun.report.text import text_table
from batchrun.toolkit.recheck import CheckResult, recheck


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the spec whose expectations to apply (as it is now)")
    parser.add_argument("output", metavar="OUTPUT", help="an output file written by `batchrun run` for it")
    parser.add_argument(
        "--write",
        action="store_true",
        help="append each record whose verdicts changed, with its new expectations, so report, diff, "
        "merge and resume see them (under the output's lock)",
    )
    parser.add_argument("--shard", metavar="I/N", help="check only shard I of N of the plan (as run --shard)")


def run(args: argparse.Namespace) -> int:
    warnings: list[Problem] = []
    spec = load_spec(args.spec, warnings)
    for problem in warnings:
        print(problem, file=sys.stderr)
    shard = parse_shard(args.shard) if args.shard else None
    try:
        result = recheck(spec, Path(args.output), write=args.write, shard=shard)
    except SinkError as exc:
        # Locked by a running run, or not writable: the check did not happen, which exit 1 (some
        # expectation failed) must not claim.
        print(f"batchrun: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("\n".join(summary_lines(result, args.spec, wrote=args.write)) + "\n")
    return 1 if result.failed else 0


def summary_lines(result: CheckResult, spec: str, *, wrote: bool) -> list[str]:
    out = [f"batchrun check: {result.output} against the expectations of {spec} (nothing sent)"]
    width = max((len(name) for name in result.jobs), default=0)
    for name, job in result.jobs.items():
        out.append(f"  {name:<{width}}  {job.passed + job.failed} checked, {job.passed} passed, {job.failed} failed")
    passed = sum(j.passed for j in result.jobs.values())
    out.append(f"  total: {passed + result.failed} checked, {passed} passed, {result.failed} failed")
    not_checked = sum(j.not_checked for j in result.jobs.values())
    if not_checked:
        out.append(
            f"  {plural(not_checked, 'planned request')} without a result (an error, or not run yet): not checked"
        )
    if result.unplanned:
        out.append(f"  {plural(result.unplanned, 'id')} in the output not in this plan: left as they are")
    if result.failures:
        rows = [[f.job, f.id, f.message] for f in result.failures[:MAX_LISTED]]
        hidden = len(result.failures) - MAX_LISTED
        if hidden > 0:
            rows.append(["…", "…", f"{hidden} more"])
        out += ["", "expectation failures", *text_table(["job", "id", "message"], rows)]
    out.append("")
    if wrote:
        out.append(
            f"wrote {plural(result.written, 're-checked record')} to {result.output}"
            if result.written
            else "nothing to write: every stored verdict is current"
        )
    elif result.changed:
        out.append(
            f"verdicts changed for {plural(result.changed, 'record')}: add --write to record them "
            "(report, diff and resume read them then)"
        )
    else:
        out.append("every stored verdict is current")
    return out
