"""One run of a loaded spec, from its options to its result: the one implementation behind
`batchrun run` (batchrun.commands.run) and the Python API's `run`/`run_async` (batchrun.api), both
of which import this module only when they run (`batchrun --help` does not load the client's stack).

Before anything is sent: the spec (every unset ${{ env.X }} it uses stops the run, exit 2), the
target (a fal target without a key stops here), the output's lock, the journal's leftovers, the
resume's counting walk (batchrun.run.settled) and the manifest. Then the executor (batchrun.run.executor),
on the embedded server for `--target local`; afterwards the manifest and the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import hashlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread

from batchrun import signals
from batchrun.client.target import Endpoints, resolve_target
from batchrun.errors import BatchrunError, Problem, UsageError
from batchrun.output.checks import check_output
from batchrun.output.journal import Journal, journal_path
from batchrun.output.manifest import Manifest, manifest_path
from batchrun.output.planids import PlanIds, compare, parse_ids, plan_ids_path, read_ids
from batchrun.output.resume import ResumeState, scan_output
from batchrun.output.sink import JsonlSink, OutputLock
from batchrun.output.summary import RunSummary
from batchrun.plan.planner import build_plan, with_sample
from batchrun.plan.selection import Selection, select
from batchrun.redact import Redactor
from batchrun.run.caching import RunCache, target_bases
from batchrun.run.callbacks import Callbacks
from batchrun.run.executor import Executor, RunResult
from batchrun.run.limits import Limits
from batchrun.run.options import RunOptions
from batchrun.run.progress import Progress
from batchrun.run.settled import PlanCount, count_plan
from batchrun.run.stopping import Interrupts
from batchrun.spec.checks import UnsetEnv
from batchrun.spec.model import Spec, Target
from batchrun.spec.template import env_names
from batchrun.toolkit.budget import check_budget_prices
from batchrun.toolkit.hooks import Toolkit

__all__ = ["Finished", "run", "run_async"]


def _uvloop() -> bool:
    try:
        import uvloop  # noqa: F401 - only asking whether it is there
    except ImportError:  # a platform uvloop does not support (the dependency is marked so)
        return False
    return True


RUN_GC_THRESHOLD = 5000  # allocations between young-generation GC passes during a run (see run)

# The run's event loop is uvloop's where it is installed, as `batchrun serve`'s is: its C loop and
# TLS transport take 15-18 us of CPU off each HTTPS exchange (10% of the client's work in run mode).
_LOOP_OPTIONS = {"use_uvloop": _uvloop()}


def _debug(args: RunOptions) -> bool:
    """--debug (before the command) or BATCHRUN_DEBUG=1: show the traceback of an internal error
    that became a request's record (they are redacted, but still meant for a bug report)."""
    return args.debug or os.environ.get("BATCHRUN_DEBUG", "") not in ("", "0")


def _target(spec: Spec, args: RunOptions) -> Target:
    if (args.run_url is None) != (args.queue_url is None):
        raise UsageError("--run-url and --queue-url go together")
    if args.target == "local" and args.run_url is not None:
        raise UsageError("--run-url/--queue-url cannot be combined with --target local (it starts its own server)")
    target = spec.target
    if args.target is not None:
        target = Target(args.target)  # type: ignore[arg-type]  # RunOptions.create checked it
    elif args.run_url is not None:
        target = Target("custom", args.run_url, args.queue_url)
    return target


def _output(spec: Spec, args: RunOptions) -> Path:
    if args.output:
        return Path(args.output)
    out = spec.output_path()
    if args.shard is not None:
        i, n = args.shard
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



@dataclasses.dataclass(slots=True)
class Finished:
    """What a run leaves: the executor's result, the output it wrote, the callbacks' failures."""

    result: RunResult
    output: Path
    callbacks: Callbacks

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


@dataclasses.dataclass(slots=True)
class _Run:
    """Everything decided before the output is touched (`_decide`), then the output's state once
    it is locked (`_opened`); `_main` runs the plan on it."""

    spec: Spec
    counts: dict[str, int]  # the plan's requests per job (validation's)
    label: str  # what messages call the spec (its path, or <string>/<dict>)
    options: RunOptions
    selection: Selection | None
    part: str | None  # a part of the spec's plan (--only/--limit, --sample): its label, else None
    shard: tuple[int, int] | None
    target: Target
    endpoints: Endpoints | None
    concurrency: int
    record_logs: set[str]
    out: Path
    redactor: Redactor
    callbacks: Callbacks
    interrupts: Interrupts | None
    journal: Journal | None = None
    state: ResumeState | None = None
    count: PlanCount | None = None
    ids: PlanIds | None = None
    lock: OutputLock | None = None
    result: RunResult | None = None


