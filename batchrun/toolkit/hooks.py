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

from pathlib import Path
from typing import Any

import anyio

from batchrun.output.resume import ResumeState
from batchrun.output.summary import RunSummary
from batchrun.plan.planner import PlannedRequest
from batchrun.plan.pricing import request_cost
from batchrun.spec.model import Spec
from batchrun.toolkit.artifacts import Downloader
from batchrun.toolkit.budget import Budget
from batchrun.toolkit.expectations import Expectations
from batchrun.toolkit.gates import Gates
from batchrun.toolkit.phash import PerceptualHasher, is_image

__all__ = ["Toolkit"]


class Toolkit:
    def __init__(self, spec: Spec, *, summary: RunSummary, resume: ResumeState,
                 downloader: Downloader | None = None, hasher: PerceptualHasher | None = None,
                 budget_share: float = 1.0) -> None:
        """`budget_share`: the part of `budget.max_usd` this run may spend (1/N for shard I of N,
        so N shards run side by side keep the whole plan's budget, as documented)."""
        self.spec = spec
        self.summary = summary
        self.resume = resume
        self.downloader = downloader
        # Downloaded images get a perceptual hash when the images extra is installed (the runner
        # warns once when it is not); None: no job downloads.
        self.hasher = hasher
        self.gates = Gates(spec.gates) if spec.gates else None
        max_usd = spec.budget.get("max_usd")
        self.budget = Budget(max_usd * budget_share, spent=resume.spent_usd) if max_usd is not None else None
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
        # A result cache hit (batchrun.run.caching): checked afresh, against the latency it took
        # when first obtained; its artifacts are already linked in unless it was cached without them.
        cached = record.get("cached")
        if ok and request.job.expect:
            latency = cached["latency_s"] if cached is not None else record["timing"]["latency_s"]
            record["expectations"] = self.expectations.evaluate(request, record["result"], latency)
        if ok and request.job.download and self.downloader is not None:
            if "artifacts" not in record:
                record["artifacts"] = await self.downloader.fetch(record["result"])
            # A cache hit keeps the pHashes it was stored with; one first obtained without the
            # images extra has none yet, so it gets them here, like a fresh download.
            if self.hasher is not None and self.hasher.available and any("phash" not in a for a in record["artifacts"]):
                # Decoding is CPU work: off the event loop, so other requests' downloads go on.
                await anyio.to_thread.run_sync(self._add_phashes, record["artifacts"], self.downloader.output.parent)
        # Priced only where the price is used: a cache hit's saving, the output's cost_usd, the budget.
        priced = ok and (cached is not None or bool(self.spec.pricing) or self.budget is not None)
        cost = request_cost(self.spec.pricing, request) if priced else None
        if cached is not None:
            self.summary.cache_saved_usd += cost or 0.0
            cost = 0.0  # nothing was sent: it costs nothing, against the budget or in the output
        if ok and self.spec.pricing:
            record["cost_usd"] = cost
        if self.budget is not None:
            self.budget.settle(self._reserved.pop(request.id, None), cost)

    def _add_phashes(self, artifacts: list[dict[str, Any]], root: Path) -> None:
        """`phash` on every stored image artifact (null when its bytes are no decodable picture)."""
        assert self.hasher is not None
        for artifact in artifacts:
            path = artifact.get("path")
            if "phash" not in artifact and isinstance(path, str) and is_image(artifact.get("content_type"), path):
                try:
                    data = (root / path).read_bytes()
                except OSError:
                    artifact["phash"] = None  # stored a moment ago; gone means someone removed it
                    continue
                artifact["phash"] = self.hasher.phash(data)

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
