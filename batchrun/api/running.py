"""Running specs from Python: `run` (blocking, also inside a running event loop) and `run_async`.

Both are `batchrun run` (the command is a thin layer over `run`): one keyword per flag, the same
resume, journal, manifest, gates, budget, summary on stderr and exit code; records written by
either are the same bytes for the same spec (timings and request ids aside).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from batchrun.api.records import Records, read
from batchrun.api.specs import LoadedSpec, SpecSource, load
from batchrun.output.manifest import manifest_path
from batchrun.plan.planner import PlannedRequest
from batchrun.run.callbacks import CallbackError, Callbacks, Status
from batchrun.run.options import RunOptions

__all__ = ["RunResult", "run", "run_async"]


@dataclasses.dataclass(frozen=True, slots=True)
class RunResult:
    """What a run did. `counts` are the output's, for the plan (as the manifest has them):
    `ok`, `error`, `not_run`, `expectation_failures`; `sent` are this run's: `ok`, `error`, and
    `skipped` (settled by an earlier run's record)."""

    exit_code: int  # batchrun run's: 0 all ok, 1 failures/gates/budget, 130/143 interrupted
    output: Path
    counts: dict[str, int]
    sent: dict[str, int]
    interrupted: bool
    stopped_by: str | None  # the gate or budget that stopped the run early
    gates: list[str]  # every breached gate
    cost_usd: float | None  # this run's estimate (with `pricing`)
    left_running: int  # queue requests still running remotely (journaled: the next run collects them)
    callback_errors: list[CallbackError]  # every callback that raised (the run went on)
    manifest: dict[str, Any] | None  # OUT.manifest.json as written at the end (None: it could not be read)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.output)

    def records(self, *, all_records: bool = False) -> Records:
        """The output's records (newest per id unless `all_records`): `read(self.output)`."""
        return read(self.output, all_records=all_records)


OnEnqueue = Callable[[PlannedRequest, str], object]
OnQueueUpdate = Callable[[PlannedRequest, Status], object]
OnRecord = Callable[[dict[str, Any]], object]


def run(
    spec: SpecSource | LoadedSpec,
    output: str | os.PathLike[str] | None = None,
    *,
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
    on_enqueue: OnEnqueue | None = None,
    on_queue_update: OnQueueUpdate | None = None,
    on_record: OnRecord | None = None,
) -> RunResult:
    """Send every planned request of `spec` and append one JSON line per request to `output`;
    block until done. Resumes by default, exactly as `batchrun run` does.

    Works in a plain script and inside a running event loop (a Jupyter cell, `asyncio.run`): the
    run then gets its own loop in a worker thread, and the callbacks are called in that thread.
    Ctrl-C stops gracefully either way (the run's summary says so, `interrupted` is True and
    `exit_code` 130): calling `run` again resumes; nothing already written is sent again.

    Args:
        spec: a LoadedSpec, or anything `load` takes (a path, YAML text, a dict).
        output: the JSONL output (`-o`); default: the spec's `output`, else `outputs/<name>.jsonl`
            (with a shard: `outputs/<name>.shard-I-of-N.jsonl`).
        target: "fal" or "local" (`--target`); `run_url` and `queue_url` together: any
            fal-compatible server (`--run-url`, `--queue-url`).
        ca_bundle: a PEM file of the CAs trusted for HTTPS (`--ca-bundle`; default: the spec's
            `target.ca_bundle`, else certifi's or SSL_CERT_FILE).
        concurrency: requests in flight at once (`--concurrency`; default: the spec's).
        shard: "I/N" or (I, N), 1-based (`--shard`).
        budget_per_shard: with a shard, it may spend the whole `budget.max_usd`
            (`--budget-per-shard`; default: 1/N of it, so N shards together stay within it).
        retry_errors: also re-send ids whose newest record is an error (`--retry-errors`).
        fresh: move an existing output aside to `<output>.<time>.bak` and start over (`--fresh`).
        progress: the progress bar or lines on stderr (`--no-progress` is `progress=False`).
        show_logs: stream runner logs to stderr (`--show-logs`).
        only: job names (a list or "a,b"): run only those jobs (`--only`).
        limit: only the first N planned requests of each job (`--limit`).
        sample: only N requests of each job, chosen by a seeded hash of their ids (`--sample`);
            `seed` is the sample's seed (`--seed`, default 0).
        debug: tracebacks of internal errors (`--debug`).
        no_cache: neither read nor write the result cache (`--no-cache`); `refresh_cache`: send
            the requests of caching jobs and replace their cached results (`--refresh-cache`).
        on_enqueue: `(request, request_id)` once a queue submit is accepted (and journaled).
        on_queue_update: `(request, status)`: `Queued(position)`, `InProgress(logs)`, `Completed(logs,
            metrics)` (fal-client's shapes; logs with the job's `with_logs` or `show_logs`).
        on_record: `(record)` for each record, once it is written (a dict; do not keep mutating it).
            A callback that raises is reported on stderr and in `callback_errors`; the run goes on
            and no record is lost.

    Returns:
        The RunResult; `exit_code` is what `batchrun run` would exit with.

    Raises:
        SpecError: the spec is invalid (every problem, located).
        UsageError: an option the command line would refuse; a fal target without FAL_KEY; an
            unset ${{ env.X }} the plan uses; the output is locked by another run (OutputInUse).
        SinkError: the output cannot be created or written.
    """
    from batchrun.run import runner

    loaded = load(spec)
    options = _options(locals())
    callbacks = Callbacks(on_enqueue, on_queue_update, on_record)
    finished = runner.run(loaded.spec, list(loaded.warnings), dict(loaded.job_counts), loaded.label, options,
                          callbacks=callbacks, own_thread=_loop_running())
    return _result(finished)


async def run_async(
    spec: SpecSource | LoadedSpec,
    output: str | os.PathLike[str] | None = None,
    *,
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
    on_enqueue: OnEnqueue | None = None,
    on_queue_update: OnQueueUpdate | None = None,
    on_record: OnRecord | None = None,
) -> RunResult:
    """`run` for async code (anyio: asyncio, or trio where the client stack supports it), in the
    caller's event loop; the same keywords and result. The callbacks are called in the loop.

    It installs no signal handler (the program owns its signals): to stop it, cancel the task
    awaiting it. Nothing written is lost, queue requests stay journaled and the next run
    collects them; requests on the wire then get no record and are sent by the next run.
    """
    import anyio.to_thread

    from batchrun.run import runner

    # Validation reads every dataset file: not in the event loop's thread.
    loaded = await anyio.to_thread.run_sync(load, spec)
    options = _options(locals())
    callbacks = Callbacks(on_enqueue, on_queue_update, on_record)
    finished = await runner.run_async(loaded.spec, list(loaded.warnings), dict(loaded.job_counts), loaded.label,
                                      options, callbacks=callbacks)
    return _result(finished)


def _options(given: dict[str, Any]) -> RunOptions:
    names = [f.name for f in dataclasses.fields(RunOptions)]
    return RunOptions.create(**{name: given[name] for name in names})


def _loop_running() -> bool:
    """Whether this thread runs an event loop already (a notebook's): `anyio.run` would refuse
    ("Already running asyncio in this thread"). asyncio is looked up, not imported: without it
    loaded, no loop can be running."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _result(finished: Any) -> RunResult:
    result = finished.result
    s = result.summary
    manifest = _read_manifest(finished.output)
    counts = manifest.get("counts") if manifest is not None else None
    if not isinstance(counts, dict):  # no manifest: this run's view
        counts = {"ok": s.ok, "error": s.failed, "not_run": 0, "expectation_failures": s.expectations_failed}
    return RunResult(
        exit_code=result.exit_code,
        output=finished.output,
        counts=dict(counts),
        sent={"ok": s.ok, "error": s.errors, "skipped": s.skipped},
        interrupted=result.interrupted,
        stopped_by=s.stopped_by,
        gates=list(s.gate_failures),
        cost_usd=round(s.cost_usd, 6) if s.cost_usd or s.cost_unknown else None,
        left_running=result.left_running,
        callback_errors=list(finished.callbacks.errors),
        manifest=manifest,
    )


def _read_manifest(output: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(manifest_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
