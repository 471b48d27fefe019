"""batchrun cancel OUT: cancel the queue requests journaled as in flight for an output.

Those are requests an interrupted or killed run left running remotely (journaled, no final
record). Each accepted cancel is journaled, so the next `batchrun run` plans the id again; a
request that already completed is left in the journal, so the next run collects its (paid) result.
The API key (FAL_KEY) is sent only to the fal queue host, never to another server.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from batchrun.client.target import fal_hosts, fal_key
from batchrun.errors import UsageError
from batchrun.output.journal import InFlight, Journal, journal_path
from batchrun.output.sink import OutputLock
from batchrun.redact import Redactor

CANCEL_TIMEOUT_S = 30.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", help="the output JSONL file of the run (its journal sits next to it)")


def _auth_for(url: str) -> str | None:
    _, queue_host = fal_hosts(os.environ)
    key = fal_key(os.environ)
    if key is None or urlsplit(url).netloc != queue_host:
        return None
    return f"Key {key}"


async def _cancel_all(journal: Journal) -> tuple[int, int]:
    from batchrun.client.fal import FalClient
    from batchrun.run.inflight import queue_handle

    entries = list(journal.in_flight.values())
    cancelled = 0
    key = fal_key(os.environ)
    redactor = Redactor([key] if key else [])
    # One client per distinct (queue origin, auth): the key only ever goes to the fal queue host.
    groups: dict[tuple[str, str | None], list[InFlight]] = {}
    for entry in entries:
        try:
            parts = urlsplit(entry.cancel_url)
            auth = _auth_for(entry.cancel_url)
        except ValueError:  # a damaged journal line: that one cannot be cancelled, the others can
            continue
        groups.setdefault((f"{parts.scheme}://{parts.netloc}", auth), []).append(entry)

    async def one(client: FalClient, entry: InFlight) -> None:
        nonlocal cancelled
        if await client.cancel(queue_handle(entry)):
            journal.cancelled(entry.id, entry.request_id)
            cancelled += 1

    with anyio.move_on_after(CANCEL_TIMEOUT_S):
        for (origin, auth), group in groups.items():
            async with FalClient(run_url=origin, queue_url=origin, auth=auth, redactor=redactor,
                                 max_connections=16) as client:
                async with anyio.create_task_group() as tg:
                    for entry in group:
                        tg.start_soon(one, client, entry)
    return cancelled, len(entries)


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    journal_file = journal_path(out)
    if not journal_file.exists():
        if not out.exists():
            raise UsageError(f"{out}: no such output (and no journal {journal_file})")
        print(f"batchrun: {out}: no journal, so no queue requests in flight; nothing to cancel", file=sys.stderr)
        return 0
    with OutputLock(out):
        key = fal_key(os.environ)
        journal = Journal(journal_file, scrub=Redactor([key] if key else []).scrub)
        journal.open()
        try:
            if not journal.in_flight:
                print(f"batchrun: {out}: no queue requests in flight; nothing to cancel", file=sys.stderr)
                return 0
            cancelled, total = anyio.run(_cancel_all, journal)
        finally:
            journal.close()
    left = total - cancelled
    print(f"batchrun: cancelled {cancelled} of {total} queue requests in flight for {out}", file=sys.stderr)
    if left:
        print(
            f"batchrun: {left} could not be cancelled (already completed, unknown, or unreachable); "
            f"they stay journaled and the next `batchrun run` collects their results",
            file=sys.stderr,
        )
    return 0
