"""The run's `budget: {max_usd}` guard, over the per-request costs of batchrun.plan.pricing.

The budget reserves each request's cost before it is sent, so the requests in flight can never
add up past `max_usd`; a finished request turns its reservation into spent money (a failed one
frees it: fal bills successful requests). On resume, money already spent is the sum of the
output's `cost_usd` fields. A budget needs a price for every job's endpoint: with an unknown
price the run refuses to start, since a paid API could overspend without bound.
"""

from __future__ import annotations

from batchrun.errors import UsageError
from batchrun.spec.model import Spec

__all__ = ["Budget", "check_budget_prices"]

_EPSILON = 1e-9  # float sums of prices must not refuse a request that exactly fills the budget


def check_budget_prices(spec: Spec) -> None:
    """A budget with an unpriced endpoint cannot be kept: refuse before anything is sent."""
    if not spec.budget:
        return
    unpriced = sorted({j.endpoint for j in spec.jobs if not isinstance(spec.pricing.get(j.endpoint), dict)})
    if unpriced:
        raise UsageError(
            f"{spec.source}: budget.max_usd is set but these endpoints have no price in `pricing`: "
            f"{', '.join(unpriced)}; add their prices (a budget with unknown prices could overspend)"
        )


class Budget:
    """Reservations against `max_usd`. `spent` starts from the existing output (resume)."""

    def __init__(self, max_usd: float, spent: float = 0.0) -> None:
        self.max_usd = float(max_usd)
        self.spent = spent
        self.reserved = 0.0

    def reserve(self, cost: float | None, label: str) -> str | None:
        """Reserve `cost` for a request about to be sent; a message when it must not be sent."""
        if cost is None:
            return (f"budget: the cost of {label} is unknown (its unit argument is not a number), "
                    f"so it was not sent; ${self.spent:.4f} spent of max_usd ${self.max_usd:g}")
        if self.spent + self.reserved + cost > self.max_usd + _EPSILON:
            return (f"budget: sending {label} (${cost:.4f}) would exceed max_usd ${self.max_usd:g} "
                    f"(${self.spent:.4f} spent, ${self.reserved:.4f} in flight); stopped, resumable")
        self.reserved += cost
        return None

    def settle(self, reserved: float | None, spent: float | None) -> None:
        """A request finished: release what it reserved (None: it was never reserved), count what it cost."""
        if reserved is not None:
            self.reserved = max(0.0, self.reserved - reserved)
        if spent is not None:
            self.spent += spent
