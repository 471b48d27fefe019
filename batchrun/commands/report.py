"""batchrun report OUT.jsonl [--spec SPEC] [--format text|markdown|json|junit] [--html PATH [--grid ROWS,COLS]]:
summarise an output file on stdout; --html also writes the visual report (see batchrun.report.html).

The plan comes from the output's manifest, or from --spec (the spec as it is now). The exit code is
0 whatever the verdict (a report is no gate: `batchrun run` and `diff` exit 1), 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import sys

from batchrun.errors import UsageError
from batchrun.report.shots import MissingFiles, write_page
from batchrun.report.stats import build_report
from batchrun.report.junit import render_junit
from batchrun.report.text import render
from batchrun.report.html import parse_grid, render_report_html

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
    report = build_report(args.output, spec=args.spec, keep_requests=args.format == "junit")
    if args.html is not None:
        missing = MissingFiles()
        write_page(args.html, render_report_html(report, args.html, grid, missing))
        if missing.count:
            print(f"batchrun: warning: {missing.message(args.output)}", file=sys.stderr)
        print(f"wrote {args.html}", file=sys.stderr)
    sys.stdout.write(render_junit(report) if args.format == "junit" else render(report, args.format))
    return 0
