"""`batchrun report`: statistics of one output file, per job and overall, and their renderings.

Reading streams the file and keeps a small summary per id (the newest record of an id wins, so
a resumed run counts each request once). Definitions, so numbers can be compared across runs:

- latency percentiles use the nearest-rank method over *successful* requests (a timeout's latency
  says how long we waited, not how long the model took); `max` likewise;
- queue time percentiles cover requests that went through the queue (queue_s not null);
- throughput is requests / (last finished_at - first started_at);
- attempts counts every HTTP attempt; a request is "retried" when it needed more than one.

With the run's manifest (`OUT.manifest.json`) or `--spec`, the numbers cover the planned ids
(records of ids the plan no longer has are listed apart), and the report says how many planned
requests never ran and what stopped the run (`batchrun.report.plan_status`). Listed ids carry a label of
what the request is (`records_io.request_label`): its matrix values or dataset row.

`verdict` is the one-line PASS/FAIL that every rendering starts with. Renderings over `Report` live
in their own modules: text, markdown and json in `report_text`, HTML in `report_html`, JUnit XML
in `report_junit`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from batchrun.output.reading import (
    Newest,
    failed_checks,
    finished_at,
    iter_located,
    one_line,
    parse_time,
    record_label,
    seconds,
    seekable,
)
from batchrun.output.summary import percentile
from batchrun.report.plan_status import (
    PlannedId,
    PlanStatus,
    RunOutcome,
    SpecPlan,
    manifest_plan,
    match_plan,
    read_manifest,
    run_outcome,
)

MAX_LISTED = 20  # rows of expectation failures shown in text/markdown (json has them all)


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """Numbers for one job, or for the whole file. Times in seconds; None when there is no data."""

    requests: int
    ok: int
    error: int
    errors_by_type: dict[str, int]
    expectation_failed_requests: int
    expectation_failed_checks: int
    latency_p50: float | None
    latency_p95: float | None
    latency_max: float | None
    queue_p50: float | None
    queue_p95: float | None
    attempts: int
    retried_requests: int
    rerouted: int  # requests fal served from a fallback endpoint (records' rerouted_to)
    duration_s: float | None
    throughput_rps: float | None
    cost_usd: float | None

    @property
    def error_rate(self) -> float:
        return self.error / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "error": self.error,
            "error_rate": round(self.error_rate, 6),
            "errors_by_type": self.errors_by_type,
            "expectation_failures": {
                "requests": self.expectation_failed_requests,
                "checks": self.expectation_failed_checks,
            },
            "latency_s": {"p50": self.latency_p50, "p95": self.latency_p95, "max": self.latency_max},
            "queue_s": {"p50": self.queue_p50, "p95": self.queue_p95},
            "attempts": {"total": self.attempts, "retried_requests": self.retried_requests},
            "rerouted": self.rerouted,
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "cost_usd": self.cost_usd,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorGroup:
    job: str
    type: str
    count: int
    example: str  # the first such error's detail, one line
    example_id: str = ""  # the request it came from
    example_request: str = ""  # its label (`records_io.request_label`)


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectationFailure:
    job: str
    id: str
    message: str
    request: str = ""  # the request's label


@dataclasses.dataclass(frozen=True, slots=True)
class FailedRequest:
    job: str
    id: str
    request: str  # the request's label
    error: str  # `type: detail`, one line


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    file: str
    lines: int  # records read; more than ids when a resumed run superseded some
    ids: int  # distinct ids in the file (planned or not)
    overall: Stats  # the planned ids' newest records (every id's, when the plan is unknown)
    jobs: dict[str, Stats]  # in plan order (by each job's first index)
    errors: list[ErrorGroup]
    expectation_failures: list[ExpectationFailure]  # in plan order
    failed_requests: list[FailedRequest]  # in plan order
    plan: PlanStatus | None = None  # from --spec or the manifest
    run: RunOutcome | None = None  # from the manifest
    # With build_report(keep_requests=True) only (JUnit): every counted id's entry, every planned id
    # without a record.
    requests: list[RequestEntry] = dataclasses.field(default_factory=list)
    never_ran: list[PlannedId] = dataclasses.field(default_factory=list)

    @property
    def superseded(self) -> int:
        """Records replaced by a newer record of the same id (a resumed run retried them)."""
        return self.lines - self.ids

    def superseded_note(self) -> str:
        """`7 records, 1 superseded by newer ones` for the renderings; "" when nothing was superseded."""
        return f"{self.lines} records, {self.superseded} superseded by newer ones" if self.superseded else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "verdict": verdict(self),
            "records": self.lines,
            "superseded": self.superseded,
            "plan": self.plan.to_json() if self.plan is not None else None,
            "run": self.run.to_json() if self.run is not None else None,
            "overall": self.overall.to_json(),
            "jobs": {name: stats.to_json() for name, stats in self.jobs.items()},
            "errors": [dataclasses.asdict(group) for group in self.errors],
            "failed_requests": [dataclasses.asdict(f) for f in self.failed_requests],
            "expectation_failures": [dataclasses.asdict(f) for f in self.expectation_failures],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RequestEntry:
    """What the report needs of one record; far smaller than the record (results can be big)."""

    id: str
    index: int
    job: str
    ok: bool
    error_type: str | None
    error_example: str  # the error's detail on one line ("" when ok): bounded, unlike the detail
    failed_checks: tuple[str, ...]
    label: str  # `records_io.request_label`, kept only for failed requests (the ones listed)
    latency_s: float | None
    queue_s: float | None
    attempts: int
    rerouted: bool
    started: datetime | None
    finished: datetime | None
    cost_usd: float | None


def build_report(path: str | Path, *, spec: SpecPlan | None = None, keep_requests: bool = False) -> Report:
    """Read one output file (and its manifest, when there is one) and compute its report.

    Args:
        spec: count against this spec's plan as it is now, rather than the manifest's.
        keep_requests: keep every id's entry (labelled) and every planned id that never ran in the
            report, for renderers that list every request (JUnit).

    Raises:
        RecordsError: the file cannot be read, or has a damaged line (see `batchrun.output.reading`).
        SpecError: `spec`'s spec is invalid.
    """
    path = Path(path)
    manifest = read_manifest(path)
    run = run_outcome(path, manifest) if manifest is not None else None
    with seekable(path) as local:  # a pipe is copied: ids the plan lacks are labelled in a second pass
        lines = 0
        newest: Newest[RequestEntry] = Newest()
        shared: dict[str, str] = {}  # one str object per job name / error type, not one per record
        for located in iter_located(local, str(path)):
            lines += 1
            # Only the small entry outlives this loop turn: results, logs and arguments are dropped now.
            entry = _entry(located.record, shared, label_all=keep_requests)
            newest.offer(entry.id, entry.finished, entry)
        never_ran: list[PlannedId] | None = [] if keep_requests else None
        plan, planned = _plan(path, local, spec, manifest, run, newest.values, never_ran)
    entries = sorted(newest.values.values(), key=lambda e: (e.index, e.id))
    if planned is not None:
        entries = [e for e in entries if e.id in planned]
    jobs: dict[str, list[RequestEntry]] = {}
    for entry in entries:
        jobs.setdefault(entry.job, []).append(entry)
    return Report(
        file=str(path),
        lines=lines,
        ids=len(newest.values),
        overall=_stats(entries),
        jobs={name: _stats(group) for name, group in jobs.items()},
        errors=_error_groups(entries),
        expectation_failures=[
            ExpectationFailure(e.job, e.id, message, e.label) for e in entries for message in e.failed_checks
        ],
        failed_requests=[
            FailedRequest(e.job, e.id, e.label, f"{e.error_type or 'unknown'}: {e.error_example}".rstrip(": "))
            for e in entries if not e.ok
        ],
        plan=plan,
        run=run,
        requests=entries if keep_requests else [],
        never_ran=never_ran or [],
    )


def _plan(path: Path, local: Path, spec: SpecPlan | None, manifest: dict[str, Any] | None,
          run: RunOutcome | None, present: dict[str, RequestEntry],
          never_ran: list[PlannedId] | None) -> tuple[PlanStatus | None, set[str] | None]:
    """The plan's status and the planned ids present (None: every id counts)."""
    def describe(rids: list[str]) -> list[PlannedId]:
        # One more pass over the file, only when some ids are not planned (the spec changed).
        labels = _labels(local, str(path), set(rids))
        return [PlannedId(rid, present[rid].job, labels.get(rid, "")) for rid in rids]

    if spec is not None:
        return match_plan(spec.source, None, spec.ids(run.shard if run else None), present, describe, never_ran)
    if manifest is None:
        return None, None
    found = manifest_plan(path, manifest)
    if found is None:
        return None, None
    source = run.manifest if run is not None else str(path)
    return match_plan(source, found[0], found[1], present, describe, never_ran)


