"""The executor: a bounded producer -> N workers -> one writer pipeline in one task group.

- The producer walks the lazy plan, skips ids the output already settles (resume), turns ids
  journaled as in flight into re-attachments (never a second submit), and feeds a stream whose
  buffer is the worker count: memory stays bounded whatever the plan size.
- Each worker takes the job's slot and a global slot (batchrun.run.limits, AIMD on 429), calls the
  client and sends the record to the writer. A failed request is a record, never an exception:
  the client maps every failure it knows, and an unexpected exception while handling one request
  (a bug) becomes that request's `internal_error` record too, so one bad answer cannot stop a
  night's run. The traceback is shown only with --debug or BATCHRUN_DEBUG=1, redacted.
- The writer is the only task touching the output: it appends and flushes each line, settles the
  journal entry, and updates progress and the summary.

How the run stops (Ctrl-C or SIGTERM; a gate or the budget) and what that does to the requests
the workers are on: batchrun.run.stopping.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from batchrun.client.fal import FalClient, Outcome, QueueHandle
from batchrun.errors import BatchrunError
from batchrun.output.journal import InFlight, Journal
from batchrun.output.records import build_record
from batchrun.output.resume import ResumeState
from batchrun.output.sink import JsonlSink
from batchrun.output.summary import RunSummary
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import Redactor
from batchrun.run.caching import RunCache
from batchrun.run.callbacks import Callbacks, Completed, InProgress, Queued
from batchrun.run.inflight import (
    Active,
    Item,
    Retry,
    internal_error_outcome,
    parse_iso,
    queue_handle,
    redacted_handle,
    stopped_retry_outcome,
    unfollowable_outcome,
    unknown_outcome,
)
from batchrun.run.limits import Limits
from batchrun.run.progress import Progress
from batchrun.run.settled import SettledJob
from batchrun.run.stopping import Interrupts, Stop
from batchrun.toolkit.hooks import Toolkit

__all__ = ["Executor", "RunResult"]

REMOTE_CANCEL_S = 1.5  # bound on cancelling journaled requests after a second Ctrl-C
SHOWN_INTERNAL_ERRORS = 3  # internal errors told on stderr one by one (all are records)


@dataclasses.dataclass(slots=True)
class RunResult:
    summary: RunSummary
    interrupted: bool
    left_running: int
    not_in_plan: int
    stop_signal: int = signal.SIGINT  # the signal that interrupted the run (the exit code says which)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 128 + self.stop_signal
        s = self.summary
        return 1 if s.failed or s.expectations_failed or s.stopped_by or s.gate_failures else 0


class _Events:
    """The client's hooks for one request: journal, progress, logs, AIMD."""

    def __init__(self, executor: Executor, active: Active) -> None:
        self._x = executor
        self._active = active
        self.logs: list[dict[str, Any]] | None = None  # for on_queue_update's InProgress(logs)
        self.completed = False  # the queue said COMPLETED: on_queue_update gets Completed with the outcome

    def _update(self, request: PlannedRequest, status: Queued | InProgress) -> None:
        x = self._x
        if x.callbacks.on_queue_update is not None:
            x.callbacks.call("on_queue_update", request.id, x.progress.message, x.redactor.text, request, status)

    async def submitted(self, request: PlannedRequest, handle: QueueHandle) -> None:
        self._x.journal.submitted(
            id=request.id, job=request.job.name, request_id=handle.request_id,
            status_url=handle.status_url, response_url=handle.response_url, cancel_url=handle.cancel_url,
        )
        self._active.journaled = True
        self._x.progress.set_state(request.id, "queued")
        if self._x.callbacks.on_enqueue is not None:
            self._x.callbacks.call("on_enqueue", request.id, self._x.progress.message, self._x.redactor.text,
                                   request, handle.request_id)
        if self._x.stop.stopping:
            # Interrupted while this submit was on the wire: it is journaled now, stop waiting.
            self._active.scope.cancel()

    def status(self, request: PlannedRequest, status: str, queue_position: int | None) -> None:
        self._x.progress.set_state(request.id, "queued" if status == "IN_QUEUE" else "running")
        if status == "IN_QUEUE":
            self._update(request, Queued(queue_position))
        elif status == "IN_PROGRESS":
            self._update(request, InProgress(None if self.logs is None else list(self.logs)))
        else:
            self.completed = True

    def log(self, request: PlannedRequest, entry: dict[str, Any]) -> None:
        if self.logs is None:
            self.logs = []
        self.logs.append(entry)
        if not self.completed:  # COMPLETED's own lines come with Completed(logs)
            self._update(request, InProgress(list(self.logs)))
        if self._x.show_logs:
            message = str(entry.get("message", ""))
            level = entry.get("level")
            prefix = f"[{request.job.name} {request.id}]" + (f" {level}" if level else "")
            self._x.progress.message(self._x.redactor.text(f"{prefix} {message}"))

    def retrying(self, request: PlannedRequest, attempt: int, delay: float, reason: str, *,
                 rate_limited: bool) -> None:
        self._x.progress.set_state(request.id, "retrying")
        until = time.monotonic() + delay
        self._active.retry = Retry(attempt, reason, until)
        if not self._active.journaled:
            self._active.backoff_until = until
        if rate_limited and self._active.slot is not None:
            # The request sleeps holding its slot (why: batchrun.run.limits); AIMD halves the limit.
            self._active.slot.rate_limited(delay)
            self._x.progress.effective = self._x.limits.effective
        if self._x.stop.over:
            self._x.stop.stop_retry(self._active)  # its sleep is cancelled before it starts


