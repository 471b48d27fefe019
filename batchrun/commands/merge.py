"""batchrun merge OUT... -o ALL.jsonl [--spec SPEC]: merge shard outputs in plan order.

With --spec, the merged file is checked against the spec's plan: every planned id must be there
(missing ids are listed and the exit code is 1; the merged file is written all the same).
"""

from __future__ import annotations

import argparse

from batchrun.output.merge import MergeResult, Planned, merge_outputs

MAX_LISTED = 50  # missing / unplanned ids printed; the count is always exact


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="OUT.jsonl", nargs="+", help="shard outputs (any order)")
    parser.add_argument(
        "-o", "--output", metavar="ALL.jsonl", required=True, help="the merged file (replaced atomically)"
    )
    parser.add_argument("--spec", metavar="SPEC", help="verify that every request the spec plans is present")


def run(args: argparse.Namespace) -> int:
    plan = None
    if args.spec is not None:
        # Imported here: plain merging must not need the spec machinery (or a valid spec).
        from batchrun.load import load_spec
        from batchrun.plan.planner import build_plan

        plan = [Planned(p.id, p.index, p.job.name) for p in build_plan(load_spec(args.spec))]
    result = merge_outputs(args.inputs, args.output, plan=plan)
    print(_summary(result, args.output))
    if result.planned is None:
        return 0
    if result.unplanned:
        print(f"note: {_n(len(result.unplanned), 'request')} not in the plan of {args.spec} (kept):")
        print(*(f"  {rid}" for rid in result.unplanned[:MAX_LISTED]), sep="\n")
        _more(len(result.unplanned))
    if not result.missing:
        print(f"complete: all {_n(result.planned, 'planned request')} present")
        return 0
    print(f"incomplete: {len(result.missing)} of {_n(result.planned, 'planned request')} missing:")
    width = max(len(p.id) for p in result.missing[:MAX_LISTED])
    print(*(f"  {p.id:<{width}}  #{p.index}  {p.job}" for p in result.missing[:MAX_LISTED]), sep="\n")
    _more(len(result.missing))
    return 1


def _summary(result: MergeResult, output: str) -> str:
    dropped = f" ({_n(result.superseded, 'superseded record')} dropped)" if result.superseded else ""
    line = (
        f"merged {_n(result.inputs, 'file')}: {_n(result.records, 'record')} -> "
        f"{_n(result.written, 'request')} in {output}{dropped}"
    )
    if result.rebased:
        line += (f"\nartifact paths of {_n(result.rebased, 'record')} rewritten relative to the folder of {output} "
                 "(the files stay where they are)")
    return line


def _more(count: int) -> None:
    if count > MAX_LISTED:
        print(f"  … and {count - MAX_LISTED} more")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
