"""The regression toolkit's hooks into the executor: expectations, artifacts, cost, budget, gates.

The executor calls, for each planned request:

    before_sending(...)         once, before anything is sent: a gate the output already breaches stops the run
    skipped(request)            a resume skips it (an earlier record settles it)
    admit(request)              just before sending it; a message means: do not send, stop the run
    await enrich(request, rec)  its record is built (in the worker): add expectations, artifacts, cost
    observe(record)             the writer has written and counted it; a message means: stop the run

and `finish()` once the run is over. Each feature is off unless the spec asks for it, so a record of
a spec without `expect`, `download` or `pricing` has exactly the executor's fields.
"""

from __future__ import annotations

from typing import Any

from batchrun.output.resume import ResumeState
from batchrun.output.summary import RunSummary
from batchrun.plan.planner import PlannedRequest
from batchrun.plan.pricing import request_cost
from batchrun.spec.model import Spec
from batchrun.toolkit.artifacts import Downloader
from batchrun.toolkit.budget import Budget
from batchrun.toolkit.expectations import Expectations
from batchrun.toolkit.gates import Gates

__all__ = ["Toolkit"]


class Toolkit:
    def __init__(self, spec: Spec, *, summary: RunSummary, resume: ResumeState,
                 downloader: Downloader | None = None) -> None:
        self.spec = spec
        self.summary = summary
        self.resume = resume
        self.downloader = downloader
        self.gates = Gates(spec.gates) if spec.gates else None
        max_usd = spec.budget.get("max_usd")
        self.budget = Budget(max_usd, spent=resume.spent_usd) if max_usd is not None else None
        self._reserved: dict[str, float] = {}  # request id -> cost reserved against the budget
        self.expectations = Expectations()
        self.stopped_by: str | None = None

    def before_sending(self, failed: int, expectation_failures: int, finished: int) -> str | None:
        """What the output settles before this run (see Gates.on_output); a message means: send nothing new."""
        if self.gates is None:
            return None
        breach = self.gates.on_output(failed, expectation_failures, finished)
        return self._stop(breach) if breach is not None else None

    def skipped(self, request: PlannedRequest) -> None:
        if request.id in self.resume.expect_failed:
            self.skipped_expectation_failures(request.job.name, 1)

    def skipped_expectation_failures(self, job: str, count: int) -> None:
        """Skipped requests of `job` whose settling record has a failed expectation (a resume's
        counting walk finds them in bulk: see batchrun.run.settled.SettledJob)."""
        self.summary.job(job).skipped_expectation_failures += count

    def admit(self, request: PlannedRequest) -> str | None:
        if self.budget is None:
            return None
        cost = request_cost(self.spec.pricing, request)
        refused = self.budget.reserve(cost, f"request {request.id} (job {request.job.name})")
        if refused is not None:
            return self._stop(refused)
        assert cost is not None
        self._reserved[request.id] = cost
        return None

    async def enrich(self, request: PlannedRequest, record: dict[str, Any]) -> None:
        ok = record["status"] == "ok"
        if ok and request.job.expect:
            record["expectations"] = self.expectations.evaluate(
                request, record["result"], record["timing"]["latency_s"])
        if ok and request.job.download and self.downloader is not None:
            record["artifacts"] = await self.downloader.fetch(record["result"])
        cost = request_cost(self.spec.pricing, request) if ok else None
        if ok and self.spec.pricing:
            record["cost_usd"] = cost
        if self.budget is not None:
            self.budget.settle(self._reserved.pop(request.id, None), cost)

    def observe(self, record: dict[str, Any]) -> str | None:
        if self.gates is None:
            return None
        breach = self.gates.after_record(self.summary, record)
        return self._stop(breach) if breach is not None else None

    def finish(self) -> None:
        """Evaluate the end-of-run gates into the summary."""
        if self.gates is not None:
            self.summary.gate_failures = self.gates.at_end(self.summary)
        self.summary.stopped_by = self.stopped_by

    def _stop(self, message: str) -> str:
        if self.stopped_by is None:
            self.stopped_by = message
        return message
