"""Cost estimates from a spec's `pricing` section, for `batchrun plan --count`. Pure; no network.

Prices are read by batchrun.toolkit.budget alone (`flat_cost`, `request_cost`: the run's budget guard
prices its requests with the same functions), so an estimate and a run never disagree on a price.
An endpoint without a price, or a request whose unit argument is not a number, makes a job's
estimate "unknown" (None) rather than a guess.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from batchrun.plan.planner import JobPlanner, PlannedRequest, build_plan
from batchrun.plan.pricing import flat_cost, request_cost
from batchrun.spec.model import Spec


@dataclasses.dataclass(slots=True)
class JobEstimate:
    requests: int
    cost: float | None  # USD; None: unknown


def estimate(spec: Spec, counts: Mapping[str, int], shard: tuple[int, int] | None = None) -> dict[str, JobEstimate]:
    """Requests and estimated cost per job name, in job order. `counts` is the whole plan's
    requests per job (validation counted them). The plan is walked only for what a count cannot
    tell: the units of a job priced per unit, or, with a shard, which requests are in it (one walk
    of the shard then counts and prices them together)."""
    if shard is None:
        out = {}
        for job in spec.jobs:
            n = counts[job.name]
            flat = flat_cost(spec.pricing, job.endpoint)
            if flat is not None:
                cost: float | None = flat * n
            elif job.endpoint in spec.pricing:
                cost = _sum_costs(spec, JobPlanner.create(job, spec).requests(0, None))
            else:
                cost = None
            out[job.name] = JobEstimate(n, cost)
        return out
    estimates = {job.name: JobEstimate(0, 0.0) for job in spec.jobs}
    for request in build_plan(spec, shard=shard):
        job_estimate = estimates[request.job.name]
        job_estimate.requests += 1
        if job_estimate.cost is not None:
            cost = request_cost(spec.pricing, request)
            job_estimate.cost = None if cost is None else job_estimate.cost + cost
    return estimates


def _sum_costs(spec: Spec, requests: Iterable[PlannedRequest]) -> float | None:
    total = 0.0
    for request in requests:
        cost = request_cost(spec.pricing, request)
        if cost is None:
            return None  # unknown stays unknown: no need to render the rest
        total += cost
    return total
