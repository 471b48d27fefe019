"""Per-request cost from a spec's `pricing:`, shared by `plan --count` (batchrun.plan.estimate) and
the run's budget (batchrun.toolkit.budget).

Price shapes: `{per_request: USD}` or `{per_unit: USD, unit_argument: NAME}` (a pinned price,
batchrun.spec.endpoints.pinned_price, may add `unit_default`, the argument's schema default). Unknown stays unknown
(None): an endpoint without a price, or a unit argument that is not a number.
"""

from __future__ import annotations

from typing import Any

from batchrun.plan.planner import PlannedRequest

__all__ = ["flat_cost", "request_cost"]


def flat_cost(pricing: dict[str, Any], endpoint: str) -> float | None:
    """The USD cost of every request to `endpoint` when its price is per request, so a count of
    requests prices them all; None when the price is per unit (see request_cost) or unknown."""
    price = pricing.get(endpoint)
    if isinstance(price, dict) and "per_request" in price:
        return float(price["per_request"])
    return None


def request_cost(pricing: dict[str, Any], request: PlannedRequest) -> float | None:
    """The estimated USD cost of one request, or None when its price is unknown."""
    flat = flat_cost(pricing, request.endpoint)
    if flat is not None:
        return flat
    price = pricing.get(request.endpoint)
    if not isinstance(price, dict):
        return None
    per_unit, argument = price.get("per_unit"), price.get("unit_argument")
    if per_unit is None or argument is None:
        return None
    # A pinned per-unit price knows the schema's default for a request that leaves the argument out.
    units = request.arguments.get(argument, price.get("unit_default"))
    if isinstance(units, bool) or not isinstance(units, (int, float)):
        return None
    return float(per_unit) * units
