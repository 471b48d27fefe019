"""The end-of-run summary on stderr: per job (in plan order) counts by status, errors by type,
latency p50/p95/max of the ok requests (as `batchrun report` computes it: a failure's latency is
how fast it failed), retries, and where the output is.

Latencies are kept in a compact `array('d')` per job (8 bytes a request), so a summary of a
million requests costs megabytes, not the records. Failed requests' latencies are kept apart: the
p95 gate counts every request (batchrun.toolkit.gates).
"""

from __future__ import annotations

import array
import collections
import dataclasses
from typing import Any

from batchrun.output.reading import failed_expectation

__all__ = ["JobSummary", "RunSummary", "percentile"]


def percentile(sorted_values: array.array[float] | list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-int(q * len(sorted_values)) // 100))  # ceil(q/100 * n), at least 1
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclasses.dataclass(slots=True)
class JobSummary:
    ok: int = 0
    error: int = 0
    skipped: int = 0  # settled by an earlier run's record
    skipped_errors: int = 0  # of which the newest record is an error (not retried)
    retries: int = 0
    cached: int = 0  # ok records of this run served from the result cache
    rerouted: int = 0  # records of this run that fal rerouted to another endpoint (a model fallback)
    expectation_failures: int = 0  # requests of this run with a failed expectation
    skipped_expectation_failures: int = 0  # settled by an earlier run's record with a failed expectation
    errors_by_type: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    latencies: array.array[float] = dataclasses.field(default_factory=lambda: array.array("d"))  # ok requests
    error_latencies: array.array[float] = dataclasses.field(default_factory=lambda: array.array("d"))

    @property
    def empty(self) -> bool:
        return not (self.ok or self.error or self.skipped)


@dataclasses.dataclass(slots=True)
class RunSummary:
    output: str
    jobs: dict[str, JobSummary] = dataclasses.field(default_factory=dict)
    interrupted: bool = False
    left_running: int = 0
    cut_direct: int = 0  # direct calls on the wire the interrupt cut short (no record)
    cut_submits: int = 0  # queue submits on the wire the interrupt cut short, before their answer
    cancelled_remote: int = 0
    # Regression toolkit (batchrun.toolkit.hooks): what stopped the run early, breached gates, cost of this run.
    stopped_by: str | None = None
    gate_failures: list[str] = dataclasses.field(default_factory=list)
    cost_usd: float = 0.0
    cost_unknown: int = 0  # ok requests of this run whose price is unknown
    replaced_errors: int = 0  # records of this run for ids whose newest record was an error (--retry-errors)
    cache_saved_usd: float = 0.0  # what those would have cost (with `pricing`)

    def plan_order(self, names: list[str]) -> None:
        """List the jobs in plan order (records arrive in completion order); call before any record."""
        for name in names:
            self.job(name)

    def job(self, name: str) -> JobSummary:
        js = self.jobs.get(name)
        if js is None:
            js = self.jobs[name] = JobSummary()
        return js

    def add(self, record: dict[str, Any]) -> None:
        js = self.job(record["job"])
        latency = float(record["timing"]["latency_s"])
        if record["status"] == "ok":
            js.ok += 1
            if "cached" not in record:  # a cache hit's microseconds would hide the service's latency
                js.latencies.append(latency)
            else:
                js.cached += 1
        else:
            js.error += 1
            js.errors_by_type[(record.get("error") or {}).get("type", "unknown")] += 1
            js.error_latencies.append(latency)
        js.retries += max(0, int(record.get("attempts") or 0) - 1)
        if record.get("rerouted_to"):
            js.rerouted += 1
        if failed_expectation(record):
            js.expectation_failures += 1
        if "cost_usd" in record:
            if record["cost_usd"] is None:
                self.cost_unknown += 1
            else:
                self.cost_usd += record["cost_usd"]

    def skip(self, job: str, *, ok: bool, count: int = 1) -> None:
        js = self.job(job)
        js.skipped += count
        if not ok:
            js.skipped_errors += count

    @property
    def ok(self) -> int:
        return sum(j.ok for j in self.jobs.values())

    @property
    def errors(self) -> int:
        return sum(j.error for j in self.jobs.values())

    @property
    def skipped(self) -> int:
        return sum(j.skipped for j in self.jobs.values())

    @property
    def failed(self) -> int:
        """Planned requests whose newest record is an error, from this run or an earlier one."""
        return sum(j.error + j.skipped_errors for j in self.jobs.values())

    @property
    def expectations_failed(self) -> int:
        """Planned requests whose newest record has a failed expectation (this run or an earlier one)."""
        return sum(j.expectation_failures + j.skipped_expectation_failures for j in self.jobs.values())

    def lines(self) -> list[str]:
        out = ["batchrun: summary" + (" (interrupted)" if self.interrupted else "")]
        for name, js in self.jobs.items():
            if js.empty:
                continue  # not reached (interrupted), or no request of it in this shard
            counts = f"ok={js.ok}" + (f" (cached={js.cached})" if js.cached else "") + f" error={js.error}"
            if js.skipped:
                counts += f" skipped={js.skipped} (already in the output"
                counts += f", {js.skipped_errors} of them errors)" if js.skipped_errors else ")"
            lat = sorted(js.latencies)
            latency = (
                f" ok latency p50={percentile(lat, 50):.3f}s p95={percentile(lat, 95):.3f}s "
                f"max={lat[-1]:.3f}s" if lat else ""
            )
            expectations = js.expectation_failures + js.skipped_expectation_failures
            failed = f" expectations_failed={expectations}" if expectations else ""
            out.append(f"  {name}: {counts}{latency} retries={js.retries}{failed}")
            if js.errors_by_type:
                kinds = ", ".join(f"{k}={v}" for k, v in js.errors_by_type.most_common())
                out.append(f"    errors by type: {kinds}")
        total = f"ok={self.ok} error={self.errors}"
        if self.skipped:
            total += f" skipped={self.skipped}"
        out.append(f"  total: {total}")
        rerouted = sum(j.rerouted for j in self.jobs.values())
        if rerouted:
            # a fallback answers for another model: a regression run should not pass unremarked
            jobs = ", ".join(f"{name}={js.rerouted}" for name, js in self.jobs.items() if js.rerouted)
            out.append(f"  rerouted: {rerouted} requests served by a fallback endpoint ({jobs}; records' "
                       "rerouted_to; `fallbacks: false` turns fallbacks off)")
        cached = sum(j.cached for j in self.jobs.values())
        if cached:
            saved = f", saving ${self.cache_saved_usd:.4f}" if self.cache_saved_usd else ""
            out.append(f"  cache: {cached} records served from the result cache (nothing sent{saved})")
        if self.cost_usd or self.cost_unknown:
            unknown = f" (+ {self.cost_unknown} requests of unknown price)" if self.cost_unknown else ""
            out.append(f"  cost: ${self.cost_usd:.4f} estimated for this run{unknown}")
        if self.stopped_by:
            out.append(f"  stopped early: {self.stopped_by}")
        out.extend(f"  failed {g}" for g in self.gate_failures if g != self.stopped_by)
        if self.cut_direct:
            out.append(f"  {self.cut_direct} direct calls cut short on the wire: no record; the server may have run "
                       "them, and resuming sends them again")
        if self.cut_submits:
            out.append(f"  {self.cut_submits} queue submits cut short before their answer: fal may have accepted "
                       "them, so the next run records them as outcome_unknown instead of submitting twice")
        if self.left_running:
            out.append(f"  {self.left_running} queue requests left running remotely (journaled)")
        if self.cancelled_remote:
            out.append(f"  {self.cancelled_remote} queue requests cancelled remotely")
        out.append(f"  output: {self.output}")
        return out
