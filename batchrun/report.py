"""`batchrun report`: statistics of one output file, per job and overall, and their renderings.

Reading streams the file and keeps a small summary per id (the newest record of an id wins, so
a resumed run counts each request once). Definitions, so numbers can be compared across runs:

- latency percentiles use the nearest-rank method over *successful* requests (a timeout's latency
  says how long we waited, not how long the model took); `max` likewise;
- queue time percentiles cover requests that went through the queue (queue_s not null);
- throughput is requests / (last finished_at - first started_at);
- attempts counts every HTTP attempt; a request is "retried" when it needed more than one.

Renderings: `text` for terminals, `markdown` for $GITHUB_STEP_SUMMARY (used as it is), `json`.
An HTML report would be one more renderer over `Report` in its own module.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from batchrun.records_io import Newest, failed_checks, finished_at, iter_records, parse_time
from batchrun.summary import percentile

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


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectationFailure:
    job: str
    id: str
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Report:
    file: str
    lines: int  # records read; more than requests when a resumed run superseded some
    overall: Stats
    jobs: dict[str, Stats]  # in plan order (by each job's first index)
    errors: list[ErrorGroup]
    expectation_failures: list[ExpectationFailure]  # in plan order

    @property
    def superseded(self) -> int:
        """Records replaced by a newer record of the same id (a resumed run retried them)."""
        return self.lines - self.overall.requests

    def superseded_note(self) -> str:
        """`7 records, 1 superseded by newer ones` for the renderings; "" when nothing was superseded."""
        return f"{self.lines} records, {self.superseded} superseded by newer ones" if self.superseded else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "records": self.lines,
            "superseded": self.superseded,
            "overall": self.overall.to_json(),
            "jobs": {name: stats.to_json() for name, stats in self.jobs.items()},
            "errors": [dataclasses.asdict(group) for group in self.errors],
            "expectation_failures": [dataclasses.asdict(f) for f in self.expectation_failures],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class _Entry:
    """What the report needs of one record; far smaller than the record (results can be big)."""

    id: str
    index: int
    job: str
    ok: bool
    error_type: str | None
    error_example: str  # the error's detail on one line ("" when ok): bounded, unlike the detail
    failed_checks: tuple[str, ...]
    latency_s: float | None
    queue_s: float | None
    attempts: int
    started: datetime | None
    finished: datetime | None
    cost_usd: float | None


def build_report(path: str | Path) -> Report:
    """Read one output file and compute its report.

    Raises:
        RecordsError: the file cannot be read, or has a damaged line (see `batchrun.records_io`).
    """
    lines = 0
    newest: Newest[_Entry] = Newest()
    shared: dict[str, str] = {}  # one str object per job name / error type, not one per record
    for record in iter_records(path):
        lines += 1
        # Only the small entry outlives this loop turn: results, logs and arguments are dropped now.
        entry = _entry(record, shared)
        newest.offer(entry.id, entry.finished, entry)
    entries = sorted(newest.values.values(), key=lambda e: (e.index, e.id))
    jobs: dict[str, list[_Entry]] = {}
    for entry in entries:
        jobs.setdefault(entry.job, []).append(entry)
    return Report(
        file=str(path),
        lines=lines,
        overall=_stats(entries),
        jobs={name: _stats(group) for name, group in jobs.items()},
        errors=_error_groups(entries),
        expectation_failures=[
            ExpectationFailure(e.job, e.id, message) for e in entries for message in e.failed_checks
        ],
    )


def _entry(record: dict[str, Any], shared: dict[str, str]) -> _Entry:
    timing = record.get("timing") or {}
    ok = record["status"] == "ok"
    error = record.get("error") if isinstance(record.get("error"), dict) else None
    failed = tuple(failed_checks(record))
    attempts = record.get("attempts")
    error_type = str(error.get("type") or "unknown") if error else None
    return _Entry(
        id=record["id"],
        index=record["index"],
        job=shared.setdefault(record["job"], record["job"]),
        ok=ok,
        error_type=shared.setdefault(error_type, error_type) if error_type is not None else None,
        # Only a failed request's error is ever shown (as its group's example).
        error_example="" if ok else one_line(error.get("detail") if error else None),
        failed_checks=failed,
        latency_s=seconds(timing.get("latency_s")),
        queue_s=seconds(timing.get("queue_s")),
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
        started=parse_time(timing.get("started_at")),
        finished=finished_at(record),
        cost_usd=seconds(record.get("cost_usd")),
    )


def seconds(value: Any) -> float | None:
    """A finite JSON number as a float, else None (a hand-edited or NaN latency is unknown)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _stats(entries: list[_Entry]) -> Stats:
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
        duration_s=round(duration, 6) if duration is not None else None,
        throughput_rps=round(len(entries) / duration, 6) if duration else None,
        cost_usd=round(sum(costs), 6) if costs else None,
    )


