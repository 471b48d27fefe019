"""One `batchrun run`, from its parsed arguments to its exit code (batchrun.commands.run defines
the arguments and imports this module when the command runs: `batchrun --help` does not load the
client's stack).

Before anything is sent: the spec (every unset ${{ env.X }} it uses stops the run, exit 2), the
target (a fal target without a key stops here), the output's lock, the journal's leftovers, the
resume's counting walk (batchrun.run.settled) and the manifest. Then the executor (batchrun.run.executor),
on the embedded server for `--target local`; afterwards the manifest and the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio

from batchrun import signals
from batchrun.client.target import Endpoints, resolve_target
from batchrun.errors import BatchrunError, Problem, UsageError
from batchrun.load import load_spec
from batchrun.output.checks import check_output
from batchrun.output.journal import Journal, journal_path
from batchrun.output.manifest import Manifest, manifest_path
from batchrun.output.planids import PlanIds, compare, parse_ids, plan_ids_path, read_ids
from batchrun.output.resume import ResumeState, scan_output
from batchrun.output.sink import JsonlSink, OutputLock
from batchrun.output.summary import RunSummary
from batchrun.plan.planner import build_plan, parse_shard
from batchrun.plan.selection import select
from batchrun.redact import Redactor
from batchrun.run.executor import Executor, RunResult
from batchrun.run.limits import Limits
from batchrun.run.progress import Progress
from batchrun.run.settled import PlanCount, count_plan
from batchrun.spec.checks import UnsetEnv
from batchrun.spec.model import Spec, Target
from batchrun.spec.template import env_names
from batchrun.toolkit.budget import check_budget_prices
from batchrun.toolkit.hooks import Toolkit

__all__ = ["run"]


def _debug(args: argparse.Namespace) -> bool:
    """--debug (before the command) or BATCHRUN_DEBUG=1: show the traceback of an internal error
    that became a request's record (they are redacted, but still meant for a bug report)."""
    return bool(getattr(args, "debug", False)) or os.environ.get("BATCHRUN_DEBUG", "") not in ("", "0")


def _target(spec: Spec, args: argparse.Namespace) -> Target:
    if (args.run_url is None) != (args.queue_url is None):
        raise UsageError("--run-url and --queue-url go together")
    if args.target == "local" and args.run_url is not None:
        raise UsageError("--run-url/--queue-url cannot be combined with --target local (it starts its own server)")
    target = spec.target
    if args.target is not None:
        target = Target(args.target)
    elif args.run_url is not None:
        target = Target("custom", args.run_url, args.queue_url)
    return target


def _output(spec: Spec, args: argparse.Namespace, shard: tuple[int, int] | None) -> Path:
    if args.output:
        return Path(args.output)
    out = spec.output_path()
    if shard is not None:
        i, n = shard
        out = out.with_name(f"{out.stem}.shard-{i}-of-{n}{out.suffix}")
    return out


def _secrets(spec: Spec, endpoints: Endpoints | None, environ: Mapping[str, str]) -> Redactor:
    redactor = Redactor(endpoints.secrets if endpoints is not None else ())
    for job in spec.jobs:
        for name in env_names(job.arguments) | env_names(job.headers):
            if environ.get(name):
                redactor.add(environ[name])
    return redactor


def _unset_env_message(unset: list[UnsetEnv]) -> str:
    """Every unset variable the jobs to run use, and where: the run stops before anything is sent
    (sending would only write one input_error record per request, which a resume then skips)."""
    names = ", ".join(dict.fromkeys(p.name for p in unset))
    places = "".join(f"\n  {p.file}:{p.line}:{p.col}: {p.path}: ${{{{ env.{p.name} }}}} (job '{p.job}')"
                     for p in unset)
    return (f"the plan uses environment variables that are not set: {names}; nothing was sent. "
            f"Set them (or remove the references) and run again. Used at:{places}")


