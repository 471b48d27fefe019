"""The JSON Schemas shipped as package data, and their errors as located Problems for people.

The schemas are loaded via importlib.resources (so they work from a wheel). jsonschema reports an
unknown key on its parent object; we point at the key itself and suggest the nearest valid key.
Every message names the value we got and what was expected.
"""

from __future__ import annotations

import difflib
import functools
import importlib.resources
import json
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from batchrun.errors import Problem
from batchrun.spec.yamlsource import Located, PathKey


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """`load_schema("spec")` -> the parsed batchrun/schemas/spec.schema.json."""
    resource = importlib.resources.files("batchrun") / "schemas" / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


def _is_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 2.0 (and 1e30) as an integer; the spec's integers count things (repeat,
    # concurrency, attempts), where a float then crashed the plan (range(2.0)) or grew the run.
    return isinstance(instance, int) and not isinstance(instance, bool)


# Draft 2020-12's types, with "integer" meaning a written integer (`2`, not `2.0`).
_Validator = validators.extend(
    Draft202012Validator, type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer)
)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """One validator per schema, built once (building compiles $refs)."""
    built: Draft202012Validator = _Validator(load_schema(name))
    return built

_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
    "null": "null",
}
_NAME_RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit"


def show(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a value for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def job_option_names() -> list[str]:
    return list(load_schema("spec")["$defs"]["defaults"]["properties"])


def schema_problems(located: Located) -> tuple[list[Problem], set[PathKey]]:
    """Validate against spec.schema.json. Returns problems and the data paths that had errors."""
    problems: list[Problem] = []
    bad: set[PathKey] = set()
    errors = sorted(validator("spec").iter_errors(located.data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        for path, message, at_key in _translate(error):
            if message.startswith("missing required key"):
                bad.add((*path, message.split("'")[1]))
            else:
                bad.add(path)
            problems.append(located.problem(path, message, at_key=at_key))
    return problems, bad


def _translate(error: ValidationError) -> Iterator[tuple[PathKey, str, bool]]:
    path: PathKey = tuple(error.absolute_path)
    inst = error.instance
    kind = error.validator if isinstance(error.validator, str) else ""  # always set on a validator's error
    value = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    name = path[-1] if path else None
    if kind in ("additionalProperties", "unevaluatedProperties") and value is False and isinstance(inst, dict):
        allowed = list(schema.get("properties", {}))
        for key in inst:
            if key not in allowed:
                yield (*path, key), _unknown_key(key, allowed, path), True
        return
    if kind == "required" and isinstance(value, list):
        for key in value:
            if isinstance(inst, dict) and key not in inst:
                yield path, f"missing required key '{key}'", False
        return
    if kind in ("anyOf", "oneOf"):
        yield from _translate_branches(error, path)
        return
    if kind == "dependentRequired" and isinstance(inst, dict):
        for key, needs in schema.get("dependentRequired", {}).items():
            missing = [n for n in needs if n not in inst]
            if key in inst and missing:
                yield (*path, key), f"'{key}' needs {', '.join(repr(m) for m in missing)} as well", True
        return
    if path == ("target",) and kind in ("type", "enum"):
        yield path, f"must be fal, local or a mapping with run_url and queue_url, got {show(inst)}", False
        return
    yield path, _message(kind, value, inst, name, path) or error.message, False


def _translate_branches(error: ValidationError, path: PathKey) -> Iterator[tuple[PathKey, str, bool]]:
    """anyOf: report the errors of the branch whose type fits the value, else a summary."""
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    if path and path[-1] == "strategy" and not isinstance(error.instance, dict):
        hint = ""
        if isinstance(error.instance, str):
            close = difflib.get_close_matches(error.instance, ["full", "pairwise"], n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
        yield path, f"must be full, pairwise or {{tway: T}}, got {show(error.instance)}{hint}", False
        return
    for i, branch in enumerate(branches):
        wanted = branch.get("type")
        if wanted is not None and _type_fits(error.instance, wanted):
            sub = [c for c in (error.context or []) if c.relative_schema_path and c.relative_schema_path[0] == i]
            for child in sub:
                yield from _translate(child)
            if sub:
                return
    if path and path[-1] == "dataset":
        yield path, f"must be a file path, a list of row mappings or {{path, types}}, got {show(error.instance)}", False
        return
    yield path, error.message, False


def _type_fits(value: Any, wanted: str | list[str]) -> bool:
    names = [wanted] if isinstance(wanted, str) else wanted
    checks = {
        "string": lambda v: isinstance(v, str),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "null": lambda v: v is None,
    }
    return any(checks[n](value) for n in names if n in checks)


def _unknown_key(key: str, allowed: list[str], parent: PathKey) -> str:
    message = f"unknown key '{key}'"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f"{message}; did you mean '{close[0]}'?"
    if parent == () and key in job_option_names():
        return f"{message}; '{key}' is a job option: put it in a job or under defaults"
    return f"{message}; expected one of: {', '.join(allowed)}"


def _message(kind: str, value: Any, inst: Any, name: str | int | None, path: PathKey) -> str | None:
    if kind == "type":
        wanted = [value] if isinstance(value, str) else list(value)
        expected = " or ".join(_TYPE_NAMES.get(w, w) for w in wanted)
        return f"must be {expected}, got {show(inst)}"
    if kind == "enum":
        options = ", ".join(str(v) for v in value)
        hint = ""
        if isinstance(inst, str):
            close = difflib.get_close_matches(inst, [str(v) for v in value], n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"must be one of {options}, got {show(inst)}{hint}"
    if kind == "const" and name == "version":
        return f"unsupported spec version {show(inst)}; this batchrun reads version 1"
    if kind == "const":
        return f"must be {show(value)}, got {show(inst)}"
    if kind == "exclusiveMinimum" and name == "start_timeout":
        return f"must be greater than 1 second (fal's minimum start_timeout), got {show(inst)}"
    if kind == "minimum":
        return f"must be at least {value}, got {show(inst)}"
    if kind == "exclusiveMinimum":
        return f"must be greater than {value}, got {show(inst)}"
    if kind == "maximum":
        return f"must be at most {value}, got {show(inst)}"
    if kind == "minItems" and name == "jobs":
        return "needs at least one job"
    if kind == "minItems" and len(path) >= 2 and path[-2] == "matrix":
        return f"matrix list '{name}' is empty; give at least one value (or remove the key)"
    if kind in ("minItems", "minLength", "minProperties"):
        return "must not be empty"
    if kind == "pattern" and name in ("name",):
        return f"{show(inst)} is not a valid name: {_NAME_RULE}"
    if kind == "pattern" and name in ("run_url", "queue_url"):
        return f"must be an http:// or https:// URL, got {show(inst)}"
    if kind == "pattern" and name in ("media_lifetime", "ttl"):
        never = "; or never" if name == "media_lifetime" else ""
        return f"must be seconds or a number with s, m, h, d or w (90, 30m, 12h, 7d){never}, got {show(inst)}"
    if kind == "pattern" and name == "arguments":
        return ("must be an object of arguments, or a whole dataset row as the body: \"${{ row }}\" or "
                f"\"${{{{ row.COLUMN }}}}\"; got {show(inst)}")
    return None
