"""Cost estimates from a spec's `pricing` section, for `batchrun plan --count`. Pure; no network.

A price is `{per_request: USD}` or `{per_unit: USD, unit_argument: NAME}` (units = the number in
that argument of each request, e.g. num_images). An endpoint without a price, or a request whose
unit argument is not a number, makes the estimate "unknown" (None) rather than a guess.
"""

from __future__ import annotations

from batchrun.plan import JobPlanner
from batchrun.spec import Job, Spec


def estimate_job_cost(spec: Spec, job: Job, count: int, shard: tuple[int, int] | None = None) -> float | None:
    """`count`: the job's requests (in the shard, with one)."""
    price = spec.pricing.get(job.endpoint)
    if not isinstance(price, dict):
        return None
    if "per_request" in price:
        return float(price["per_request"]) * count
    per_unit, argument = price.get("per_unit"), price.get("unit_argument")
    if per_unit is None or argument is None:
        return None
    units = 0.0
    for request in JobPlanner.create(job, spec).requests(0, shard):
        value = request.arguments.get(argument)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        units += value
    return float(per_unit) * units
