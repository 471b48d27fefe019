"""Expectations: per-request checks on a result, recorded as {passed, message, check}. Pure.

Check kinds (one per check):

    {path: images[0].url, exists: true}      present (a null value is present); false: absent
    {path: seed, equals: 7}                  JSON equality (1 == 1.0, but true != 1)
    {path: prompt, matches: "^a cat"}        re.search on a string value
    {path: images[0].width, min: 256, max: 1024}   inclusive bounds; either may be left out
    {latency_s: {max: 30, min: 0.1}}         the request's latency in seconds
    {schema: {...}}                          JSON Schema 2020-12 applied to the whole result
    {schema: pinned}                         the endpoint's pinned output schema (batchrun.spec.endpoints)

Paths use the language of `batchrun.spec.resultpath`. A malformed check does not raise: it becomes a
failed expectation whose message says what is wrong, so one bad check cannot stop a run.

Any value of a check may hold `${{ matrix.X }}`, `${{ row.X }}` or `${{ repeat }}`:
`batchrun.toolkit.expectations.Expectations` renders them per request by the argument templates' rules
(batchrun.spec.template), so a template that is the whole string keeps the value's type
(`equals: "${{ matrix.seed }}"` compares to the integer) and `$${{` is a literal `${{`. `${{ env.X }}` is
refused by validation: an expected value is echoed in failure messages and stored in records, so a
secret would leak.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from batchrun.spec.resultpath import (
    MISSING,
    PathError,
    get_path,
    is_number,
    json_equal,
    parse_path,
    show_value,
)
from batchrun.spec.template import (
    is_template,
    strings,
)

_PATH_KINDS = ("exists", "equals", "matches")
PINNED = "pinned"  # `{schema: pinned}`
_VALIDATORS: dict[int, tuple[Any, jsonschema.Draft202012Validator]] = {}


def _validator(schema: dict[str, Any] | bool) -> jsonschema.Draft202012Validator:
    """One validator per schema object: a pinned output schema is checked on every result, and
    building a validator costs more than most checks (keyed by identity, the schema kept alive)."""
    found = _VALIDATORS.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    validator = jsonschema.Draft202012Validator(schema)
    if len(_VALIDATORS) > 256:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, validator)
    return validator


def check_expectations(
    checks: list[dict[str, Any]], result: dict[str, Any] | None, latency_s: float | None,
    pinned: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Apply each check to one request's result.

    Args:
        checks: the job's `expect:` list.
        result: the request's result (None for a failed request: every path is then missing).
        latency_s: the request's latency in seconds, None when unknown.
        pinned: the endpoint's pinned output schema, for `{schema: pinned}` checks.

    Returns:
        One `{"passed": bool, "message": str, "check": check}` per check, in order.
    """
    out = []
    for check in checks:
        passed, message = _check_one(check, result, latency_s, pinned)
        out.append({"passed": passed, "message": message, "check": check})
    return out


def check_problems(check: Any, *, templates: bool = False) -> list[str]:
    """What is wrong with one check's shape (empty when it is well formed); for the spec loader.

    `templates`: the check is as written in the spec, so a value holding a matrix/row/repeat
    template is known only per request and its own checks wait until then (a rendered check that
    is malformed fails as `invalid check: ...`)."""
    if not isinstance(check, dict):
        return [f"a check must be a mapping, got {show_value(check)}"]
    if templates and any(is_template(v) for v in strings(check)):
        check = _without_templates(check)
    if "schema" in check:
        return _schema_problems(check)
    if "latency_s" in check:
        return _latency_problems(check)
    if "path" not in check:
        return ["a check needs 'path' (with exists, equals, matches or min/max), 'latency_s' or 'schema'"]
    problems = []
    path = check["path"]
    if path is _TEMPLATED:
        pass
    elif not isinstance(path, str):
        problems.append(f"path must be a string, got {show_value(path)}")
    else:
        try:
            parse_path(path)
        except PathError as exc:
            problems.append(str(exc))
    kinds = [k for k in _PATH_KINDS if k in check]
    if "min" in check or "max" in check:
        kinds.append("min/max")
    unknown = sorted(set(check) - {"path", "min", "max", *_PATH_KINDS})
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)}")
    if len(kinds) != 1:
        problems.append(
            "a path check needs exactly one of exists, equals, matches, min/max"
            + (f"; got {', '.join(kinds)}" if kinds else "")
        )
    elif kinds == ["exists"] and not isinstance(check["exists"], bool) and check["exists"] is not _TEMPLATED:
        problems.append(f"exists must be true or false, got {show_value(check['exists'])}")
    elif kinds == ["matches"]:
        problems.extend(_regex_problems(check["matches"]))
    elif kinds == ["min/max"]:
        problems.extend(_bounds_problems(check))
    return problems


class _Templated:
    """A value known only per request: the validate-time shape checks accept it."""

    def __repr__(self) -> str:
        return "<templated>"


_TEMPLATED = _Templated()


def _without_templates(check: dict[str, Any]) -> dict[str, Any]:
    """The check with each templated value replaced by _TEMPLATED; a templated JSON Schema is
    taken as a whole (it can be checked only once rendered)."""

    def walk(value: Any) -> Any:
        if is_template(value):
            return _TEMPLATED
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = {k: walk(v) for k, v in check.items()}
    if "schema" in out and any(is_template(v) for v in strings(check["schema"])):
        out["schema"] = _TEMPLATED
    return out


