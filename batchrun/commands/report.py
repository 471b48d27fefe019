"""batchrun report OUT.jsonl [--format text|markdown|json]: summarise an output file on stdout."""

from __future__ import annotations

import argparse
import sys

from batchrun.report import build_report, render

FORMATS = ("text", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT.jsonl", help="an output file written by `batchrun run`")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), markdown (ready for $GITHUB_STEP_SUMMARY) or json",
    )


def run(args: argparse.Namespace) -> int:
    # Unreadable input raises RecordsError (exit 2) through the CLI's error handler.
    sys.stdout.write(render(build_report(args.output), args.format))
    return 0