def _decide(spec: Spec, warnings: list[Problem], counts: dict[str, int], label: str, options: RunOptions,
            callbacks: Callbacks | None, interrupts: Interrupts | None) -> _Run:
    spec = with_sample(spec, counts, options.sample, options.seed)
    selection = select(spec, counts, options.only, options.limit)
    # A part of the spec's plan (--only/--limit, --sample): its ids are neither recorded nor compared
    # as the output's plan, and the manifest says which part was run.
    part = " ".join(label for label in (
        None if options.sample is None else f"--sample {options.sample} --seed {options.seed or 0}",
        None if selection is None else selection.label,
    ) if label) or None
    unset = [p for p in warnings if isinstance(p, UnsetEnv) and counts.get(p.job)
             and (selection is None or p.job in selection.jobs)]
    for problem in warnings:
        if problem not in unset:
            print(problem, file=sys.stderr)
    if unset:
        raise UsageError(_unset_env_message(unset))
    if options.fresh and options.retry_errors:
        raise UsageError("--fresh starts over, so --retry-errors has nothing to retry; use one of them")
    target = _target(spec, options)
    environ = os.environ
    # Before any file is touched: a fal target without a key stops here.
    endpoints = None if target.kind == "local" else resolve_target(target, environ)
    concurrency = options.concurrency or spec.concurrency
    record_logs = {j.name for j in spec.jobs if j.with_logs}
    if options.show_logs:
        # Ask the server for logs to show; records keep logs only where the spec asked (with_logs).
        spec = dataclasses.replace(spec, jobs=[dataclasses.replace(j, with_logs=True) for j in spec.jobs])
    out = _output(spec, options)
    redactor = _secrets(spec, endpoints, environ)
    check_budget_prices(spec)
    check_output(out, spec)  # not a device, not one of the run's inputs, not some other file (exit 2)
    return _Run(spec, counts, label, options, selection, part, options.shard, target, endpoints, concurrency,
                record_logs, out, redactor, callbacks if callbacks is not None else Callbacks(), interrupts)


@contextlib.contextmanager
def _opened(r: _Run) -> Iterator[_Run]:
    """The output locked, its journal open, the resume state read and the manifest started; on
    the way out (whatever happened) the plan's ids and the manifest's end are written."""
    spec, out, journal_file = r.spec, r.out, journal_path(r.out)
    with OutputLock(out) as lock:
        r.lock = lock
        if r.options.fresh:
            _move_aside(out)
        journal = r.journal = Journal(journal_file, scrub=r.redactor.scrub)
        journal.open()
        try:
            if r.target.kind == "local" and (journal.in_flight or journal.intents):
                # An embedded server dies with its run: what it had queued cannot be re-attached,
                # and a submit it may have accepted cannot be running any more.
                for entry in list(journal.in_flight.values()):
                    journal.cancelled(entry.id, entry.request_id)
                for id in list(journal.intents):
                    journal.cancelled(id, None)
            state = r.state = scan_output(out, watch_request_ids={e.request_id for e in journal.in_flight.values()})
            for entry in list(journal.in_flight.values()):
                if entry.request_id in state.finished_request_ids:
                    journal.done(entry.id, entry.request_id)
            ids = r.ids = PlanIds()
            count = r.count = count_plan(spec, r.counts, r.shard, state, r.options.retry_errors,
                                         journal.in_flight, journal.intents, ids, r.selection)
            total, settled, settled_errors = count.total, count.settled, count.errors
            # No more workers (nor local runners, nor connections) than requests left to send: a
            # 4-request plan at --concurrency 10000 started 10000 of each (seconds, hundreds of MB).
            r.concurrency = max(1, min(r.concurrency, total - settled))
            manifest = Manifest(out, spec, target=_target_urls(r.target, r.endpoints), shard=r.shard, planned=total,
                                resumed=bool(state.lines), scrub=r.redactor.scrub,
                                selection=r.part)
            # A part of the plan is not the plan: its ids are neither recorded nor compared.
            _compare_plans(out, state, ids, manifest, record=r.part is None)
            if state.lines or journal.in_flight or journal.intents:
                hint = "; --retry-errors re-runs errors" if settled_errors else ""
                unknown = (
                    f"; {len(journal.intents)} queue submits were on the wire when the previous run stopped "
                    "(their outcome is unknown: recorded as outcome_unknown, not submitted again)"
                    if journal.intents else ""
                )
                checks = (
                    f"; {count.expect_failed} of them failed an expectation (they are not sent again: if the spec's "
                    f"expect was wrong, fix it and `batchrun check {r.label} {out} --write` re-checks them)"
                    if count.expect_failed else ""
                )
                print(
                    f"batchrun: resuming {out}: {settled} of {total} planned requests are already done "
                    f"({settled - settled_errors} ok, {settled_errors} error{hint}){checks}; "
                    f"{len(journal.in_flight)} journaled queue requests to re-attach{unknown}",
                    file=sys.stderr,
                )
            manifest.start()
            try:
                yield r
            finally:
                if r.part is None and ids.complete and manifest.data["plan"]["ids_sha256"] is None:
                    _record_plan(out, ids, manifest)
                _finish_manifest(manifest, r.result, count)
        finally:
            # What the journal marks done is in the output only if the path still names the file
            # this run wrote (batchrun.output.sink.JsonlSink); otherwise the journal stays.
            intact = lock.intact()
            journal.close(keep=not intact)
            if not intact and journal.path.exists():
                print(f"batchrun: {out} no longer names the file this run wrote, so its journal {journal.path} "
                      "is kept (it lists every queue request this output's runs submitted)", file=sys.stderr)


