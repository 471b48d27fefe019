"""batchrun diff BASE.jsonl NEW.jsonl: compare a new output with a baseline; exit 1 on regression."""

from __future__ import annotations

import argparse
import sys

from batchrun.errors import UsageError
from batchrun.report.diff import LATENCY_FLOOR_S, PHASH_THRESHOLD, diff_files
from batchrun.report.diff_html import render_diff_html
from batchrun.report.diff_text import no_shared_ids_warning, render
from batchrun.report.shots import MissingFiles, write_page
from batchrun.spec.resultpath import PathError, parse_path

FORMATS = ("text", "markdown", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", metavar="BASE.jsonl", help="the baseline output")
    parser.add_argument("new", metavar="NEW.jsonl", help="the output to check against it")
    parser.add_argument(
        "--ignore",
        metavar="PATH",
        nargs="+",
        action="extend",
        default=[],
        help="result paths to leave out of the comparison, with their subtrees "
        "(e.g. seed, images[*].nsfw, *.debug); repeatable",
    )
    parser.add_argument(
        "--latency-ratio",
        type=float,
        default=1.5,
        metavar="R",
        help=f"a request is a latency regression when new > R x base and more than {LATENCY_FLOOR_S} s "
        "slower (default 1.5)",
    )
    parser.add_argument(
        "--phash-threshold",
        type=int,
        default=PHASH_THRESHOLD,
        metavar="BITS",
        help="images whose bytes differ but whose perceptual hashes (recorded at download with the images "
        f"extra) differ by at most BITS of 64 are 'visually the same', not a regression (default {PHASH_THRESHOLD})",
    )
    parser.add_argument("--format", choices=FORMATS, default="text", help="text (default), markdown or json")
    parser.add_argument(
        "--html", metavar="PATH", help="also write an HTML page: changed ids side by side, base vs new images"
    )


def run(args: argparse.Namespace) -> int:
    if not args.latency_ratio > 0:
        raise UsageError(f"--latency-ratio must be a positive number, got {args.latency_ratio}")
    if not 0 <= args.phash_threshold <= 64:
        raise UsageError(f"--phash-threshold must be from 0 to 64 bits, got {args.phash_threshold}")
    try:
        ignore = [parse_path(text, wildcards=True) for text in args.ignore]
    except PathError as exc:
        raise UsageError(f"--ignore: {exc}") from None
    diff = diff_files(args.base, args.new, ignore=ignore, latency_ratio=args.latency_ratio,
                      phash_threshold=args.phash_threshold)
    warning = no_shared_ids_warning(diff)
    if warning:
        print(f"batchrun: {warning}", file=sys.stderr)
    if args.html is not None:
        missing = MissingFiles()
        write_page(args.html, render_diff_html(diff, args.html, missing))
        if missing.count:
            print(f"batchrun: warning: {missing.message(f'{args.base} or {args.new}')}", file=sys.stderr)
        print(f"wrote {args.html}", file=sys.stderr)
    sys.stdout.write(render(diff, args.format))
    return 1 if diff.regressed else 0