def _labels(local: Path, name: str, ids: set[str]) -> dict[str, str]:
    """The labels of a few ids, read again from the file."""
    return {r.record["id"]: record_label(r.record) for r in iter_located(local, name) if r.record["id"] in ids}


def _entry(record: dict[str, Any], shared: dict[str, str], *, label_all: bool = False) -> RequestEntry:
    timing = record.get("timing") or {}
    ok = record["status"] == "ok"
    error = record.get("error") if isinstance(record.get("error"), dict) else None
    failed = tuple(failed_checks(record))
    attempts = record.get("attempts")
    error_type = str(error.get("type") or "unknown") if error else None
    return RequestEntry(
        id=record["id"],
        index=record["index"],
        job=shared.setdefault(record["job"], record["job"]),
        ok=ok,
        error_type=shared.setdefault(error_type, error_type) if error_type is not None else None,
        # Only a failed request's error is ever shown (as its group's example).
        error_example="" if ok else one_line(error.get("detail") if error else None),
        failed_checks=failed,
        label=record_label(record) if failed or not ok or label_all else "",
        latency_s=seconds(timing.get("latency_s")),
        queue_s=seconds(timing.get("queue_s")),
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
        rerouted=bool(record.get("rerouted_to")),
        started=parse_time(timing.get("started_at")),
        finished=finished_at(record),
        cost_usd=seconds(record.get("cost_usd")),
    )