def _move_aside(out: Path) -> None:
    """--fresh: never clobber; the old output (with its journal and manifest) moves to
    <out>.<UTC time>.bak, so the manifest still describes the output beside it."""
    journal = journal_path(out)
    manifest = manifest_path(out)
    if not out.exists() and not journal.exists():
        return
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = out.with_name(f"{out.name}.{stamp}.bak")
    n = 1
    while backup.exists() or journal_path(backup).exists():
        n += 1
        backup = out.with_name(f"{out.name}.{stamp}-{n}.bak")
    try:
        if out.exists():
            os.replace(out, backup)
        if journal.exists():
            os.replace(journal, journal_path(backup))
        if manifest.exists():
            os.replace(manifest, manifest_path(backup))
    except OSError as exc:
        raise BatchrunError(f"--fresh: cannot move {out} aside to {backup}: {exc.strerror or exc}") from None
    print(f"batchrun: --fresh: moved the previous output to {backup}", file=sys.stderr)
    if journal_path(backup).exists():
        print(
            f"batchrun: the previous run's journal moved to {journal_path(backup)}; queue requests it "
            f"left running can be cancelled with `batchrun cancel {backup}`",
            file=sys.stderr,
        )



def run(args: argparse.Namespace) -> int:
    warnings: list[Problem] = []
    counts: dict[str, int] = {}
    spec = load_spec(args.spec, warnings, counts)
    selection = select(spec, counts, args.only, args.limit)
    unset = [p for p in warnings if isinstance(p, UnsetEnv) and counts.get(p.job)
             and (selection is None or p.job in selection.jobs)]
    for problem in warnings:
        if problem not in unset:
            print(problem, file=sys.stderr)
    if unset:
        raise UsageError(_unset_env_message(unset))
    if args.fresh and args.retry_errors:
        raise UsageError("--fresh starts over, so --retry-errors has nothing to retry; use one of them")
    shard = parse_shard(args.shard) if args.shard else None
    target = _target(spec, args)
    environ = os.environ
    # Before any file is touched: a fal target without a key stops here.
    endpoints = None if target.kind == "local" else resolve_target(target, environ)
    concurrency = args.concurrency or spec.concurrency
    record_logs = {j.name for j in spec.jobs if j.with_logs}
    if args.show_logs:
        # Ask the server for logs to show; records keep logs only where the spec asked (with_logs).
        spec = dataclasses.replace(spec, jobs=[dataclasses.replace(j, with_logs=True) for j in spec.jobs])
    out = _output(spec, args, shard)
    redactor = _secrets(spec, endpoints, environ)
    check_budget_prices(spec)
    check_output(out, spec)  # not a device, not one of the run's inputs, not some other file (exit 2)

    with OutputLock(out) as lock:
        if args.fresh:
            _move_aside(out)
        journal = Journal(journal_path(out))
        journal.open()
        try:
            if target.kind == "local" and (journal.in_flight or journal.intents):
                # An embedded server dies with its run: what it had queued cannot be re-attached,
                # and a submit it may have accepted cannot be running any more.
                for entry in list(journal.in_flight.values()):
                    journal.cancelled(entry.id, entry.request_id)
                for id in list(journal.intents):
                    journal.cancelled(id, None)
            state = scan_output(out, watch_request_ids={e.request_id for e in journal.in_flight.values()})
            for entry in list(journal.in_flight.values()):
                if entry.request_id in state.finished_request_ids:
                    journal.done(entry.id, entry.request_id)
            ids = PlanIds()
            count = count_plan(spec, counts, shard, state, args.retry_errors, journal.in_flight, journal.intents, ids,
                               selection)
            total, settled, settled_errors = count.total, count.settled, count.errors
            manifest = Manifest(out, spec, target=_target_urls(target, endpoints), shard=shard, planned=total,
                                resumed=bool(state.lines), scrub=redactor.scrub,
                                selection=None if selection is None else selection.label)
            # A part of the plan is not the plan: its ids are neither recorded nor compared.
            _compare_plans(out, state, ids, manifest, record=selection is None)
            if state.lines or journal.in_flight or journal.intents:
                hint = "; --retry-errors re-runs errors" if settled_errors else ""
                unknown = (
                    f"; {len(journal.intents)} queue submits were on the wire when the previous run stopped "
                    "(their outcome is unknown: recorded as outcome_unknown, not submitted again)"
                    if journal.intents else ""
                )
                checks = (
                    f"; {count.expect_failed} of them failed an expectation (they are not sent again: if the spec's "
                    f"expect was wrong, fix it and `batchrun check {args.spec} {out} --write` re-checks them)"
                    if count.expect_failed else ""
                )
                print(
                    f"batchrun: resuming {out}: {settled} of {total} planned requests are already done "
                    f"({settled - settled_errors} ok, {settled_errors} error{hint}){checks}; "
                    f"{len(journal.in_flight)} journaled queue requests to re-attach{unknown}",
                    file=sys.stderr,
                )
            manifest.start()
            result: RunResult | None = None
            # Everything so far (modules, the spec, the resume state) lives for the whole run: keep it
            # out of the cyclic GC, whose full passes over it took tens of ms at a time mid-run.
            # Unfrozen afterwards, for a caller that runs several commands in one process.
            gc.freeze()
            # Held until _main runs: a signal while asyncio builds its loop (before its runner
            # handles SIGINT) left a half-built loop whose __del__ printed a traceback at exit.
            signals.hold()
            try:
                result = anyio.run(
                    _main, spec, target, endpoints, shard, out, lock, journal, state, redactor, concurrency,
                    count, record_logs, args, ids,
                )
            finally:
                signals.release()  # in case _main never ran
                gc.unfreeze()
                if selection is None and ids.complete and manifest.data["plan"]["ids_sha256"] is None:
                    _record_plan(out, ids, manifest)
                _finish_manifest(manifest, result, count)
        finally:
            # What the journal marks done is in the output only if the path still names the file
            # this run wrote (batchrun.output.sink.JsonlSink); otherwise the journal stays.
            intact = lock.intact()
            journal.close(keep=not intact)
            if not intact and journal.path.exists():
                print(f"batchrun: {out} no longer names the file this run wrote, so its journal {journal.path} "
                      "is kept (it lists every queue request this output's runs submitted)", file=sys.stderr)
    assert result is not None  # anyio.run returned
    return _report(result, out)


