"""batchrun merge (placeholder until its issue lands)."""

from __future__ import annotations

import argparse

from batchrun.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rest", nargs="*")


def run(args: argparse.Namespace) -> int:
    raise UsageError("'batchrun merge' is not available yet")
