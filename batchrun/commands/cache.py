"""batchrun cache stats|prune|clear: look after the result cache (batchrun.output.resultcache).

The cache is the project's (.batchrun/cache under the working directory) unless --scope user or
--dir says otherwise; BATCHRUN_CACHE_DIR overrides both, as it does for `run`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from pathlib import Path

from batchrun.errors import UsageError

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNITS_B = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}


def _age(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"expected an age such as 12h or 7d (s, m, h, d, w), got {text!r}")
    return float(m.group(1)) * _UNITS_S[m.group(2)]


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?b?)\s*", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 500MB or 2GB, got {text!r}")
    return int(float(m.group(1)) * _UNITS_B[m.group(2)])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group()
    group.add_argument("--scope", choices=("project", "user"), default="project",
                       help="the project's cache (.batchrun/cache, the default) or the user's (~/.cache/batchrun)")
    group.add_argument("--dir", type=Path, help="a cache folder")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("stats", parents=[where], help="entries, size, age, and entries per target and endpoint")
    prune = sub.add_parser("prune", parents=[where], help="delete old entries, or the oldest beyond a size")
    prune.add_argument("--older-than", type=_age, metavar="AGE", help="delete entries older than AGE (12h, 7d)")
    prune.add_argument("--max-size", type=_size, metavar="SIZE",
                       help="then delete the oldest entries until the results fit in SIZE (500MB)")
    sub.add_parser("clear", parents=[where], help="delete every entry and cached file")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    from batchrun.output.resultcache import ResultCache, cache_dir

    directory = args.dir if args.dir is not None else cache_dir(args.scope, os.environ)
    cache = ResultCache(directory)
    if not cache.exists():
        print(f"batchrun cache: no result cache at {directory} (nothing cached there yet)", file=sys.stderr)
        return 0
    out = sys.stdout
    with cache:
        if args.action == "stats":
            s = cache.stats()
            out.write(f"result cache {s.path}\n")
            out.write(f"  entries   {s.entries}\n")
            out.write(f"  results   {_bytes(s.payload_bytes)} (on disk with files: {_bytes(s.file_bytes)})\n")
            out.write(f"  oldest    {_when(s.oldest)}\n  newest    {_when(s.newest)}\n")
            for title, counts in (("by target", s.by_target), ("by endpoint", s.by_endpoint)):
                if counts:
                    out.write(f"  {title}\n")
                    for name, n in list(counts.items())[:20]:
                        out.write(f"    {n:>9}  {name}\n")
        elif args.action == "prune":
            if args.older_than is None and args.max_size is None:
                raise UsageError("cache prune needs --older-than AGE and/or --max-size SIZE")
            deleted = cache.prune(older_than_s=args.older_than, max_bytes=args.max_size)
            out.write(f"batchrun cache: pruned {deleted} entries; {cache.stats().entries} left in {directory}\n")
        else:
            deleted = cache.clear()
            out.write(f"batchrun cache: cleared {deleted} entries from {directory}\n")
    return 0
