"""batchrun run SPEC: send every planned request and write one JSON line per request.

Resumes by default when the output exists (ids with an ok record are skipped; journaled queue
requests are re-attached, never resubmitted); --retry-errors also re-runs error records; --fresh
moves the old output aside first. Exit codes: 0 all ok, 1 some requests failed, 2 invalid spec or
usage, 3 internal error, 130 interrupted by Ctrl-C, 143 by SIGTERM (both resumable).
"""

from __future__ import annotations

import argparse

from batchrun import signals
from batchrun.commands.plan import add_sample_arguments


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# The spec schema's maximum too: more connections than one process can hold open (a typical
# descriptor limit is 1024) only turn into connection errors, and each worker costs memory.
MAX_CONCURRENCY = 10_000


def _concurrency(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_CONCURRENCY:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CONCURRENCY}, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the spec file (YAML)")
    parser.add_argument(
        "-o", "--output", help="output JSONL file (default: the spec's output, or outputs/<name>.jsonl)"
    )
    parser.add_argument("--target", choices=["fal", "local"], help="override the spec's target")
    parser.add_argument("--run-url", help="base URL of direct calls (with --queue-url: a custom target)")
    parser.add_argument("--queue-url", help="base URL of queue calls (with --run-url)")
    parser.add_argument("--ca-bundle", metavar="PEM",
                        help="trust only these CAs for HTTPS (a private CA or a TLS-intercepting proxy); "
                             "default: the spec's target.ca_bundle, else certifi's or SSL_CERT_FILE")
    parser.add_argument("--concurrency", type=_concurrency,
                        help=f"requests in flight at once, at most {MAX_CONCURRENCY} (default: the spec's)")
    parser.add_argument(
        "--shard", help="run only shard I of N (I/N, 1-based); default output gets a .shard-I-of-N suffix"
    )
    parser.add_argument(
        "--budget-per-shard", action="store_true",
        help="with --shard: each shard may spend the whole budget.max_usd (default: 1/N of it, so all N "
             "shards together stay within it)"
    )
    parser.add_argument("--retry-errors", action="store_true", help="also re-run ids whose newest record is an error")
    parser.add_argument(
        "--fresh", action="store_true", help="start over: move an existing output aside to <out>.<time>.bak"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines on stderr")
    parser.add_argument(
        "--show-logs", action="store_true", help="stream runner logs to stderr, prefixed with job and id"
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true",
                       help="neither read nor write the result cache (for jobs with `cache`)")
    cache.add_argument("--refresh-cache", action="store_true",
                       help="send every request of jobs with `cache` and replace their cached results")
    parser.add_argument(
        "--only", metavar="JOB[,JOB...]", help="run only these jobs (ids unchanged: a later full run resumes them)"
    )
    parser.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help="run only the first N planned requests of each job (a cheap smoke test)",
    )
    add_sample_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # The Python API's `run` is the one implementation (batchrun.api.running); this maps the flags
    # to its keywords. The run's modules (the client's stack: httpx, aiohttp, anyio) load when it
    # runs, not when the CLI builds its parser, so `batchrun --help` and the other commands do not
    # pay for them. Held like the CLI's own imports (batchrun.signals.held): a signal inside an
    # import could be swallowed or crash an extension's init; it is delivered afterwards (exit 130/143).
    with signals.held():
        from batchrun.api.running import run as run_spec
        from batchrun.run import runner  # noqa: F401 - loaded here, under the held signals

    result = run_spec(
        args.spec, args.output, target=args.target, run_url=args.run_url, queue_url=args.queue_url,
        ca_bundle=args.ca_bundle, concurrency=args.concurrency, shard=args.shard,
        budget_per_shard=args.budget_per_shard, retry_errors=args.retry_errors,
        fresh=args.fresh, progress=not args.no_progress, show_logs=args.show_logs, only=args.only, limit=args.limit,
        sample=args.sample, seed=args.seed, debug=bool(getattr(args, "debug", False)),
        no_cache=args.no_cache, refresh_cache=args.refresh_cache,
    )
    return result.exit_code
