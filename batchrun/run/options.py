"""The options of one run: `batchrun run`'s flags, and the Python API's keywords (one each).

`RunOptions.create` checks values the way argparse checks the flags, so `run(spec, concurrency=0)`
is the same usage error (exit 2) as `batchrun run --concurrency 0`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.plan.planner import parse_shard
from batchrun.plan.sampling import check_sample

__all__ = ["RunOptions"]

TARGETS = ("fal", "local")


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    output: Path | None = None  # -o: None: the spec's output, or outputs/<name>.jsonl (a shard's suffix added)
    target: str | None = None  # --target fal|local
    run_url: str | None = None  # --run-url (with queue_url: a custom target)
    queue_url: str | None = None  # --queue-url
    ca_bundle: str | None = None  # --ca-bundle: PEM of the CAs trusted for HTTPS (None: the spec's, else certifi's)
    concurrency: int | None = None  # --concurrency: None: the spec's
    shard: tuple[int, int] | None = None  # --shard I/N (1-based)
    budget_per_shard: bool = False  # --budget-per-shard: each shard may spend all of budget.max_usd (else 1/N)
    retry_errors: bool = False  # --retry-errors
    fresh: bool = False  # --fresh
    progress: bool = True  # not --no-progress
    show_logs: bool = False  # --show-logs
    only: str | None = None  # --only, as written: job names separated by commas
    limit: int | None = None  # --limit
    sample: int | None = None  # --sample N: N requests of each job, by a seeded hash of their ids
    seed: int | None = None  # --seed S: the sample's seed (None: 0; needs sample)
    debug: bool = False  # --debug (or BATCHRUN_DEBUG=1): tracebacks of internal errors
    no_cache: bool = False  # --no-cache: neither read nor write the result cache
    refresh_cache: bool = False  # --refresh-cache: send, and replace the cached results

    @classmethod
    def create(
        cls,
        *,
        output: str | os.PathLike[str] | None = None,
        target: str | None = None,
        run_url: str | None = None,
        queue_url: str | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        concurrency: int | None = None,
        shard: str | tuple[int, int] | None = None,
        budget_per_shard: bool = False,
        retry_errors: bool = False,
        fresh: bool = False,
        progress: bool = True,
        show_logs: bool = False,
        only: str | Iterable[str] | None = None,
        limit: int | None = None,
        sample: int | None = None,
        seed: int | None = None,
        debug: bool = False,
        no_cache: bool = False,
        refresh_cache: bool = False,
    ) -> RunOptions:
        """Checked options; raises UsageError for a value the command line would refuse."""
        if no_cache and refresh_cache:
            raise UsageError("no_cache and refresh_cache exclude each other (--no-cache, --refresh-cache)")
        if target is not None and target not in TARGETS:
            raise UsageError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
        for name, value in (("concurrency", concurrency), ("limit", limit)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"{name}: expected a whole number of at least 1, got {value!r}")
        check_sample(sample, seed)
        if isinstance(shard, str):
            shard = parse_shard(shard)
        elif shard is not None:
            i, n = shard
            shard = parse_shard(f"{i}/{n}")  # the same checks (1 <= I <= N) and messages
        if only is not None and not isinstance(only, str):
            only = ",".join(only)
        return cls(
            output=None if output is None else Path(output), target=target, run_url=run_url, queue_url=queue_url,
            ca_bundle=None if ca_bundle is None else os.fspath(ca_bundle), concurrency=concurrency, shard=shard,
            budget_per_shard=bool(budget_per_shard),
            retry_errors=bool(retry_errors), fresh=bool(fresh), progress=bool(progress), show_logs=bool(show_logs),
            only=only, limit=limit, sample=sample, seed=seed, debug=bool(debug),
            no_cache=bool(no_cache), refresh_cache=bool(refresh_cache),
        )