@dataclasses.dataclass(slots=True)
class _Unenriched:
    """A record still to pass the toolkit (expectations, downloads, cost), left by a request whose
    lane a stop cancelled (Executor._work)."""

    request: PlannedRequest
    record: dict[str, Any]
    started_wall: float
    t0: float


class Executor:
    """One run: wire it up, then `await execute(plan)`. See the module docstring."""

    def __init__(
        self,
        *,
        client: FalClient,
        sink: JsonlSink,
        journal: Journal,
        resume: ResumeState,
        limits: Limits,
        progress: Progress,
        summary: RunSummary,
        redactor: Redactor,
        workers: int,
        retry_errors: bool = False,
        show_logs: bool = False,
        record_logs: set[str] | None = None,
        handle_signals: bool = True,
        toolkit: Toolkit | None = None,
        debug: bool = False,
        callbacks: Callbacks | None = None,
        interrupts: Interrupts | None = None,
        cache: RunCache | None = None,
    ) -> None:
        self.client = client
        self.sink = sink
        self.journal = journal
        self.resume = resume
        self.limits = limits
        self.progress = progress
        self.summary = summary
        self.redactor = redactor
        self.workers = workers
        self.retry_errors = retry_errors
        self.show_logs = show_logs
        self.record_logs = record_logs  # job names whose records keep logs (None: each job's with_logs)
        self.handle_signals = handle_signals and threading.current_thread() is threading.main_thread()
        self.toolkit = toolkit  # expectations, artifacts, cost, budget and gates (batchrun.toolkit.hooks)
        self.debug = debug  # show the traceback of an internal error (redacted)
        self.callbacks = callbacks if callbacks is not None else Callbacks()  # the Python API's (run.callbacks)
        self.interrupts = interrupts  # stop requests from outside the loop's thread (run.stopping.Interrupts)
        self.cache = cache if cache is not None and cache.enabled else None  # batchrun.run.caching
        self.internal_errors = 0
        self.stop = Stop(progress, journal)  # interrupts and halts (batchrun.run.stopping)
        self._attach_ids: set[str] = set()

    # ---- the plan side ------------------------------------------------------------------------

    def _items(self, plan: Iterable[PlannedRequest], settled: Sequence[SettledJob] = ()) -> Iterator[Item]:
        in_flight = self.journal.in_flight
        intents = dict(self.journal.intents)  # open intents left by an earlier run
        pending = collections.deque(settled)
        for request in plan:
            while pending and pending[0].start <= request.index:
                self._skip_settled(pending.popleft())
            journaled = in_flight.get(request.id)
            if journaled is not None:
                self._attach_ids.add(request.id)
                yield Item(request, journaled)
            elif self.resume.skip(request.id, retry_errors=self.retry_errors):
                self.summary.skip(request.job.name, ok=self.resume.newest_ok[request.id])
                if self.toolkit is not None:
                    self.toolkit.skipped(request)
                if request.id in intents:
                    self.journal.done(request.id, None)  # died after its record, before its "done"
            elif request.id in intents and not request.job.retries.unknown_outcome:
                # Its submit may have been accepted: submitting again could pay twice.
                yield Item(request, None, intents[request.id])
            else:
                yield Item(request, None)
        while pending:
            self._skip_settled(pending.popleft())

    def _skip_settled(self, job: SettledJob) -> None:
        """The per-request skip above, for a job's settled requests at once."""
        if job.skipped > job.skipped_errors:
            self.summary.skip(job.name, ok=True, count=job.skipped - job.skipped_errors)
        if job.skipped_errors:
            self.summary.skip(job.name, ok=False, count=job.skipped_errors)
        if self.toolkit is not None and job.expect_failed:
            self.toolkit.skipped_expectation_failures(job.name, job.expect_failed)
        for id in job.intents:
            self.journal.done(id, None)  # died after its record, before its "done"

    async def _produce(self, plan: Iterable[PlannedRequest], items: MemoryObjectSendStream[Item],
                       settled: Sequence[SettledJob] = ()) -> None:
        async with items:
            with self.stop.producer:
                for item in self._items(plan, settled):
                    try:  # room in the buffer: no turn of the event loop per planned request
                        items.send_nowait(item)
                    except anyio.WouldBlock:
                        await items.send(item)

    # ---- workers ------------------------------------------------------------------------------

    async def _work(self, items: MemoryObjectReceiveStream[Item],
                    results: MemoryObjectSendStream[dict[str, Any]]) -> None:
        async with items, results:
            left: dict[str, Any] | _Unenriched | None = None
            more = True
            while more:
                more = False
                # One cancel scope (a lane) for the requests this worker takes in turn, not one per
                # request (entering and leaving one is ~4.5 us of a ~170 us request). A stop cancels
                # the request a worker is on through it (Active.scope); the lane then ends as soon
                # as that request does, and what the request left to send goes out in a new lane,
                # where nothing can be cancelled by that stop.
                with anyio.CancelScope() as lane:
                    if left is not None:
                        await self._deliver(left, results)
                        left = None
                    async for item in items:
                        if self.stop.over:
                            continue  # drain what the producer had already queued, without sending it
                        done = await self._one(item, lane)
                        if lane.cancel_called:
                            left, more = done, True
                            break
                        if done is not None:
                            await self._deliver(done, results)
                more = more or lane.cancelled_caught

    async def _deliver(self, done: dict[str, Any] | _Unenriched,
                       results: MemoryObjectSendStream[dict[str, Any]]) -> None:
        if isinstance(done, _Unenriched):
            record = await self._enrich(done.request, done.record, done.started_wall, done.t0)
        else:
            record = done
        try:  # the writer usually has room: no extra turn of the event loop
            results.send_nowait(record)
        except anyio.WouldBlock:
            await results.send(record)

    async def _one(self, item: Item, lane: anyio.CancelScope) -> dict[str, Any] | _Unenriched | None:
        """`item`'s record (None: interrupted, or not sent; `_Unenriched`: its toolkit part is still
        to do, in the worker's next lane). The safety net is here: anything but
        a run-level BatchrunError (the journal cannot be written) or a cancellation becomes this
        request's error record, and the other requests go on."""
        started_wall = time.time()
        t0 = time.monotonic()
        if item.handle is not None:
            # The request started when it was submitted by the earlier run.
            started_wall = parse_iso(item.handle.at, default=started_wall)
            t0 -= max(0.0, time.time() - started_wall)
        try:
            record = await self._attempt(item, lane, started_wall, t0)
        except BatchrunError:
            raise
        except Exception as exc:  # noqa: BLE001 - the per-request safety net (see above)
            return self._internal_error(item.request, exc, started_wall, t0)
        if record is None or self.toolkit is None:
            return record
        if lane.cancel_called:
            # Awaiting in the cancelled lane would be cancelled too: the worker's next lane does it.
            return _Unenriched(item.request, record, started_wall, t0)
        return await self._enrich(item.request, record, started_wall, t0)

    async def _enrich(self, request: PlannedRequest, record: dict[str, Any], started_wall: float,
                      t0: float) -> dict[str, Any]:
        """`record` with the toolkit's part (expectations, downloads, cost), under the same safety
        net as `_one`'s."""
        assert self.toolkit is not None
        try:
            await self.toolkit.enrich(request, record)
        except BatchrunError:
            raise
        except Exception as exc:  # noqa: BLE001 - the per-request safety net (see _one)
            return self._internal_error(request, exc, started_wall, t0)
        return record

    def _internal_error(self, request: PlannedRequest, exc: Exception, started_wall: float,
                        t0: float) -> dict[str, Any]:
        leaf = _lone(exc)
        what = self.redactor.text(f"{type(leaf).__name__}: {leaf}")[:500]
        self.internal_errors += 1
        if self.debug:
            self.progress.message(self.redactor.text("".join(traceback.format_exception(exc))).rstrip())
        if self.debug or self.internal_errors <= SHOWN_INTERNAL_ERRORS:
            self.progress.message(
                f"batchrun: internal error on request {request.id} (job {request.job.name}): {what}; "
                "recorded as its error (internal_error) and the run goes on. This is a bug in batchrun: "
                "please report it" + ("" if self.debug else " (--debug or BATCHRUN_DEBUG=1 shows the traceback)"))
        # A queue request it had submitted is settled by this record (its journal entry is done).
        outcome = internal_error_outcome(what, self._journaled_request_id(request))
        return build_record(request, outcome, started_at=started_wall, finished_at=time.time(),
                            latency_s=time.monotonic() - t0, scrub=self.redactor.scrub, keep_logs=False)

    async def _attempt(self, item: Item, lane: anyio.CancelScope, started_wall: float,
                       t0: float) -> dict[str, Any] | None:
        """`item`'s record before the toolkit's part (None: interrupted, or not sent)."""
        request = item.request
        if self.cache is not None and item.handle is None and item.unknown_since is None and not self.stop.halted:
            # Before the slot: a hit sends nothing, so it takes no concurrency, rate or budget.
            hit = await self._from_cache(request, started_wall, t0)
            if hit is not None:
                return hit
        active = Active(request=request, scope=lane, journaled=item.handle is not None)
        key = id(active)
        self.stop.active[key] = active
        outcome: Outcome | None = None
        events: _Events | None = None
        try:
            async with self.limits.slot(request.job) as slot:
                active.slot = slot
                self.progress.set_state(request.id, "sending")
                events = _Events(self, active)
                if item.unknown_since is not None:
                    outcome = unknown_outcome(item.unknown_since)
                elif item.handle is not None and redacted_handle(item.handle):
                    outcome = unfollowable_outcome(item.handle)
                elif item.handle is not None:
                    outcome = await self.client.reattach(request, queue_handle(item.handle), events)
                elif self.stop.halted or (self.toolkit is not None and self._refused(request)):
                    pass  # not sent: no record, the next run sends it
                else:
                    if request.mode == "subscribe":
                        # Write-ahead: should we die before the submit answers, the next run
                        # knows this request may be running remotely (see batchrun.output.journal).
                        self.journal.sending(request.id, request.job.name)
                    active.sent = True
                    outcome = await self.client.call(request, events)
                if outcome is not None and outcome.ok:
                    slot.succeeded()
        except anyio.get_cancelled_exc_class():
            if not lane.cancel_called:
                raise  # not a stop of this request: the run itself is being cancelled
            # A stop cut this request short (stopping.py): what follows decides its record.
        finally:
            del self.stop.active[key]
            self.progress.clear(request.id)
        if outcome is None and active.retry_stopped:
            assert active.retry is not None
            # A journaled id here: a resubmit after a failed queue result.
            outcome = stopped_retry_outcome(active.retry, self.stop.halt_reason, self._journaled_request_id(request))
        if outcome is None:
            self._unrecorded(active)
            return None  # interrupted: no record (a journaled queue request stays in flight)
        return self._record(item, outcome, events, started_wall, t0)

    async def _from_cache(self, request: PlannedRequest, started_wall: float, t0: float) -> dict[str, Any] | None:
        """The record of a result cache hit (batchrun.run.caching), or None to send the request."""
        assert self.cache is not None
        entry = await self.cache.lookup(request)
        if entry is None:
            return None
        return self.cache.hit_record(request, entry, started_at=started_wall, t0=t0, scrub=self.redactor.scrub,
                                     keep_logs=self._keep_logs(request))

    def _unrecorded(self, active: Active) -> None:
        """What a request that a stop left without a record leaves behind for the next run and the summary."""
        request = active.request
        if request.mode == "subscribe" and not active.journaled and (
            active.backoff_until is not None and time.monotonic() < active.backoff_until
        ):
            # Stopped while sleeping between submit attempts: nothing of it is on the wire, so
            # the next run may submit it (an open intent would make it outcome_unknown).
            self.journal.unsent(request.id)
        elif active.sent and request.mode == "run":
            self.summary.cut_direct += 1
        elif active.sent and request.id not in self.journal.in_flight:
            self.summary.cut_submits += 1

    def _record(self, item: Item, outcome: Outcome, events: _Events | None, started_wall: float,
                t0: float) -> dict[str, Any]:
        request = item.request
        if item.unknown_since is not None:
            self.journal.unknown(request.id)
        if self.callbacks.on_queue_update is not None and events is not None and events.completed:
            self.callbacks.call("on_queue_update", request.id, self.progress.message, self.redactor.text, request,
                                Completed(outcome.logs, dict(outcome.metrics or {})))
        return build_record(request, outcome, started_at=started_wall, finished_at=time.time(),
                            latency_s=time.monotonic() - t0, scrub=self.redactor.scrub,
                            keep_logs=self._keep_logs(request))

    def _keep_logs(self, request: PlannedRequest) -> bool | None:
        """Whether `request`'s record keeps its logs (None: its job's with_logs)."""
        return None if self.record_logs is None else request.job.name in self.record_logs

    def _journaled_request_id(self, request: PlannedRequest) -> str | None:
        entry = self.journal.in_flight.get(request.id)
        return entry.request_id if entry is not None else None

    def _refused(self, request: PlannedRequest) -> bool:
        assert self.toolkit is not None
        refused = self.toolkit.admit(request)
        if refused is not None:
            self.stop.halt(refused)
        return refused is not None

    # ---- the writer ---------------------------------------------------------------------------

    async def _write(self, results: MemoryObjectReceiveStream[dict[str, Any]]) -> None:
        newest_ok = self.resume.newest_ok
        async with results:
            async for first in results:
                batch = list(_ready(first, results))
                self.sink.write_many(batch)  # each record below is in the output before its journal "done"
                for record in batch:
                    if self.cache is not None:
                        self.cache.store(record)  # after the write: the output has it whatever the cache does
                    if record["mode"] == "subscribe":
                        self.journal.done(record["id"], record["request_id"])
                    self.progress.advance(record["status"] == "ok")
                    self.progress.effective = self.limits.effective
                    self.summary.add(record)
                    if newest_ok and newest_ok.get(record["id"]) is False:
                        self.summary.replaced_errors += 1  # an earlier error record, sent again
                    if self.toolkit is not None and (breach := self.toolkit.observe(record)) is not None:
                        self.stop.halt(breach)
                    if self.callbacks.on_record is not None:  # last: the record is written and counted
                        self.callbacks.call("on_record", record["id"], self.progress.message, self.redactor.text,
                                            record)

    async def _tick(self) -> None:
        while True:
            await anyio.sleep(0.5)
            self.progress.effective = self.limits.effective
            self.progress.tick()

    # ---- the run ------------------------------------------------------------------------------

    async def execute(self, plan: Iterable[PlannedRequest], settled: Sequence[SettledJob] = ()) -> RunResult:
        """Run `plan`. `settled`: requests a resume's counting walk found settled and left out of
        `plan` (see SettledJob); without it, the walk finds them itself."""
        try:
            return await self._execute(plan, settled)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None

    async def _execute(self, plan: Iterable[PlannedRequest], settled: Sequence[SettledJob] = ()) -> RunResult:
        if self.toolkit is not None and settled:
            # Gates over what earlier runs wrote, before anything is sent (batchrun.toolkit.gates).
            breach = self.toolkit.before_sending(
                failed=sum(j.skipped_errors for j in settled),
                expectation_failures=sum(j.expect_failed for j in settled),
                finished=sum(j.skipped for j in settled))
            if breach is not None:
                self.stop.halt_before_start(breach)
        items_tx, items_rx = anyio.create_memory_object_stream[Item](self.workers)
        results_tx, results_rx = anyio.create_memory_object_stream[dict[str, Any]](self.workers)
        async with anyio.create_task_group() as outer:
            if self.handle_signals:
                outer.start_soon(self.stop.watch_signals, outer)
            if self.interrupts is not None:
                self.interrupts.attach(self.stop, outer)
            outer.start_soon(self._tick)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write, results_rx)
                async with items_rx, results_tx:
                    for _ in range(self.workers):
                        tg.start_soon(self._work, items_rx.clone(), results_tx.clone())
                tg.start_soon(self._produce, plan, items_tx, settled)
            outer.cancel_scope.cancel()
        if self.interrupts is not None:
            self.interrupts.detach()
        if self.stop.cancel_remote:
            await self._cancel_in_flight()
        left = len(self.journal.in_flight)
        # Only a run that walked the whole plan knows which journaled ids it does not contain.
        walked = not self.stop.over
        not_in_plan = sum(1 for i in self.journal.in_flight if i not in self._attach_ids) if walked else 0
        self.summary.interrupted = self.stop.stopping
        if self.toolkit is not None:
            self.toolkit.finish()
        self.summary.left_running = left
        return RunResult(self.summary, self.stop.stopping, left, not_in_plan, self.stop.signal)

    async def _cancel_in_flight(self) -> None:
        entries = list(self.journal.in_flight.values())

        async def cancel(entry: InFlight) -> None:
            if await self.client.cancel(queue_handle(entry)):
                self.journal.cancelled(entry.id, entry.request_id)
                self.summary.cancelled_remote += 1

        with anyio.move_on_after(REMOTE_CANCEL_S, shield=True):
            async with anyio.create_task_group() as tg:
                for entry in entries:
                    tg.start_soon(cancel, entry)


def _ready(first: dict[str, Any], results: MemoryObjectReceiveStream[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """`first`, then every record already waiting: one turn of the event loop (and one write of the
    output) per batch, not per record."""
    yield first
    while True:
        try:
            yield results.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream):
            return


def _unwrap(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception the CLI should see: a BatchrunError (an unwritable output) before anything
    else, then KeyboardInterrupt; a lone exception as itself; else the group."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (BatchrunError, KeyboardInterrupt):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return leaves[0] if len(leaves) == 1 else group


def _lone(exc: BaseException) -> BaseException:
    """The one exception inside nested single-exception groups (a task group's way of raising)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
