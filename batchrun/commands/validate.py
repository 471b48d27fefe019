"""batchrun validate SPEC...: report every problem of every spec, located; exit 0 only if all are valid."""

from __future__ import annotations

import argparse
import sys

from batchrun.specload import validate_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec files to check")


def run(args: argparse.Namespace) -> int:
    code = 0
    for path in args.specs:
        counts: dict[str, int] = {}
        spec, problems = validate_spec(path, counts)
        for problem in problems:
            print(problem, file=sys.stderr)
        if spec is None:
            code = 2
            continue
        total = sum(counts.values())
        jobs = len(counts)
        print(f"{path}: ok ({total} request{'s' if total != 1 else ''} in {jobs} job{'s' if jobs != 1 else ''})")
    return code