def _target_urls(target: Target, endpoints: Endpoints | None) -> dict[str, str | None]:
    if endpoints is None:  # local: the embedded server's URLs exist only while the run lasts
        return {"kind": target.kind, "run_url": None, "queue_url": None}
    return {"kind": target.kind, "run_url": endpoints.run_url, "queue_url": endpoints.queue_url}


def _compare_plans(out: Path, state: ResumeState, ids: PlanIds, manifest: Manifest, *, record: bool = True) -> None:
    """Resuming: say which plan ids the spec added or removed since the output's last run; record the
    plan's ids beside the output (when this start walked the plan, and `record`)."""
    sidecar = plan_ids_path(out)
    if not state.lines:
        with contextlib.suppress(OSError):
            sidecar.unlink(missing_ok=True)  # left by an output that is gone (--fresh, deleted)
    if not record or not ids.complete:
        return  # the executor's walk collects them
    old = read_ids(sidecar) if state.lines else None
    _record_plan(out, ids, manifest)
    if old is not None and hashlib.sha256(old).hexdigest() != manifest.data["plan"]["ids_sha256"]:
        change = compare(parse_ids(old), ids.sorted_ids())  # only a changed plan pays for the merge
        if change:
            print(change.message(out), file=sys.stderr)


def _record_plan(out: Path, ids: PlanIds, manifest: Manifest) -> None:
    sidecar = plan_ids_path(out)
    try:
        manifest.plan(len(ids), ids.write(sidecar), sidecar)
    except OSError as exc:  # a full disk must not mask the run's own outcome
        print(f"batchrun: warning: cannot write {sidecar}: {exc.strerror or exc}", file=sys.stderr)


def _finish_manifest(manifest: Manifest, result: RunResult | None, count: PlanCount) -> None:
    if result is None:  # the run raised: its error is reported by the CLI
        manifest.finish(counts={}, cost_usd=None, gates=[], stopped_by=None, exit_code=None, interrupted=False)
        return
    s = result.summary
    counts = {"ok": s.ok, "error": s.errors, "skipped": s.skipped, "skipped_errors": s.failed - s.errors,
              "expectation_failures": s.expectations_failed}
    # The output's counts for the plan: what the output settled before this run (the counting walk),
    # what this run wrote, and errors queued again by --retry-errors that this run did not replace.
    ok = count.settled - count.errors + s.ok
    error = count.errors + s.errors + count.requeued_errors - s.replaced_errors
    expectations = count.expect_failed + sum(j.expectation_failures for j in s.jobs.values())
    output = {"ok": ok, "error": error, "not_run": max(0, count.total - ok - error),
              "expectation_failures": expectations}
    manifest.finish(counts=counts, cost_usd=round(s.cost_usd, 6) if s.cost_usd or s.cost_unknown else None,
                    gates=s.gate_failures, stopped_by=s.stopped_by, exit_code=result.exit_code,
                    interrupted=result.interrupted, output_counts=output)


