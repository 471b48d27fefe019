"""batchrun report OUT.jsonl [--spec SPEC] [--format text|markdown|json|junit] [--html PATH [--grid ROWS,COLS]]:
summarise an output file on stdout; --html also writes the visual report (see batchrun.report.html).

The plan comes from the output's manifest, or from --spec (the spec as it is now). The exit code is
0 whatever the verdict (a report is no gate: `batchrun run` and `diff` exit 1), 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator

from batchrun.errors import UsageError
from batchrun.report.html import parse_grid, render_report_html
from batchrun.report.junit import render_junit
from batchrun.report.plan_status import PlannedId, SpecPlan
from batchrun.report.shots import MissingFiles, write_page
from batchrun.report.stats import build_report
from batchrun.report.text import render

FORMATS = ("text", "markdown", "json", "junit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT.jsonl", help="an output file written by `batchrun run`")
    parser.add_argument(
        "--spec",
        metavar="SPEC",
        help="count against this spec's plan as it is now (default: the plan in OUT.jsonl.manifest.json); "
        "records of ids it does not plan are listed apart",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), markdown (ready for $GITHUB_STEP_SUMMARY), json, or junit (JUnit XML for CI "
        "test tabs: one testcase per planned request)",
    )
    parser.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report (with a contact sheet)")
    parser.add_argument(
        "--grid",
        metavar="ROWS,COLS",
        help="contact sheet axes: two matrix keys (default: the two with the most distinct values)",
    )


def run(args: argparse.Namespace) -> int:
    # Unreadable input raises RecordsError (exit 2) through the CLI's error handler.
    grid = None
    if args.grid is not None:
        if args.html is None:
            raise UsageError("--grid needs --html PATH")
        grid = parse_grid(args.grid)
    spec = SpecPlan(args.spec, functools.partial(spec_plan, args.spec)) if args.spec is not None else None
    report = build_report(args.output, spec=spec, keep_requests=args.format == "junit")
    if args.html is not None:
        missing = MissingFiles()
        write_page(args.html, render_report_html(report, args.html, grid, missing))
        if missing.count:
            print(f"batchrun: warning: {missing.message(args.output)}", file=sys.stderr)
        print(f"wrote {args.html}", file=sys.stderr)
    sys.stdout.write(render_junit(report) if args.format == "junit" else render(report, args.format))
    return 0


def spec_plan(spec: str, shard: str | None) -> Iterator[PlannedId]:
    """The spec's plan as it is now (only the run's shard when the manifest names one).

    Raises:
        SpecError: the spec is invalid (exit 2 through the CLI).
    """
    # Imported here: a report without --spec must not need the spec machinery.
    from batchrun.load import load_spec
    from batchrun.output.reading import request_label
    from batchrun.plan.planner import build_plan, in_shard, parse_shard

    which = parse_shard(shard) if shard else None
    for request in build_plan(load_spec(spec)):
        if which is None or in_shard(request.id, which):
            yield PlannedId(request.id, request.job.name,
                            request_label(request.matrix, request.row, request.repeat, request.arguments))
