"""Validation of `pricing` and `budget` against the jobs that use them.

A pricing mistake used to pass `validate` and surface only at run time: a `unit_argument` naming no
argument made every request's cost unknown (the budget then stopped before the first request), and
a budget with an unpriced endpoint refused to start. Both are located spec errors here, with a
did-you-mean; `batchrun.toolkit.budget.check_budget_prices` stays as the run's own guard.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from batchrun.errors import Problem
from batchrun.spec.checks import JobSource
from batchrun.spec.template import Ref, TemplateError, parse
from batchrun.spec.yamlsource import Located, PathKey


def price_problems(located: Located, jobs: list[JobSource], is_bad: Any,
                   pinned: dict[str, Any] | None = None) -> Iterator[Problem]:
    """Problems of `pricing` and `budget` for these (defaults-merged) jobs. `is_bad(path)`: the
    schema already rejected something there, so it is not checked again. `pinned`: prices from
    pinned endpoint files (batchrun.spec.endpoints), which price an endpoint the spec does not."""
    data = located.data
    pricing = data.get("pricing")
    pricing = pricing if isinstance(pricing, dict) and not is_bad(("pricing",)) else {}
    by_endpoint: dict[str, list[JobSource]] = {}
    for job in jobs:
        endpoint = job.options.get("endpoint")
        if isinstance(endpoint, str) and not is_bad(job.at("endpoint")):
            by_endpoint.setdefault(endpoint, []).append(job)
    for endpoint, price in pricing.items():
        # (with per_request too the price is an error of its own, and per_request wins)
        if isinstance(price, dict) and isinstance(price.get("unit_argument"), str) and "per_request" not in price:
            yield from _unit_problems(located, endpoint, price["unit_argument"], by_endpoint.get(endpoint, []))
    budget = data.get("budget")
    if isinstance(budget, dict) and budget and not is_bad(("budget",)):
        yield from _budget_problems(located, {**(pinned or {}), **pricing}, by_endpoint, next(iter(budget)))


def _unit_problems(located: Located, endpoint: str, unit: str, jobs: list[JobSource]) -> Iterator[Problem]:
    lacking = [
        j
        for j in jobs
        if isinstance(j.options.get("arguments", {}), dict) and unit not in j.options.get("arguments", {})
    ]
    if lacking:
        names = ", ".join(f"'{j.name}'" for j in lacking)
        keys = list(dict.fromkeys(k for j in lacking for k in j.options.get("arguments", {})))
        close = difflib.get_close_matches(unit, keys, n=1, cutoff=0.6)
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif keys:
            hint = f"its arguments: {', '.join(keys[:10])}"
        else:
            hint = "it has no arguments"
        message = (
            f"unit_argument '{unit}' is not an argument of job{'s' if len(lacking) > 1 else ''} {names} "
            f"({endpoint}), so its cost is unknown; {hint}"
        )
        yield located.problem(("pricing", endpoint, "unit_argument"), message)
    for job in jobs:
        arguments = job.options.get("arguments", {})
        if not isinstance(arguments, dict) or unit not in arguments:
            continue
        where: PathKey = (*job.at("arguments"), unit)
        suffix = f" (job '{job.name}')" if where[0] == "defaults" else ""
        head = f"'{unit}' counts the units of {endpoint}'s price (pricing), so it must be a number"
        if not _may_be_number(arguments[unit]):
            yield located.problem(where, f"{head} or a whole ${{{{ matrix.X }}}}/${{{{ row.F }}}} template{suffix}")
        elif (column := _untyped_csv_column(arguments[unit], job.options.get("dataset"))) is not None:
            yield located.problem(
                where,
                f"{head}, but CSV column '{column}' is a string; give the dataset "
                f"`types: {{{column}: int}}` (or float){suffix}",
            )


def _may_be_number(value: Any) -> bool:
    """Whether an argument can render as a number: a number, or a string that is exactly one
    matrix/row/repeat template (it then takes that value's type). Text never is one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    if not isinstance(value, str) or "${{" not in value:
        return False
    try:
        parts = parse(value)
    except TemplateError:
        return True  # a malformed template: reported on its own
    return len(parts) == 1 and isinstance(parts[0], Ref) and parts[0].namespace != "env"


def _untyped_csv_column(value: Any, source: Any) -> str | None:
    """The column a whole `${{ row.F }}` copies from a CSV dataset that does not type it as a number."""
    if not isinstance(value, str) or "${{" not in value:
        return None
    try:
        (ref,) = parse(value)
    except (TemplateError, ValueError):
        return None
    if not isinstance(ref, Ref) or ref.namespace != "row":
        return None
    path, types = (source.get("path"), source.get("types") or {}) if isinstance(source, dict) else (source, {})
    if not isinstance(path, str) or not path.lower().endswith(".csv") or not isinstance(types, dict):
        return None
    return None if types.get(ref.name) in ("int", "float") else ref.name


def _budget_problems(
    located: Located, pricing: dict[str, Any], by_endpoint: dict[str, list[JobSource]], key: str
) -> Iterator[Problem]:
    """A budget can only be kept when every request has a price: one error per unpriced endpoint."""
    priced = [e for e, p in pricing.items() if isinstance(p, dict)]
    for endpoint, jobs in by_endpoint.items():
        if endpoint in priced:
            continue
        names = ", ".join(f"'{j.name}'" for j in jobs)
        close = difflib.get_close_matches(endpoint, [e for e in priced if e not in by_endpoint], n=1, cutoff=0.8)
        hint = (
            f"did you mean pricing key '{close[0]}'?"
            if close
            else f"add `{endpoint}: {{per_request: USD}}` under pricing"
        )
        message = (
            f"a budget needs a price for every endpoint, but {endpoint} (job{'s' if len(jobs) > 1 else ''} "
            f"{names}) has none in pricing; {hint}"
        )
        yield located.problem(("budget", key), message, at_key=True)
