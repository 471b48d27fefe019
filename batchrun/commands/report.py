"""batchrun report OUT.jsonl [--format text|markdown|json] [--html PATH [--grid ROWS,COLS]]: summarise an
output file on stdout; --html also writes the visual report (see batchrun.report_html)."""

from __future__ import annotations

import argparse
import sys

from batchrun.errors import UsageError
from batchrun.html_shots import write_page
from batchrun.report import build_report, render
from batchrun.report_html import parse_grid, render_report_html

FORMATS = ("text", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT.jsonl", help="an output file written by `batchrun run`")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), markdown (ready for $GITHUB_STEP_SUMMARY) or json",
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
    report = build_report(args.output)
    if args.html is not None:
        write_page(args.html, render_report_html(report, args.html, grid))
    sys.stdout.write(render(report, args.format))
    return 0
