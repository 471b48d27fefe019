"""batchrun plan SPEC: print the expanded plan (JSON lines, a table, or counts). Never touches the network."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from batchrun.load import load_spec
from batchrun.plan import design
from batchrun.plan.estimate import estimate
from batchrun.plan.planner import PlannedRequest, build_plan, job_count, parse_shard, with_sample
from batchrun.plan.selection import Selection, select
from batchrun.spec.model import Spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="the spec file")
    parser.add_argument("--shard", metavar="I/N", help="only shard I of N (1-based; partitioned by request id)")
    parser.add_argument("--only", metavar="JOB[,JOB...]", help="only these jobs (as `batchrun run --only`)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--count", action="store_true", help="print per-job request counts (and cost estimates)")
    what.add_argument("--limit", type=_positive, metavar="N",
                      help="only the first N planned requests of each job (what `batchrun run --limit N` sends)")
    parser.add_argument("--format", choices=("jsonl", "table"), default="jsonl", help="output format (default jsonl)")
    add_sample_arguments(parser)


def add_sample_arguments(parser: argparse.ArgumentParser) -> None:
    """--sample N --seed S, shared with `batchrun run`."""
    parser.add_argument("--sample", type=_positive, metavar="N",
                        help="only N requests of each job, chosen by a seeded hash of their ids (ids unchanged)")
    parser.add_argument("--seed", type=_seed, metavar="S", help="the sample's seed (default 0; needs --sample)")


def _seed(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    shard = parse_shard(args.shard) if args.shard is not None else None
    warnings: list[Any] = []
    counts: dict[str, int] = {}  # the whole plan's, counted by validation
    spec = with_sample(load_spec(args.spec, warnings, counts), counts, args.sample, args.seed)
    selection = select(spec, counts, args.only, args.limit)  # the same part of the plan `run` would send
    for warning in warnings:
        print(warning, file=sys.stderr)
    out = sys.stdout
    if args.count:
        hits = _cache_hits(spec, shard, selection) if any(j.cache is not None for j in spec.jobs) else None
        _print_counts(spec, counts, shard, out, None if selection is None else selection.jobs, hits)
    elif args.format == "table":
        _print_table(spec, sum(counts.values()), _requests(spec, shard, selection), out)
    else:
        for request in _requests(spec, shard, selection):
            out.write(json.dumps(plan_line(request), ensure_ascii=False) + "\n")
    out.flush()
    return 0


def _requests(spec: Spec, shard: tuple[int, int] | None, selection: Selection | None) -> Iterator[PlannedRequest]:
    # A selection's ranges come from validation's counts, so the walk steps over the rest without
    # rendering it: the first requests of a million-row dataset job preview at once.
    yield from build_plan(spec, shard=shard, only=None if selection is None else selection.indices())


def plan_line(request: PlannedRequest) -> dict[str, Any]:
    """A plan line: the record's request fields plus the job's non-default options."""
    line = request.to_json()
    options = {
        k: v
        for k, v in (
            ("timeout", request.job.timeout),
            ("start_timeout", request.job.start_timeout),
            ("client_timeout", request.job.client_timeout),
            ("hint", request.hint),
            ("priority", request.job.priority),
            ("headers", request.headers or None),
            ("with_logs", request.job.with_logs or None),
            ("fallbacks", request.job.fallbacks),
            ("media_lifetime_s", _lifetime(request)),
        )
        if v is not None
    }
    if options:
        line["options"] = options
    return line


def _lifetime(request: PlannedRequest) -> int | str | None:
    lifetime = request.job.media_lifetime
    if lifetime is None:
        return None
    return "never" if lifetime.seconds is None else lifetime.seconds


def _cache_hits(spec: Spec, shard: tuple[int, int] | None, selection: Selection | None) -> dict[str, Any]:
    """Requests the result cache would serve (run on the spec's target), per job with `cache`."""
    import os

    from batchrun.run.caching import count_hits, spec_bases

    return count_hits(spec, _requests(spec, shard, selection), spec_bases(spec.target, os.environ), os.environ)


def _money(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.4f}"


def _print_counts(spec: Spec, counts: dict[str, int], shard: tuple[int, int] | None, out: Any,
                  jobs: frozenset[str] | None, hits: dict[str, Any] | None = None) -> None:
    """Per-job counts and estimates; `jobs`: only these (--only). `hits`: batchrun.run.caching.HitCount
    per job with `cache` (None: no job uses the cache, so no cache columns)."""
    estimates = estimate(spec, counts, shard)
    # A design or a sample shows the full product's size beside it; plain specs keep three columns.
    designs = any(job.strategy is not None or job.sample is not None for job in spec.jobs)
    rows = []
    total_cost: float | None = 0.0
    total_hits, total_saved, uncacheable = 0, 0.0 if spec.pricing else None, 0
    for job in spec.jobs:
        if jobs is not None and job.name not in jobs:
            continue
        n, cost = estimates[job.name].requests, estimates[job.name].cost
        row = [job.name, job.endpoint, *([design.describe(job)] if designs else []), str(n)]
        if designs:
            row.append(str(job_count(design.full_job(job))))
        if spec.pricing:
            # Say which endpoints lack a price: the fix is an entry under `pricing:`.
            row.append(
                "no price" if job.endpoint not in spec.pricing else "unknown" if cost is None else f"${cost:.4f}"
            )
            total_cost = None if cost is None or total_cost is None else total_cost + cost
        if hits is not None:
            h = hits.get(job.name)
            row.append("off" if h is None else str(h.hits))
            if h is not None:
                total_hits += h.hits
                uncacheable += h.uncacheable
            if spec.pricing:
                saved = None if h is None else h.saved_usd
                row.append("-" if h is None else _money(saved))
                if h is not None:
                    total_saved = None if saved is None or total_saved is None else total_saved + saved
        rows.append(row)
    total = ["total", "", *([""] if designs else []),
             str(sum(e.requests for name, e in estimates.items() if jobs is None or name in jobs))]
    if designs:
        total.append(str(sum(int(r[4]) for r in rows)))
    if spec.pricing:
        total.append(_money(total_cost))
    header = ["job", "endpoint", *(["design", "requests", "full"] if designs else ["requests"])]
    header += ["est. cost"] if spec.pricing else []
    if hits is not None:
        total.append(str(total_hits))
        header.append("cached")
        if spec.pricing:
            total.append(_money(total_saved))
            header.append("cache saves")
    requests_at = 3 if designs else 2
    _write_table(header, [*rows, total], out, right=set(range(requests_at, len(header))))
    if hits is not None:
        sent = int(total[requests_at]) - total_hits
        note = f"; {uncacheable} use ${{{{ env.X }}}} values and are never cached" if uncacheable else ""
        out.write(f"result cache: {total_hits} requests would be served from the cache, {sent} sent{note}\n")


def _print_table(spec: Spec, total: int, requests: Any, out: Any) -> None:
    """Streamed, so column widths come from the spec (job names, endpoints, plan size), not the rows."""
    widths = [
        max(5, len(str(max(total - 1, 0)))),
        16,
        max(3, *(len(j.name) for j in spec.jobs)),
        max(8, *(len(j.endpoint) for j in spec.jobs)),
    ]
    header = ["index", "id", "job", "endpoint"]
    out.write("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  row  repeat  path  matrix\n")
    for r in requests:
        matrix = " ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in r.matrix.items())
        cells = [
            str(r.index).rjust(widths[0]),
            r.id,
            r.job.name.ljust(widths[2]),
            r.endpoint.ljust(widths[3]),
            ("-" if r.row is None else str(r.row)).rjust(3),
            str(r.repeat).rjust(6),
            (r.path or "-").ljust(4),
            matrix or "-",
        ]
        out.write("  ".join(cells) + "\n")


def _write_table(header: list[str], rows: list[list[str]], out: Any, right: set[int]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.write("  ".join(cells).rstrip() + "\n")