def _percentile(ordered: list[float], pct: int) -> float | None:
    """Nearest rank, as in the run summary; None (not 0.0) when there are no values."""
    return percentile(ordered, pct) if ordered else None


def _error_groups(entries: list[_Entry]) -> list[ErrorGroup]:
    groups: dict[tuple[str, str], list[_Entry]] = {}
    for entry in entries:
        if not entry.ok:
            groups.setdefault((entry.job, entry.error_type or "unknown"), []).append(entry)
    return [
        ErrorGroup(job, kind, len(members), members[0].error_example)
        for (job, kind), members in sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1]))
    ]


def error_text(record: dict[str, Any], limit: int = 80) -> str:
    """A record's error as `type: detail` on one line (`unknown` when the type is missing)."""
    error = record.get("error") if isinstance(record.get("error"), dict) else {}
    kind = str(error.get("type") or "unknown")
    detail = error.get("detail")
    return f"{kind}: {one_line(detail, limit)}" if detail not in (None, "") else kind


def one_line(detail: Any, limit: int = 80) -> str:
    """An error detail (string or JSON) as one short line."""
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metric_rows(stats: Stats) -> list[tuple[str, str]]:
    """(label, value) rows shared by the text and markdown renderings."""
    rows = [
        ("requests", str(stats.requests)),
        ("ok", str(stats.ok)),
        ("error", f"{stats.error} ({stats.error_rate:.1%})"),
        ("expectation failures", _expectation_text(stats)),
        ("latency p50 / p95 / max", _secs(stats.latency_p50, stats.latency_p95, stats.latency_max)),
        ("queue p50 / p95", _secs(stats.queue_p50, stats.queue_p95)),
        ("attempts", f"{stats.attempts} ({_plural(stats.retried_requests, 'request')} retried)"),
        ("throughput", _throughput_text(stats)),
    ]
    if stats.cost_usd is not None:
        rows.append(("cost", f"${stats.cost_usd:.4f}"))
    return rows


def _expectation_text(stats: Stats) -> str:
    if not stats.expectation_failed_requests:
        return "0"
    return (
        f"{_plural(stats.expectation_failed_requests, 'request')} "
        f"({_plural(stats.expectation_failed_checks, 'check')})"
    )


def _throughput_text(stats: Stats) -> str:
    if stats.throughput_rps is None or stats.duration_s is None:
        return "n/a"
    return f"{stats.throughput_rps:.2f} requests/s over {stats.duration_s:.3f} s"


def _secs(*values: float | None) -> str:
    if all(v is None for v in values):
        return "n/a"
    return " / ".join("n/a" if v is None else f"{v:.3f} s" for v in values)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render(report: Report, fmt: str) -> str:
    """The report as `text`, `markdown` or `json` (ending with a newline)."""
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    return _text(report)


def _sections(report: Report) -> list[tuple[str, str, Stats]]:
    """(text title, markdown heading, stats) for the overall numbers, then each job."""
    jobs = [(f"job {name}", f"Job `{name}`", stats) for name, stats in report.jobs.items()]
    return [("all jobs", "All jobs", report.overall), *jobs]


def _text(report: Report) -> str:
    out = [f"batchrun report: {report.file}"]
    if report.superseded:
        out.append(f"({report.superseded_note()})")
    if not report.overall.requests:
        return "\n".join([*out, "no records"]) + "\n"
    for title, _, stats in _sections(report):
        rows = metric_rows(stats)
        width = max(len(label) for label, _ in rows)
        out += ["", title, *(f"  {label:<{width}}  {value}" for label, value in rows)]
    if report.errors:
        out += ["", "errors", *_text_table(["job", "type", "count", "example"], _error_rows(report))]
    if report.expectation_failures:
        out += ["", "expectation failures", *_text_table(["job", "id", "message"], _failure_rows(report))]
    return "\n".join(out) + "\n"


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _error_rows(report: Report) -> list[list[str]]:
    return [[g.job, g.type, str(g.count), g.example] for g in report.errors]


def _failure_rows(report: Report) -> list[list[str]]:
    rows = [[f.job, f.id, f.message] for f in report.expectation_failures[:MAX_LISTED]]
    hidden = len(report.expectation_failures) - MAX_LISTED
    if hidden > 0:
        rows.append(["…", "…", f"{hidden} more (see --format json)"])
    return rows


def _markdown(report: Report) -> str:
    out = [f"## batchrun report: `{report.file}`", ""]
    if report.superseded:
        out += [f"{report.superseded_note()}.", ""]
    if not report.overall.requests:
        return "\n".join([*out, "No records."]) + "\n"
    for _, heading, stats in _sections(report):
        out += [f"### {heading}", "", *_md_table(["metric", "value"], [list(r) for r in metric_rows(stats)]), ""]
    if report.errors:
        out += ["### Errors", "", *_md_table(["job", "type", "count", "example"], _error_rows(report)), ""]
    if report.expectation_failures:
        out += ["### Expectation failures", "", *_md_table(["job", "id", "message"], _failure_rows(report)), ""]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
