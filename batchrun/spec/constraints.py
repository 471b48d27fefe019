"""Job `constraints:`: rules a matrix combination must follow to be planned, written like the spec.

    constraints:
      - if: {model: fal-ai/flux/schnell}     # when every condition of `if` holds ...
        then: {steps: {max: 8}}             # ... every condition of `then` must hold too
      - then: {sampler: {not: ddim}}        # no `if`: always

A condition maps a matrix key to a value (equal to it), a list (one of them) or an operator mapping
with `not` (a value or a list: none of them), `min`/`max` (numbers, inclusive). A mapping is always
an operator mapping: to compare with a mapping value, put it in a list. A combination is planned
when it holds every constraint; exclude entries are rules of the same kind (see batchrun.plan.design).

This module parses (`build`) and checks (`problems`) the notation; the checks return paths relative
to the job's `constraints` so the spec checker locates them in the YAML.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ["Condition", "Constraint", "build", "problems"]

_OPERATORS = ("not", "min", "max")


@dataclasses.dataclass(frozen=True, slots=True)
class Condition:
    key: str
    any_of: tuple[Any, ...] = ()  # the value must equal one of these (empty: no such test)
    none_of: tuple[Any, ...] = ()
    min: float | None = None
    max: float | None = None

    def holds(self, value: Any) -> bool:
        if self.any_of and not any(value == v for v in self.any_of):
            return False
        if any(value == v for v in self.none_of):
            return False
        if self.min is not None or self.max is not None:
            if not _is_number(value):
                return False
            if self.min is not None and value < self.min:
                return False
            if self.max is not None and value > self.max:
                return False
        return True


@dataclasses.dataclass(frozen=True, slots=True)
class Constraint:
    when: tuple[Condition, ...]
    then: tuple[Condition, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.key for c in (*self.when, *self.then)))

    def holds(self, combo: Mapping[str, Any]) -> bool:
        """Whether `combo` (which has every key of the constraint) follows it."""
        if not all(c.holds(combo[c.key]) for c in self.when):
            return True
        return all(c.holds(combo[c.key]) for c in self.then)


def build(raw: list[dict[str, Any]]) -> list[Constraint]:
    """Constraints from checked spec data (see `problems`)."""
    return [Constraint(_conditions(entry.get("if") or {}), _conditions(entry["then"])) for entry in raw]


def _conditions(raw: Mapping[str, Any]) -> tuple[Condition, ...]:
    out = []
    for key, test in raw.items():
        if isinstance(test, list):
            out.append(Condition(key, any_of=tuple(test)))
        elif isinstance(test, dict):
            banned = test.get("not", ())
            out.append(Condition(
                key,
                none_of=tuple(banned) if isinstance(banned, list) else (banned,),
                min=test.get("min"),
                max=test.get("max"),
            ))
        else:
            out.append(Condition(key, any_of=(test,)))
    return tuple(out)


Found = tuple[tuple[str | int, ...], str, bool]  # (path relative to `constraints`, message, at the key)


def problems(raw: Any, matrix: Mapping[str, Any], job: str) -> list[Found]:
    """What is wrong with a job's constraints beyond their shape (the schema's): keys that are no
    matrix key, values that are none of the key's values, min/max on a key with non-numbers.
    Each would make a constraint that silently never applies (or always does)."""
    found: list[Found] = []
    if not isinstance(raw, list):
        return found
    keys = list(matrix)
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        for part in ("if", "then"):
            conditions = entry.get(part)
            if not isinstance(conditions, dict):
                continue
            for key, test in conditions.items():
                where = (i, part, key)
                if key not in matrix:
                    found.append((where, _unknown_key(key, keys, job), True))
                    continue
                values = matrix[key] if isinstance(matrix[key], list) else []
                found.extend(_test_problems(where, key, test, values))
    return found


def _test_problems(where: tuple[str | int, ...], key: str, test: Any, values: list[Any]) -> list[Found]:
    out: list[Found] = []

    def known(value: Any, at: tuple[str | int, ...]) -> None:
        if not any(value == v for v in values):
            shown = ", ".join(_show(v) for v in values[:10]) + (" ..." if len(values) > 10 else "")
            out.append((at, f"{_show(value)} is not a value of matrix key '{key}' (its values: {shown})", False))

    if isinstance(test, list):
        for j, value in enumerate(test):
            known(value, (*where, j))
    elif isinstance(test, dict):
        banned = test.get("not")
        if isinstance(banned, list):
            for j, value in enumerate(banned):
                known(value, (*where, "not", j))
        elif "not" in test:
            known(banned, (*where, "not"))
        for op in ("min", "max"):
            if op in test:
                odd = next((v for v in values if not _is_number(v)), None)
                if odd is not None:
                    out.append(((*where, op), f"{op} compares numbers, but matrix key '{key}' has {_show(odd)}",
                                True))
        low, high = test.get("min"), test.get("max")
        if _is_number(low) and _is_number(high) and low > high:
            out.append(((*where, "min"), f"min ({low}) is greater than max ({high}): no value can hold", True))
    else:
        known(test, where)
    return out


def _unknown_key(key: str, keys: list[str], job: str) -> str:
    head = f"constraint key '{key}' is not in the matrix"
    if not keys:
        return f"{head}: job '{job}' has no matrix"
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    return f"{head}; did you mean '{close[0]}'?" if close else f"{head}; matrix keys: {', '.join(keys)}"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True) if not isinstance(value, str) else f"'{value}'"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