def run(spec: Spec, warnings: list[Problem], counts: dict[str, int], label: str, options: RunOptions, *,
        callbacks: Callbacks | None = None, own_thread: bool = False) -> Finished:
    """Run a loaded spec to its end, blocking, and print its summary (stderr). `counts`: the plan's
    requests per job (validation's). `own_thread`: run the event loop in a worker thread, because
    the caller's thread runs one already (a notebook): a Ctrl-C then reaches the caller's thread as
    KeyboardInterrupt, and is passed to the run as the same graceful, resumable stop."""
    interrupts = Interrupts() if own_thread else None
    r = _decide(spec, warnings, counts, label, options, callbacks, interrupts)
    with _opened(r):
        # Everything so far (modules, the spec, the resume state) lives for the whole run: keep it
        # out of the cyclic GC, whose full passes over it took tens of ms at a time mid-run.
        # Unfrozen afterwards, for a caller that runs several commands in one process.
        gc.freeze()
        # Each request leaves dozens of container objects behind for a while (coroutine frames,
        # the httpx and aiohttp request and response objects, the record), so with Python's
        # default of a young-generation pass every 700 allocations the GC ran every ~14 requests,
        # 13 us of CPU per request in all. Every 5000, the same run spends ~2.5 us per request on it
        # (bench/RESULTS.md, run 5); the garbage a pass finds is at most a few MB older.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], RUN_GC_THRESHOLD), *thresholds[1:])
        try:
            r.result = _in_thread(r) if interrupts is not None else _in_this_thread(r)
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
    assert r.result is not None
    _report(r.result, r.out)
    return Finished(r.result, r.out, r.callbacks)


async def run_async(spec: Spec, warnings: list[Problem], counts: dict[str, int], label: str, options: RunOptions, *,
                    callbacks: Callbacks | None = None) -> Finished:
    """`run` in the caller's event loop (anyio). The file work before and after the requests (the
    resume's walk over the output can take seconds) runs in a worker thread. No signal handler is
    installed: the caller's program owns its signals; cancelling the caller's task stops the run
    (nothing written is lost; queue requests stay journaled and the next run collects them)."""
    r = _decide(spec, warnings, counts, label, options, callbacks, None)
    opened = _opened(r)
    await anyio.to_thread.run_sync(opened.__enter__)
    try:
        r.result = await _main(r, handle_signals=False)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if not await anyio.to_thread.run_sync(opened.__exit__, type(exc), exc, exc.__traceback__):
                raise
    else:
        await anyio.to_thread.run_sync(opened.__exit__, None, None, None)
    assert r.result is not None
    _report(r.result, r.out)
    return Finished(r.result, r.out, r.callbacks)


def _in_this_thread(r: _Run) -> RunResult:
    # Held until _main runs: a signal while asyncio builds its loop (before its runner handles
    # SIGINT) left a half-built loop whose __del__ printed a traceback at exit.
    signals.hold()
    try:
        return anyio.run(_main, r, backend_options=_LOOP_OPTIONS)
    finally:
        signals.release()  # in case _main never ran


def _in_thread(r: _Run) -> RunResult:
    """The run in a worker thread's own event loop; this thread waits, and turns a Ctrl-C
    (KeyboardInterrupt here) into the run's graceful stop (a second one: as a second Ctrl-C)."""
    assert r.interrupts is not None
    interrupts = r.interrupts
    with _ctrl_c_raises(), anyio.from_thread.start_blocking_portal(backend_options=_LOOP_OPTIONS) as portal:
        future = portal.start_task_soon(_main, r)
        while True:
            try:
                return future.result()
            except KeyboardInterrupt:
                portal.call(interrupts.interrupt, signal.SIGINT)


