"""`batchrun check`: re-evaluate a spec's current expectations against an existing output.

Expectations are evaluated when a record is written; after a wrong check is fixed in the spec, the
settled records still carry the old verdicts (a resume sends nothing for them). This re-checks the
newest record of every planned id that has a result (status ok) against the spec's checks as they
are now, on the stored result and latency. Nothing is sent over the network.

With `write=True` each record whose expectations changed is appended again, identical except for
`expectations`. Its `timing` is kept: the request's times are facts about the request (report's
latencies and throughput read them), and an appended copy with the same `finished_at` is the newest
record for every reader, which all break a tie by the later line (records_io's newest rule for
report, diff and this command, merge's (ok, finished_at, read order) rank, resume's last line). The append
happens under the output's lock (batchrun.output.sink), so it cannot interleave with a running run, and
the records are read under the same lock, so a run cannot add a newer record in between.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from batchrun.output.reading import (
    Newest,
    RecordsError,
    failed_checks,
    finished_at,
    iter_located,
    open_output,
    record_at,
    seconds,
)
from batchrun.output.resume import repair_tail
from batchrun.output.sink import JsonlSink, OutputLock
from batchrun.plan.planner import PlannedRequest, build_plan
from batchrun.spec.model import Spec
from batchrun.toolkit.expectations import Expectations

__all__ = ["CheckResult", "Failure", "JobCheck", "recheck"]


@dataclasses.dataclass(slots=True)
class JobCheck:
    """One job's re-checked requests: `passed` + `failed` of them had a result to check."""

    passed: int = 0
    failed: int = 0
    changed: int = 0  # requests whose verdicts or messages differ from the stored ones
    not_checked: int = 0  # planned requests whose newest record is an error, or that have none


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    job: str
    id: str
    message: str


@dataclasses.dataclass(slots=True)
class CheckResult:
    output: Path
    jobs: dict[str, JobCheck]  # every job of the spec, in spec order
    failures: list[Failure]  # one per failed check, in plan order
    unplanned: int = 0  # ids in the output that the current plan does not have (left alone)
    written: int = 0  # re-checked records appended (write=True only)

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs.values())

    @property
    def changed(self) -> int:
        return sum(j.changed for j in self.jobs.values())


def recheck(spec: Spec, output: Path, *, write: bool = False,
            shard: tuple[int, int] | None = None) -> CheckResult:
    """Re-evaluate `spec`'s expectations on `output` (see the module docstring).

    Raises:
        RecordsError: the output is missing, unreadable or damaged (exit 2).
        SinkError: write=True and the output is locked by a run or cannot be written.
    """
    if not output.is_file():
        raise RecordsError(f"{output}: no such output file")
    if not write:
        return _recheck(spec, output, None, shard)
    with OutputLock(output):
        # A run killed mid-write leaves a partial last line; an append must not glue onto it.
        repair_tail(output)
        with JsonlSink(output) as sink:
            return _recheck(spec, output, sink, shard)


def _recheck(spec: Spec, output: Path, sink: JsonlSink | None, shard: tuple[int, int] | None) -> CheckResult:
    newest = _newest_offsets(output)
    result = CheckResult(output, {job.name: JobCheck() for job in spec.jobs}, [])
    planned: set[str] = set()
    expectations = Expectations()
    with open_output(output) as source:
        for request, record in _settled(build_plan(spec, shard=shard), newest, source, planned, result):
            checked = expectations.evaluate(
                request, record.get("result"), seconds((record.get("timing") or {}).get("latency_s")))
            job = result.jobs[request.job.name]
            messages = failed_checks({"expectations": checked})
            if messages:
                job.failed += 1
                result.failures.extend(Failure(request.job.name, request.id, m) for m in messages)
            else:
                job.passed += 1
            if (checked or None) != (record.get("expectations") or None):
                job.changed += 1
                if sink is not None:
                    sink.write(_rechecked(record, checked))
                    result.written += 1
    result.unplanned = sum(1 for rid in newest if rid not in planned)
    return result


def _newest_offsets(output: Path) -> dict[str, tuple[bool, int]]:
    """id -> (ok?, byte offset) of its newest record, chosen by records_io's rule so check agrees
    with report and diff. Only these stay in memory; the records are re-read by offset."""
    newest: Newest[tuple[bool, int]] = Newest()
    for loc in iter_located(output):
        newest.offer(loc.record["id"], finished_at(loc.record), (loc.record["status"] == "ok", loc.offset))
    return newest.values


def _settled(plan: Iterator[PlannedRequest], newest: dict[str, tuple[bool, int]], source: IO[bytes],
             planned: set[str], result: CheckResult) -> Iterator[tuple[PlannedRequest, dict[str, Any]]]:
    """(request, its newest record) for every planned request whose newest record is ok."""
    for request in plan:
        planned.add(request.id)
        ok, offset = newest.get(request.id, (False, -1))
        if not ok:
            result.jobs[request.job.name].not_checked += 1
            continue
        yield request, record_at(source, offset)


def _rechecked(record: dict[str, Any], checked: list[dict[str, Any]]) -> dict[str, Any]:
    """The record with its new expectations (none: the key is left out, as a run writes it)."""
    out = dict(record)
    if checked:
        out["expectations"] = checked  # in its place when the record had some
    else:
        out.pop("expectations", None)
    return out
