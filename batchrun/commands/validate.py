"""batchrun validate SPEC...: report every problem of every spec, located; exit 0 only if all are valid."""

from __future__ import annotations

import argparse
import itertools
import sys

from batchrun.load import validate_spec

_SHOWN = 8  # jobs named in the ok line; a spec of 50 jobs keeps it one readable line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec files to check")


def run(args: argparse.Namespace) -> int:
    code = 0
    for path in args.specs:
        counts: dict[str, int] = {}
        schemas: dict[str, list[str]] = {}
        spec, problems = validate_spec(path, counts, schemas)
        for problem in problems:
            print(problem, file=sys.stderr)
        if spec is None:
            code = 2
            continue
        print(f"{path}: ok ({_summary(counts)})")
        if schemas.get("checked"):  # something is pinned: say what its schemas did not cover
            unchecked = schemas.get("unchecked") or []
            line = f"{path}: arguments checked against pinned schemas for {_names(schemas['checked'])}"
            if unchecked:
                line += f"; not checked (endpoint not pinned): {_names(unchecked)}"
            print(line)
    return code


def _names(names: list[str]) -> str:
    shown = ", ".join(itertools.islice(names, _SHOWN))
    return shown + (f", and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _summary(counts: dict[str, int]) -> str:
    """`6 requests in 3 jobs: a 2, b 2, c 2`: per job too, so a sweep's size is checked at a glance."""
    total, jobs = sum(counts.values()), len(counts)
    text = f"{total} request{'s' if total != 1 else ''} in {jobs} job{'s' if jobs != 1 else ''}"
    if jobs == 1:
        return text
    shown = [f"{name} {n}" for name, n in itertools.islice(counts.items(), _SHOWN)]
    more = f", and {jobs - _SHOWN} more" if jobs > _SHOWN else ""
    return f"{text}: {', '.join(shown)}{more}"
