"""Every job's `expect:` checks applied to one request: rendered with its matrix values, dataset row
and repeat index (the language and its pure evaluation are batchrun.spec.expect's)."""

from __future__ import annotations

from typing import Any

from batchrun.plan.planner import PlannedRequest
from batchrun.spec.expect import check_expectations
from batchrun.spec.template import (
    Compiled,
    Context,
    compile_value,
    mentions_template,
    unescape,
)

__all__ = ["Expectations"]


class Expectations:
    """Every job's `expect:` list, rendered per request (see the module docstring). Templates are
    compiled once per job; a job whose checks hold no `${{` uses them as written."""

    def __init__(self) -> None:
        self._compiled: dict[str, Compiled | None] = {}  # job name -> its compiled checks

    def checks(self, request: PlannedRequest) -> list[Any]:
        """The job's checks with this request's matrix values, dataset row and repeat index."""
        job = request.job
        try:
            compiled = self._compiled[job.name]
        except KeyError:
            compiled = compile_value(job.expect)[0] if mentions_template(job.expect) else None
            self._compiled[job.name] = compiled
        if compiled is None:
            return job.expect
        return unescape(compiled.render(Context(request.matrix, request.row_values, request.repeat)))

    def evaluate(self, request: PlannedRequest, result: dict[str, Any] | None,
                 latency_s: float | None) -> list[dict[str, Any]]:
        """`check_expectations` with the request's rendered checks."""
        return check_expectations(self.checks(request), result, latency_s, request.job.pinned_output)