@contextlib.contextmanager
def _ctrl_c_raises() -> Iterator[None]:
    """While this thread waits for the run: Ctrl-C raises KeyboardInterrupt here (what a notebook
    kernel does while a cell runs), whatever handler the caller's loop had installed: asyncio.run's
    would only cancel its main task, which is blocked in this wait until the run ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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


async def _main(r: _Run, handle_signals: bool = True) -> RunResult:
    signals.release()  # the loop and its runner's SIGINT handler are up (see _in_this_thread)
    assert r.journal is not None
    if r.target.kind == "local":
        from batchrun.server import serve_local

        async with serve_local(runners=max(2, r.concurrency)) as server:
            local = resolve_target(r.target, {}, run_url=server.run_url, queue_url=server.queue_url)
            result = await _execute(r, local, handle_signals)
            # The server stops with this run: nothing it had queued can be re-attached later.
            for entry in list(r.journal.in_flight.values()):
                if entry.status_url.startswith(server.origin):
                    r.journal.cancelled(entry.id, entry.request_id)
            result.left_running = len(r.journal.in_flight)
            result.summary.left_running = result.left_running
            return result
    assert r.endpoints is not None
    return await _execute(r, r.endpoints, handle_signals)


async def _execute(r: _Run, endpoints: Endpoints, handle_signals: bool) -> RunResult:
    from batchrun.client.fal import FalClient
    from batchrun.client.storage import Uploads, uploads_path
    from batchrun.toolkit.artifacts import Downloader
    from batchrun.toolkit.phash import PerceptualHasher

    spec, out, count, ids = r.spec, r.out, r.count, r.ids
    assert r.journal is not None and r.state is not None and count is not None and ids is not None
    progress = Progress(count.total, skipped=count.settled, concurrency=r.concurrency, enabled=r.options.progress)
    summary = RunSummary(output=str(out))
    summary.plan_order([j.name for j in spec.jobs])
    limits = Limits(r.concurrency, rate=spec.rate_limit)
    ca_bundle = r.options.ca_bundle or spec.target.ca_bundle
    downloader = (Downloader(out, scrub_text=r.redactor.text, ca_bundle=ca_bundle)
                  if any(j.download for j in spec.jobs) else None)
    hasher = PerceptualHasher() if downloader is not None else None
    if hasher is not None and not hasher.available:
        print(f"batchrun: warning: {hasher.message}", file=sys.stderr)
    # A budget is the whole plan's: shard I of N gets 1/N of it unless the user chose per-shard budgets.
    share = 1.0 if r.shard is None or r.options.budget_per_shard else 1.0 / r.shard[1]
    toolkit = Toolkit(spec, summary=summary, resume=r.state, downloader=downloader, hasher=hasher,
                      budget_share=share)
    plan = build_plan(spec, shard=r.shard, only=count.todo)
    bases = target_bases("local", None) if r.target.kind == "local" else target_bases(r.target.kind, endpoints)
    cache = None if r.options.no_cache else RunCache(spec, bases, out, refresh=r.options.refresh_cache,
                                                     environ=os.environ, warn=progress.message)
    try:
        if cache is not None:
            cache.open()
        async with Uploads(rest_url=_storage_url(endpoints.queue_url), auth=endpoints.auth,
                           remember=uploads_path(out)) as uploads, \
                FalClient(run_url=endpoints.run_url, queue_url=endpoints.queue_url, auth=endpoints.auth,
                          redactor=r.redactor, max_connections=r.concurrency, ca_bundle=ca_bundle,
                          uploads=uploads) as client:
            with JsonlSink(out, r.lock) as sink:
                executor = Executor(
                    client=client, sink=sink, journal=r.journal, resume=r.state, limits=limits,
                    progress=progress, summary=summary, redactor=r.redactor, workers=r.concurrency,
                    retry_errors=r.options.retry_errors, show_logs=r.options.show_logs, record_logs=r.record_logs,
                    toolkit=toolkit, debug=_debug(r.options), callbacks=r.callbacks, interrupts=r.interrupts,
                    handle_signals=handle_signals and r.interrupts is None,
                    cache=cache,
                )
                return await executor.execute(plan if ids.complete else ids.wrap(plan), count.settled_jobs)
    finally:
        progress.close()
        if cache is not None:
            cache.close()
        if downloader is not None:
            await downloader.aclose()


def _storage_url(queue_url: str) -> str:
    """Where uploads go: fal's REST API for fal's queue (fal-client's REST_URL), else the queue's
    own origin (the embedded server, or a proxy in front of fal, serves storage there too)."""
    from urllib.parse import urlsplit

    parts = urlsplit(queue_url)
    if parts.hostname is not None and (parts.hostname == "fal.run" or parts.hostname.endswith(".fal.run")):
        return "https://rest.fal.ai"
    return f"{parts.scheme}://{parts.netloc}"