def _stats(entries: list[RequestEntry]) -> Stats:
    latencies = sorted(e.latency_s for e in entries if e.ok and e.latency_s is not None)
    queues = sorted(e.queue_s for e in entries if e.queue_s is not None)
    starts = [e.started for e in entries if e.started is not None]
    ends = [e.finished for e in entries if e.finished is not None]
    duration = (max(ends) - min(starts)).total_seconds() if starts and ends else None
    costs = [e.cost_usd for e in entries if e.cost_usd is not None]
    errors = Counter(e.error_type or "unknown" for e in entries if not e.ok)
    return Stats(
        requests=len(entries),
        ok=sum(e.ok for e in entries),
        error=sum(not e.ok for e in entries),
        errors_by_type=dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        expectation_failed_requests=sum(bool(e.failed_checks) for e in entries),
        expectation_failed_checks=sum(len(e.failed_checks) for e in entries),
        latency_p50=_percentile(latencies, 50),
        latency_p95=_percentile(latencies, 95),
        latency_max=latencies[-1] if latencies else None,
        queue_p50=_percentile(queues, 50),
        queue_p95=_percentile(queues, 95),
        attempts=sum(e.attempts for e in entries),
        retried_requests=sum(e.attempts > 1 for e in entries),
        rerouted=sum(e.rerouted for e in entries),
        duration_s=round(duration, 6) if duration is not None else None,
        throughput_rps=round(len(entries) / duration, 6) if duration else None,
        cost_usd=round(sum(costs), 6) if costs else None,
    )


def _percentile(ordered: list[float], pct: int) -> float | None:
    """Nearest rank, as in the run summary; None (not 0.0) when there are no values."""
    return percentile(ordered, pct) if ordered else None


def _error_groups(entries: list[RequestEntry]) -> list[ErrorGroup]:
    groups: dict[tuple[str, str], list[RequestEntry]] = {}
    for entry in entries:
        if not entry.ok:
            groups.setdefault((entry.job, entry.error_type or "unknown"), []).append(entry)
    return [
        ErrorGroup(job, kind, len(members), members[0].error_example, members[0].id, members[0].label)
        for (job, kind), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1]))
    ]


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def verdict(report: Report) -> str:
    """One line: `PASS: 120/120 ok`, or `FAIL: ` and what failed; then, in parentheses, what stopped
    the run and a smoke run's `--only`/`--limit` (`RunOutcome.notes`). While a run still writes the
    output: `RUNNING: 40/120 finished so far, 39 ok, 1 error`."""
    stats, plan, run = report.overall, report.plan, report.run
    if run is not None and run.running:  # nothing is final yet: say how far it got, not PASS or FAIL
        so_far = [f"{stats.ok} ok"] + ([plural(stats.error, "error")] if stats.error else [])
        if stats.expectation_failed_requests:
            so_far.append(plural(stats.expectation_failed_requests, "expectation failure"))
        total = plan.planned if plan is not None else None
        done = f"{stats.requests}/{total}" if total is not None else str(stats.requests)
        why = f" (run with {run.selection})" if run.selection else ""
        return f"RUNNING: {done} finished so far, {', '.join(so_far)}{why}"
    problems = []
    if stats.error:
        problems.append(plural(stats.error, "error"))
    if stats.expectation_failed_requests:
        problems.append(plural(stats.expectation_failed_requests, "expectation failure"))
    if plan is not None and plan.never_ran:
        problems.append(f"{plural(plan.never_ran, 'planned request')} never ran")
    reason = run.stop_reason if run is not None else None
    if run is not None:  # gates breached at the end (p95 latency) stopped nothing but failed the run
        problems += [f"{gate.split(':', 1)[0]} failed" for gate in run.gates if gate != run.stopped_by]
        if not problems and reason is None and run.exit_code:
            problems.append(f"the run exited {run.exit_code}")
    total = plan.planned if plan is not None else stats.requests
    notes = "; ".join(run.notes()) if run is not None else ""
    why = f" ({notes})" if notes else ""
    if not total and not problems:
        return f"FAIL: no records{why}"
    if problems or reason:
        return f"FAIL: {', '.join(problems) or f'{stats.ok}/{total} ok'}{why}"
    return f"PASS: {stats.ok}/{total} ok{why}"
