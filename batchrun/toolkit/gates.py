"""Run gates: thresholds over the whole run, checked as records arrive and at the end.

    gates:
      fail_fast: true          stop at the first failed request (an error record or a failed expectation)
      max_errors: 2            stop once more than 2 planned requests have failed
      max_error_rate: 0.05     stop once more than 5% of finished requests have failed (checked from
                               MIN_RATE_SAMPLE finished requests on, and at the end whatever the count)
      max_p95_latency_s: 30    checked at the end, over the latency of every request in the output
                               (its newest record), earlier runs' included

Failed requests and finished requests count the whole output for this plan: records of earlier
runs that a resume skips count too, so a resumed run keeps the gates of the run it continues.
The p95 gate reads its latencies back from the output at the end (`output_latencies`), for the
same reason: a nightly run resumed after a kill must not pass a gate it would fail whole.
A resume checks the stopping gates on the output before it sends anything (`on_output`): a gate
the earlier runs' records already breach stops it there, rather than after another `concurrency`
requests each time it is run again.
A stopping gate stops the run gracefully (no new requests; those in flight finish and are written;
the run is resumable) and every breached gate makes the run exit 1. Figures come from the run's
summary (batchrun.output.summary.RunSummary), and for a resumed run's p95 from its output file too.
"""

from __future__ import annotations

import array
import math
import os
from pathlib import Path
from typing import Any

import orjson

from batchrun.output.reading import failed_expectation
from batchrun.output.summary import RunSummary, percentile

__all__ = ["MIN_RATE_SAMPLE", "Gates", "output_latencies"]

MIN_RATE_SAMPLE = 20  # an error rate over fewer finished requests is noise (1 of 3 is 33%)


def _failed(record: dict[str, Any]) -> bool:
    return record["status"] != "ok" or failed_expectation(record)


class Gates:
    """The spec's `gates:`; `breaches` maps a gate name to the message saying how it broke."""

    def __init__(self, gates: dict[str, Any]) -> None:
        self.fail_fast = bool(gates.get("fail_fast", False))
        self.max_errors: int | None = gates.get("max_errors")
        self.max_error_rate: float | None = gates.get("max_error_rate")
        self.max_p95: float | None = gates.get("max_p95_latency_s")
        self.breaches: dict[str, str] = {}

    def after_record(self, summary: RunSummary, record: dict[str, Any]) -> str | None:
        """Check the stopping gates after `record` was counted; the message of a breach, else None."""
        if self.breaches:
            return None  # already stopping
        if self.fail_fast and _failed(record):
            what = (f"error {record['error']['type']}" if record["status"] != "ok" and record.get("error")
                    else "failed expectation")
            return self._breach("fail_fast", f"gate fail_fast: request {record['id']} (job {record['job']}) "
                                f"failed ({what}); stopped after {_finished(summary)} finished requests")
        if record["status"] == "ok":
            return None  # only a new error can push an error count over its limit
        message = self._errors(summary, minimum=MIN_RATE_SAMPLE)
        return message

    def on_output(self, failed: int, expectation_failures: int, finished: int) -> str | None:
        """Before a resume sends anything: the message of a stopping gate that the output's records
        for the plan already breach (`failed` errors and `expectation_failures` among `finished`
        settled requests; errors that --retry-errors sends again are not among them), else None."""
        if self.breaches:
            return None
        already = ", already in the output: nothing new is sent"
        if self.fail_fast and failed + expectation_failures:
            return self._breach("fail_fast", f"gate fail_fast: {failed + expectation_failures} of the {finished} "
                                f"requests the output settles failed ({failed} errors, {expectation_failures} "
                                f"failed expectations){already}")
        return self._count_errors(failed, finished, minimum=MIN_RATE_SAMPLE, suffix=already)

    def at_end(self, summary: RunSummary) -> list[str]:
        """Every breached gate, the stopping ones first; for the summary, the manifest and the exit code."""
        if "max_errors" not in self.breaches and "max_error_rate" not in self.breaches:
            self._errors(summary, minimum=1)
        if self.max_p95 is not None and "max_p95_latency_s" not in self.breaches:
            latencies = sorted(_p95_latencies(summary))
            p95 = percentile(latencies, 95)
            if latencies and p95 > self.max_p95:
                self._breach("max_p95_latency_s", f"gate max_p95_latency_s: p95 latency {p95:.3f} s over "
                             f"{len(latencies)} requests > {self.max_p95:g} s")
        return list(self.breaches.values())

    def _errors(self, summary: RunSummary, *, minimum: int) -> str | None:
        return self._count_errors(summary.failed, _finished(summary), minimum=minimum)

    def _count_errors(self, failed: int, finished: int, *, minimum: int, suffix: str = "") -> str | None:
        if self.max_errors is not None and failed > self.max_errors:
            return self._breach("max_errors", f"gate max_errors: {failed} failed requests > max_errors "
                                f"{self.max_errors} ({finished} finished){suffix}")
        if self.max_error_rate is not None and finished >= minimum and failed / finished > self.max_error_rate:
            return self._breach("max_error_rate", f"gate max_error_rate: {failed} of {finished} finished "
                                f"requests failed ({failed / finished:.1%}) > max_error_rate "
                                f"{self.max_error_rate:.1%}{suffix}")
        return None

    def _breach(self, gate: str, message: str) -> str:
        self.breaches[gate] = message
        return message


def _p95_latencies(summary: RunSummary) -> array.array[float]:
    """This run's latencies when it settled every planned request itself (no output read, no
    memory beyond the summary's); otherwise the output's, where earlier runs' records are."""
    if summary.skipped:
        in_output = output_latencies(Path(summary.output))
        if in_output is not None:
            return in_output
        # unreadable now: what this run knows
    return array.array("d", (x for js in summary.jobs.values() for lat in (js.latencies, js.error_latencies)
                             for x in lat))


def output_latencies(path: Path) -> array.array[float] | None:
    """The latency of each id's newest record in the output `path` (a later line supersedes an
    earlier one, as on resume), or None when it cannot be read. Records of ids the plan no longer
    has count too, as in `batchrun report`. Streamed; memory is one dict entry per distinct id (the
    resume scan's order of size: ~100 MB for 1M ids, freed once the gate is decided)."""
    newest: dict[str, float] = {}
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = orjson.loads(line)
                    rid, latency = record["id"], record["timing"]["latency_s"]
                except (ValueError, TypeError, KeyError):  # blank, damaged or hand-edited lines
                    continue
                if (isinstance(rid, str) and isinstance(latency, (int, float)) and not isinstance(latency, bool)
                        and math.isfinite(latency)):
                    newest[rid] = float(latency)
    except OSError:
        return None
    return array.array("d", newest.values())


def _finished(summary: RunSummary) -> int:
    return summary.ok + summary.errors + summary.skipped
