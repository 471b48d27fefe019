"""`plan --count`'s estimates price requests exactly as the run's budget does (budget.request_cost)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchrun.load import load_spec
from batchrun.plan.estimate import JobEstimate, estimate
from batchrun.plan.planner import build_plan
from batchrun.plan.pricing import flat_cost, request_cost
from batchrun.spec.model import Spec

SPEC = """
    version: 1
    name: t
    pricing:
      local/echo: {per_request: 0.25}
      local/image: {per_unit: 0.5, unit_argument: num_images}
      local/sleep: {per_unit: 1, unit_argument: seconds}
    jobs:
      - name: flat
        endpoint: local/echo
        arguments: {x: "${{ matrix.x }}"}
        matrix: {x: [1, 2, 3]}
      - name: units
        endpoint: local/image
        arguments: {num_images: "${{ matrix.n }}"}
        matrix: {n: [1, 2, 4]}
        repeat: 2
      - name: not-a-number
        endpoint: local/sleep
        arguments: {seconds: "${{ matrix.s }}"}
        matrix: {s: [1, "two"]}
      - name: unpriced
        endpoint: local/fail
"""


@pytest.fixture
def spec_and_counts(tmp_path: Path) -> tuple[Spec, dict[str, int]]:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(SPEC).lstrip("\n"))
    counts: dict[str, int] = {}
    spec = load_spec(path, counts=counts)
    return spec, counts


def test_validation_counts_and_whole_plan_estimate(spec_and_counts: tuple[Spec, dict[str, int]]) -> None:
    spec, counts = spec_and_counts
    assert counts == {"flat": 3, "units": 6, "not-a-number": 2, "unpriced": 1}
    assert estimate(spec, counts) == {
        "flat": JobEstimate(3, 0.75),
        "units": JobEstimate(6, 0.5 * 2 * (1 + 2 + 4)),
        "not-a-number": JobEstimate(2, None),
        "unpriced": JobEstimate(1, None),
    }


def test_shards_estimate_their_own_requests_with_the_budgets_prices(spec_and_counts: tuple[Spec, dict[str, int]]) -> None:
    spec, counts = spec_and_counts
    for i in (1, 2, 3):
        shard = (i, 3)
        requests = list(build_plan(spec, shard=shard))
        got = estimate(spec, counts, shard)
        for name, job_estimate in got.items():
            mine = [r for r in requests if r.job.name == name]
            costs = [request_cost(spec.pricing, r) for r in mine]
            expected = None if None in costs else sum(c for c in costs if c is not None)
            assert job_estimate == JobEstimate(len(mine), expected), (shard, name)
    assert sum(e.requests for i in (1, 2, 3) for e in estimate(spec, counts, (i, 3)).values()) == sum(counts.values())


def test_flat_cost_is_the_per_request_price_only(spec_and_counts: tuple[Spec, dict[str, int]]) -> None:
    spec, _ = spec_and_counts
    assert [flat_cost(spec.pricing, e) for e in ("local/echo", "local/image", "local/fail")] == [0.25, None, None]
