"""Pricing mistakes are validate errors (they used to pass validate and stop the run)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from batchrun.cli import main
from batchrun.load import validate_spec


def problems(text: str) -> list[str]:
    Path("spec.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    return [str(p) for p in validate_spec("spec.yaml")[1]]


def test_a_unit_argument_no_job_has_is_an_error_with_did_you_mean(here: Path) -> None:
    assert problems("""
        version: 1
        name: t
        pricing:
          fal-ai/flux/dev: {per_unit: 0.025, unit_argument: num_imgs}
          local/echo: {per_unit: 1, unit_argument: n}
          local/image: {per_unit: 1, unit_argument: n}
          local/unused: {per_unit: 1, unit_argument: whatever}
        jobs:
          - {name: dev, endpoint: fal-ai/flux/dev, arguments: {prompt: x, num_images: 2}}
          - {name: e1, endpoint: local/echo, arguments: {prompt: x, seed: 1}}
          - {name: e2, endpoint: local/echo}
          - {name: templated, endpoint: local/image, arguments: {n: "${{ matrix.n }}"}, matrix: {n: [1, 2]}}
    """) == [
        "spec.yaml:4:53: $.pricing['fal-ai/flux/dev'].unit_argument: unit_argument 'num_imgs' is not an argument of "
        "job 'dev' (fal-ai/flux/dev), so its cost is unknown; did you mean 'num_images'?",
        "spec.yaml:5:44: $.pricing['local/echo'].unit_argument: unit_argument 'n' is not an argument of jobs 'e1', 'e2' "
        "(local/echo), so its cost is unknown; its arguments: prompt, seed",
    ]


def test_a_unit_argument_that_cannot_be_a_number(here: Path) -> None:
    Path("rows.csv").write_text("p,n\nx,2\n")
    assert problems("""
        version: 1
        name: t
        pricing:
          local/echo: {per_unit: 1, unit_argument: n}
        defaults:
          endpoint: local/echo
        jobs:
          - {name: text, arguments: {n: "four"}}
          - {name: interpolated, arguments: {n: "${{ repeat }} images"}}
          - {name: csv, arguments: {n: "${{ row.n }}"}, dataset: rows.csv}
          - {name: typed, arguments: {n: "${{ row.n }}"}, dataset: {path: rows.csv, types: {n: int}}}
          - {name: number, arguments: {n: 2.5}}
    """) == [
        "spec.yaml:8:33: $.jobs[0].arguments.n: 'n' counts the units of local/echo's price (pricing), so it must be a "
        "number or a whole ${{ matrix.X }}/${{ row.F }} template",
        "spec.yaml:9:41: $.jobs[1].arguments.n: 'n' counts the units of local/echo's price (pricing), so it must be a "
        "number or a whole ${{ matrix.X }}/${{ row.F }} template",
        "spec.yaml:10:32: $.jobs[2].arguments.n: 'n' counts the units of local/echo's price (pricing), so it must be a "
        "number, but CSV column 'n' is a string; give the dataset `types: {n: int}` (or float)",
    ]


def test_a_budget_needs_a_price_for_every_endpoint(here: Path) -> None:
    assert problems("""
        version: 1
        name: t
        budget: {max_usd: 5}
        pricing:
          fal-ai/flux/schnel: {per_request: 0.003}
          local/echo: {per_request: 0.1}
        jobs:
          - {name: a, endpoint: fal-ai/flux/schnell}
          - {name: b, endpoint: fal-ai/flux/schnell}
          - {name: c, endpoint: local/image}
          - {name: d, endpoint: local/echo}
    """) == [
        "spec.yaml:3:10: $.budget.max_usd: a budget needs a price for every endpoint, but fal-ai/flux/schnell "
        "(jobs 'a', 'b') has none in pricing; did you mean pricing key 'fal-ai/flux/schnel'?",
        "spec.yaml:3:10: $.budget.max_usd: a budget needs a price for every endpoint, but local/image (job 'c') has "
        "none in pricing; add `local/image: {per_request: USD}` under pricing",
    ]


def test_validate_exits_2_on_a_budget_without_prices(here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Path("spec.yaml").write_text("version: 1\nname: t\nbudget: {max_usd: 1}\njobs: [{name: a, endpoint: local/echo}]\n")
    assert main(["validate", "spec.yaml"]) == 2
    assert capsys.readouterr().err == (
        "spec.yaml:3:10: $.budget.max_usd: a budget needs a price for every endpoint, but local/echo (job 'a') has "
        "none in pricing; add `local/echo: {per_request: USD}` under pricing\n"
    )
