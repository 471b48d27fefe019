"""A job's matrix combinations under its `strategy:` and `constraints:` (the design), then include.

- `full` (strategy None): the cartesian product in the order written, minus the combinations that
  an exclude entry matches or that break a constraint (batchrun.plan.matrix, lazily).
- `pairwise` / `{tway: T}`: a T-way covering design (batchrun.plan.covering): every combination of
  values of any T keys that some allowed combination has appears in at least one planned
  combination. Exclude entries are rules of the design like constraints (an excluded combination
  is never planned, and the pairs it would have covered are covered by allowed ones).
- `include` keeps GitHub's meaning on top of either: merged into the design's combinations, or
  appended (an appended entry is the user's explicit choice and is not checked against constraints).

Designs work on a canonical order, keys by name and each key's values by their canonical JSON,
so reordering the matrix in the YAML does not change which combinations are planned (only the
full product's order follows the YAML). Duplicate values count once in a design.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from batchrun.plan import covering
from batchrun.plan import matrix as matrix_mod
from batchrun.spec.constraints import Constraint
from batchrun.spec.model import Job

__all__ = ["MAX_TUPLES", "combos", "count", "describe", "design_problem", "design_rows", "full_job", "keep"]

# A covering design considers every T-tuple of values (the 19,000 pairs of 20 keys x 10 values take
# 2-4 s, bench/design_sizes.py); past this the greedy is too slow to run on each plan.
MAX_TUPLES = 50_000


def keep(job: Job) -> Callable[[Mapping[str, Any]], bool] | None:
    """The constraints as a filter over full combinations (None without constraints)."""
    if not job.constraints:
        return None
    rules = job.constraints
    return lambda combo: all(c.holds(combo) for c in rules)


def _covering(job: Job) -> bool:
    return job.strategy is not None and bool(job.matrix) and job.strategy < len(job.matrix)


def combos(job: Job) -> Iterator[dict[str, Any]]:
    """The job's combinations in plan order, each a fresh dict."""
    if not _covering(job):
        return matrix_mod.expand(job.matrix, job.include, job.exclude, keep(job))
    rows = _rows(job)
    return matrix_mod.merge_include(lambda: (dict(row) for row in rows), set(job.matrix), job.include)


def count(job: Job) -> int:
    """How many combinations `combos` yields."""
    if not _covering(job):
        return matrix_mod.count(job.matrix, job.include, job.exclude, keep(job))
    rows = _rows(job)
    return matrix_mod.count_include(lambda: (dict(row) for row in rows), set(job.matrix), job.include, len(rows))


def full_job(job: Job) -> Job:
    """The job with the full product and no sample: what `plan --count` compares a design with."""
    return dataclasses.replace(job, strategy=None, sample=None)


def describe(job: Job) -> str:
    """"full", "pairwise", "3-way", plus the sample: the design column of `plan --count`."""
    name = "full" if job.strategy is None else "pairwise" if job.strategy == 2 else f"{job.strategy}-way"
    if job.sample is not None:
        name += f", sample {job.sample.n} (seed {job.sample.seed})"
    return name


def design_problem(job: Job) -> str | None:
    """Why the job's covering design is not computed (too many tuples), or None."""
    if not _covering(job):
        return None
    assert job.strategy is not None
    sizes = [len(_distinct(values)) for values in job.matrix.values()]
    n = covering.tuple_count(sizes, job.strategy)
    if n > MAX_TUPLES:
        return (f"a {describe(job)} design over this matrix has {n} value combinations to cover, more than "
                f"{MAX_TUPLES}; use fewer keys or values, a lower strategy, or sample: {{n, seed}}")
    return None


# ---- the covering design --------------------------------------------------------------------

# Validation counts the design and the plan walks it, in one process: compute it once per matrix.
_CACHE: dict[str, list[dict[str, Any]]] = {}


def _rows(job: Job) -> list[dict[str, Any]]:
    assert job.strategy is not None
    key = json.dumps([job.matrix, job.strategy, [_constraint_key(c) for c in job.constraints], job.exclude],
                     sort_keys=True, default=repr)
    rows = _CACHE.get(key)
    if rows is None:
        if len(_CACHE) >= 32:
            _CACHE.clear()
        rows = _CACHE[key] = design_rows(job.matrix, job.strategy, job.constraints, job.exclude)
    return rows


def _constraint_key(c: Constraint) -> Any:
    return [[(x.key, x.any_of, x.none_of, x.min, x.max) for x in part] for part in (c.when, c.then)]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def _distinct(values: Sequence[Any]) -> list[Any]:
    """The values, each canonical JSON once, in canonical order."""
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(_canonical(value), value)
    return [seen[k] for k in sorted(seen)]


def design_rows(matrix: Mapping[str, Sequence[Any]], t: int, constraints: Sequence[Constraint],
                exclude: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The t-way design's combinations (before include), in plan order."""
    names = sorted(matrix)
    index = {name: i for i, name in enumerate(names)}
    values = [_distinct(matrix[name]) for name in names]
    rules: list[covering.Rule] = []
    for c in constraints:
        keys = tuple(index[k] for k in c.keys)
        rules.append((keys, _holds(c, keys, names, values)))
    for entry in exclude:
        keys = tuple(index[k] for k in entry)
        rules.append((keys, _not_excluded(entry, keys, names, values)))
    written = list(matrix)  # combinations keep the YAML's key order, as the full product does
    out = []
    for row in covering.covering_rows([len(v) for v in values], t, rules):
        by_name = {names[k]: values[k][v] for k, v in enumerate(row)}
        out.append({name: by_name[name] for name in written})
    return out


def _holds(c: Constraint, keys: tuple[int, ...], names: list[str],
           values: list[list[Any]]) -> Callable[[tuple[int, ...]], bool]:
    def holds(picked: tuple[int, ...]) -> bool:
        return c.holds({names[k]: values[k][v] for k, v in zip(keys, picked, strict=True)})
    return holds


def _not_excluded(entry: Mapping[str, Any], keys: tuple[int, ...], names: list[str],
                  values: list[list[Any]]) -> Callable[[tuple[int, ...]], bool]:
    def holds(picked: tuple[int, ...]) -> bool:
        return not all(values[k][v] == entry[names[k]] for k, v in zip(keys, picked, strict=True))
    return holds