def is_pinned_schema(check: Any) -> bool:
    return isinstance(check, dict) and check.get("schema") == PINNED


def _schema_problems(check: dict[str, Any]) -> list[str]:
    if set(check) != {"schema"}:
        return [f"a schema check takes only 'schema', got {', '.join(sorted(check))}"]
    if check["schema"] is _TEMPLATED or check["schema"] == PINNED:
        return []
    if isinstance(check["schema"], str):
        return [f"schema must be a JSON Schema object or `pinned` (the endpoint's pinned output schema), "
                f"got {show_value(check['schema'])}"]
    if not isinstance(check["schema"], dict | bool):
        return [f"schema must be a JSON Schema object, got {show_value(check['schema'])}"]
    try:
        jsonschema.Draft202012Validator.check_schema(check["schema"])
    except jsonschema.SchemaError as exc:
        return [f"invalid JSON Schema: {exc.message}"]
    return []


def _latency_problems(check: dict[str, Any]) -> list[str]:
    if set(check) != {"latency_s"}:
        return [f"a latency check takes only 'latency_s', got {', '.join(sorted(check))}"]
    bounds = check["latency_s"]
    if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
        return [f"latency_s must be a mapping with min and/or max, got {show_value(bounds)}"]
    return _bounds_problems(bounds)


def _bounds_problems(bounds: dict[str, Any]) -> list[str]:
    problems = [
        f"{key} must be a number, got {show_value(bounds[key])}"
        for key in ("min", "max")
        if key in bounds and not is_number(bounds[key]) and bounds[key] is not _TEMPLATED
    ]
    if not problems and is_number(bounds.get("min")) and is_number(bounds.get("max")) and bounds["min"] > bounds["max"]:
        problems.append(f"min {show_value(bounds['min'])} is greater than max {show_value(bounds['max'])}")
    return problems


def _regex_problems(pattern: Any) -> list[str]:
    if pattern is _TEMPLATED:
        return []
    if not isinstance(pattern, str):
        return [f"matches must be a regular expression string, got {show_value(pattern)}"]
    try:
        re.compile(pattern)
    except re.error as exc:
        return [f"invalid regular expression {show_value(pattern)}: {exc}"]
    return []


def _check_one(check: Any, result: dict[str, Any] | None, latency_s: float | None,
               pinned: dict[str, Any] | None) -> tuple[bool, str]:  # fmt: skip
    problems = check_problems(check)
    if problems:
        return False, f"invalid check: {'; '.join(problems)}"
    if is_pinned_schema(check):
        if pinned is None:  # validation requires one; a re-check of an old output may lack it
            return False, "schema (pinned): the endpoint has no pinned output schema"
        passed, message = _check_schema(pinned, result)
        return passed, message.replace("schema:", "schema (pinned):", 1)
    if "schema" in check:
        return _check_schema(check["schema"], result)
    if "latency_s" in check:
        if latency_s is None:
            return False, "latency_s: missing"
        return _check_bounds("latency_s", latency_s, check["latency_s"])
    label = check["path"]
    value = get_path(result, parse_path(label)) if result is not None else MISSING
    if "exists" in check:
        if check["exists"]:
            return (True, f"{label}: exists") if value is not MISSING else (False, f"{label}: missing")
        if value is MISSING:
            return True, f"{label}: absent"
        return False, f"{label}: expected to be absent, got {show_value(value)}"
    if value is MISSING:
        return False, f"{label}: missing"
    if "equals" in check:
        if json_equal(value, check["equals"]):
            return True, f"{label}: equals {show_value(value)}"
        return False, f"{label}: expected {show_value(check['equals'])}, got {show_value(value)}"
    if "matches" in check:
        pattern = check["matches"]
        if not isinstance(value, str):
            return False, f"{label}: expected a string matching {show_value(pattern)}, got {show_value(value)}"
        if re.search(pattern, value):
            return True, f"{label}: matches {show_value(pattern)}"
        return False, f"{label}: expected a match for {show_value(pattern)}, got {show_value(value)}"
    return _check_bounds(label, value, check)


def _check_bounds(label: str, value: Any, bounds: dict[str, Any]) -> tuple[bool, str]:
    low, high = bounds.get("min"), bounds.get("max")
    if low is not None and high is not None:
        wanted = f"between {show_value(low)} and {show_value(high)}"
    elif low is not None:
        wanted = f">= {show_value(low)}"
    else:
        wanted = f"<= {show_value(high)}"
    if not is_number(value):
        return False, f"{label}: expected a number {wanted}, got {show_value(value)}"
    if (low is not None and value < low) or (high is not None and value > high):
        return False, f"{label}: expected {wanted}, got {show_value(value)}"
    return True, f"{label}: {show_value(value)} is {wanted}"


def _check_schema(schema: dict[str, Any] | bool, result: dict[str, Any] | None) -> tuple[bool, str]:
    validator = _validator(schema)
    errors = sorted(validator.iter_errors(result), key=lambda e: (list(e.absolute_path), e.message))
    if not errors:
        return True, "schema: valid"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return False, f"schema: {first.json_path}: {first.message}{more}"
