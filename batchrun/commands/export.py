"""batchrun export OUT... [--format parquet|csv|jsonl] [-o FILE] [--all-records] [--spec SPEC]: an
output's records as a file for duckdb, pandas or a spreadsheet (batchrun.api.records.export).

Newest record per id by default (the rule of `report`), in plan order, across every OUT given
(shards); Parquet and CSV get the flattened columns of `Records.to_arrow()`, JSONL the records'
own lines. Parquet needs the `arrow` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batchrun.api.records import EXPORT_FORMATS, export

SUFFIXES = {"parquet": ".parquet", "csv": ".csv", "jsonl": ".newest.jsonl"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", metavar="OUT.jsonl", nargs="+", help="outputs to export (shards are read as one)")
    parser.add_argument("--format", choices=EXPORT_FORMATS,
                        help="default: from -o's suffix (.parquet, .csv, else jsonl), or parquet without -o")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="the file to write (replaced atomically; default: beside the first OUT, "
                             "<stem>.parquet / .csv / .newest.jsonl)")
    parser.add_argument("--all-records", action="store_true",
                        help="every record in file order, superseded ones included (default: newest per id)")
    parser.add_argument("--spec", metavar="SPEC", help="add row.<column> columns from the spec's dataset rows")


def run(args: argparse.Namespace) -> int:
    fmt = args.format
    if args.output is None:
        fmt = fmt or "parquet"
        first = Path(args.inputs[0])
        dest = first.with_name(first.stem + SUFFIXES[fmt])
    else:
        dest = Path(args.output)
        fmt = fmt or {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(dest.suffix.lower(), "jsonl")
    n = export(args.inputs, dest, format=fmt, all_records=args.all_records, spec=args.spec)
    which = "records" if args.all_records else "records (newest per id)"
    print(f"exported {n} {which} to {dest} ({fmt})", file=sys.stderr)
    return 0