def _report(result: RunResult, out: Path) -> int:
    for line in result.summary.lines():
        print(line, file=sys.stderr)
    j = journal_path(out)
    if result.left_running:
        print(
            f"batchrun: {result.left_running} queue requests keep running remotely and stay journaled (in {j}): "
            f"the next run collects them; `batchrun cancel {out}` cancels them",
            file=sys.stderr,
        )
    if result.not_in_plan:
        print(
            f"batchrun: {result.not_in_plan} of them are not in this plan (did the spec or --shard change?), "
            f"so this run cannot collect them; `batchrun cancel {out}` cancels them",
            file=sys.stderr,
        )
    if result.interrupted:
        print(f"batchrun: interrupted{signals.label(result.stop_signal)}; run the same command again to "
              "resume (nothing already written is sent again)", file=sys.stderr)
    return result.exit_code


async def _main(spec: Spec, target: Target, endpoints: Endpoints | None, shard: tuple[int, int] | None,
                out: Path, lock: OutputLock, journal: Journal, state: ResumeState, redactor: Redactor, concurrency: int,
                count: PlanCount, record_logs: set[str], args: argparse.Namespace,
                ids: PlanIds) -> RunResult:
    signals.release()  # the loop and its runner's SIGINT handler are up (see run)
    if target.kind == "local":
        from batchrun.server import serve_local

        async with serve_local(runners=max(2, concurrency)) as server:
            local = resolve_target(target, {}, run_url=server.run_url, queue_url=server.queue_url)
            result = await _execute(spec, local, shard, out, lock, journal, state, redactor, concurrency,
                                    count, record_logs, args, ids)
            # The server stops with this run: nothing it had queued can be re-attached later.
            for entry in list(journal.in_flight.values()):
                if entry.status_url.startswith(server.origin):
                    journal.cancelled(entry.id, entry.request_id)
            result.left_running = len(journal.in_flight)
            result.summary.left_running = result.left_running
            return result
    assert endpoints is not None
    return await _execute(spec, endpoints, shard, out, lock, journal, state, redactor, concurrency,
                          count, record_logs, args, ids)


async def _execute(spec: Spec, endpoints: Endpoints, shard: tuple[int, int] | None, out: Path,
                   lock: OutputLock, journal: Journal, state: ResumeState, redactor: Redactor, concurrency: int,
                   count: PlanCount, record_logs: set[str], args: argparse.Namespace,
                   ids: PlanIds) -> RunResult:
    from batchrun.client.fal import FalClient
    from batchrun.toolkit.artifacts import Downloader

    progress = Progress(count.total, skipped=count.settled, concurrency=concurrency, enabled=not args.no_progress)
    summary = RunSummary(output=str(out))
    summary.plan_order([j.name for j in spec.jobs])
    limits = Limits(concurrency, rate=spec.rate_limit)
    ca_bundle = getattr(args, "ca_bundle", None) or spec.target.ca_bundle
    downloader = (Downloader(out, scrub_text=redactor.text, ca_bundle=ca_bundle)
                  if any(j.download for j in spec.jobs) else None)
    toolkit = Toolkit(spec, summary=summary, resume=state, downloader=downloader)
    plan = build_plan(spec, shard=shard, only=count.todo)
    try:
        async with FalClient(run_url=endpoints.run_url, queue_url=endpoints.queue_url, auth=endpoints.auth,
                             redactor=redactor, max_connections=concurrency, ca_bundle=ca_bundle) as client:
            with JsonlSink(out, lock) as sink:
                executor = Executor(
                    client=client, sink=sink, journal=journal, resume=state, limits=limits,
                    progress=progress, summary=summary, redactor=redactor, workers=concurrency,
                    retry_errors=args.retry_errors, show_logs=args.show_logs, record_logs=record_logs,
                    toolkit=toolkit, debug=_debug(args),
                )
                return await executor.execute(plan if ids.complete else ids.wrap(plan), count.settled_jobs)
    finally:
        progress.close()
        if downloader is not None:
            await downloader.aclose()
