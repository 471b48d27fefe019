"""Each job's arguments against its endpoint's pinned input schema (batchrun.spec.endpoints), before
anything is sent: most fal apps ignore an unknown field, so `num_image: 4` would be paid for in full
and noticed only in the pictures.

Checked: unknown arguments (with a did-you-mean), types, enums, bounds (minimum/maximum, exclusive
ones, lengths, item counts) and required arguments, located at the spec's FILE:LINE:COL. A literal
value is checked as written. A whole-value template is checked over what it can take, without
walking the plan: `${{ matrix.X }}` for each of X's values (located at the offending matrix value),
`${{ row.F }}` by the column's type (a CSV column is a string unless `types:` says otherwise; an
inline dataset's rows by value; a JSONL file's untyped columns are not known without reading it, so
not checked), `${{ repeat }}` as an integer. An interpolated string and a `$file` (sent as a data
URI) are strings. `${{ env.X }}` values are not known before sending and are not checked.

Only a small, common part of JSON Schema / OpenAPI 3.0 is understood; a keyword it does not know
is not checked (never a false error).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any, TypeGuard

from batchrun.errors import Problem
from batchrun.spec import endpoints, yamlsource
from batchrun.spec.checks import JobSource
from batchrun.spec.model import Job, Spec
from batchrun.spec.template import Ref, TemplateError, parse

__all__ = ["argument_problems"]

_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean"}
_MAX_PER_JOB = 20  # problems reported per job; a sweep with one typo must not print a screenful


def argument_problems(spec: Spec, located: yamlsource.Located, jobs: list[JobSource],
                      pinned: dict[str, endpoints.Pinned]) -> tuple[list[Problem], list[Job]]:
    """(problems, jobs that were not checked: their endpoint has no pinned input schema, or their
    arguments are a whole-row template)."""
    problems: list[Problem] = []
    unchecked: list[Job] = []
    for job, source in zip(spec.jobs, jobs, strict=True):
        pin = pinned.get(job.endpoint)
        schema = pin.input if pin is not None else None
        # Whole-argument rows (`arguments: "${{ row }}"`) are each row's own object: not known before
        # the plan reads them, so such a job counts as not checked.
        if pin is None or schema is None or not isinstance(job.arguments, dict):
            unchecked.append(job)
            continue
        checker = _JobChecker(job, source, located, pin)
        found = list(checker.check_object(job.arguments, schema, (), root=True))
        problems.extend(found[:_MAX_PER_JOB])
    return problems, unchecked


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fits(actual: str, wanted: str) -> bool:
    return actual == wanted or (wanted == "number" and actual == "integer")


class _JobChecker:
    def __init__(self, job: Job, source: JobSource, located: yamlsource.Located, pin: endpoints.Pinned) -> None:
        self.job, self.source, self.located, self.pin = job, source, located, pin
        self.base = source.at("arguments")

    # -- locating ------------------------------------------------------------------------------

    def _problem(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False,
                 where: yamlsource.PathKey | None = None) -> Problem:
        suffix = f" (job '{self.job.name}')" if self.base[0] == "defaults" else ""
        return self.located.problem(where if where is not None else (*self.base, *path),
                                    f"{message} ({self.pin.endpoint_id}'s pinned schema){suffix}", at_key=at_key)

    @staticmethod
    def _name(path: tuple[str | int, ...]) -> str:
        out = ""
        for part in path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "arguments"

    # -- objects -------------------------------------------------------------------------------

    def check_object(self, value: dict[str, Any], schema: dict[str, Any], path: tuple[str | int, ...],
                     root: bool = False) -> Iterator[Problem]:
        props = endpoints.properties(schema)
        extra = schema.get("additionalProperties", None)
        for key, item in value.items():
            if key in props:
                yield from self.check_value(item, endpoints.resolve(self.pin.openapi, props[key]), (*path, key))
            elif isinstance(extra, dict):
                yield from self.check_value(item, endpoints.resolve(self.pin.openapi, extra), (*path, key))
            elif extra is None and props or extra is False:
                # fal's documents leave additionalProperties out although the apps ignore unknown fields
                close = difflib.get_close_matches(key, list(props), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(list(props)[:12])}"
                what = "argument" if root else "field"
                yield self._problem((*path, key), f"unknown {what} '{self._name((*path, key))}'{hint}", at_key=True)
        required = schema.get("required")
        for key in required if isinstance(required, list) else []:
            if isinstance(key, str) and key not in value:
                where = (*path,) if path else ()
                yield self._problem(where, f"missing required {'argument' if root else 'field'} "
                                           f"'{self._name((*path, key))}'", at_key=True)

    # -- values --------------------------------------------------------------------------------

    def check_value(self, value: Any, schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Problem]:
        if isinstance(value, str) and "${{" in value:
            yield from self._check_template(value, schema, path)
            return
        if isinstance(value, dict) and len(value) == 1 and "$file" in value:
            yield from self._literal(f"data:...;base64 of {value['$file']}", schema, path, types_only=True)
            return
        if isinstance(value, dict) and _type_of(value) == "object" and self._wants(schema, "object"):
            yield from self.check_object(value, schema, path)
            return
        yield from self._literal(value, schema, path)

    def _wants(self, schema: dict[str, Any], kind: str) -> bool:
        wanted = schema.get("type")
        return wanted == kind or (isinstance(wanted, list) and kind in wanted) or (
            wanted is None and isinstance(schema.get("properties"), dict) and kind == "object")

    def _literal(self, value: Any, schema: dict[str, Any], path: tuple[str | int, ...], *, origin: str = "",
                 where: yamlsource.PathKey | None = None, types_only: bool = False) -> Iterator[Problem]:
        message = self.mismatch(value, schema, types_only=types_only)
        if message is not None:
            yield self._problem(path, f"'{self._name(path)}' {message}{origin}", where=where)

    def mismatch(self, value: Any, schema: dict[str, Any], *, types_only: bool = False, depth: int = 0) -> str | None:
        """Why `value` does not fit `schema` (one message), or None when it fits or cannot be told."""
        schema = endpoints.resolve(self.pin.openapi, schema)
        if not isinstance(schema, dict) or depth > 16:
            return None
        options = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(options, list) and options:
            results = [self.mismatch(value, o, types_only=types_only, depth=depth + 1) for o in options]
            if all(r is not None for r in results):
                # the form of the value's own type says most (`image_size: huge`: not one of the presets)
                same = [r for o, r in zip(options, results, strict=True)
                        if _fits(_type_of(value), endpoints.resolve(self.pin.openapi, o).get("type", ""))]
                if len(same) == 1:
                    return same[0]
                return "matches none of its allowed forms: " + "; ".join(dict.fromkeys(r for r in results if r))
        for part in schema.get("allOf") or []:
            found = self.mismatch(value, part, types_only=types_only, depth=depth + 1)
            if found is not None:
                return found
        actual = _type_of(value)
        if value is None and schema.get("nullable") is True:
            return None
        wanted = schema.get("type")
        wanted_list = wanted if isinstance(wanted, list) else [wanted] if isinstance(wanted, str) else []
        if wanted_list and not any(_fits(actual, w) for w in wanted_list):
            return f"must be {' or '.join(_article(w) for w in wanted_list)}, got {actual} {_describe(value)}"
        if types_only:
            return None
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            shown = ", ".join(_describe(e) for e in enum[:12]) + (", ..." if len(enum) > 12 else "")
            return f"must be one of {shown}; got {_describe(value)}"
        if "const" in schema and value != schema["const"]:
            return f"must be {_describe(schema['const'])}, got {_describe(value)}"
        if actual in ("integer", "number"):
            return _bounds(value, schema)
        if actual == "string":
            return _lengths(len(value), schema, "characters", "minLength", "maxLength", value)
        if actual == "array":
            found = _lengths(len(value), schema, "items", "minItems", "maxItems", value)
            if found is not None:
                return found
            items = schema.get("items")
            if isinstance(items, dict):
                for i, item in enumerate(value):
                    inner = self.mismatch(item, items, depth=depth + 1)
                    if inner is not None:
                        return f"item {i} {inner}"
        if actual == "object" and isinstance(schema.get("properties"), dict):
            props = schema["properties"]
            for key in schema.get("required") or []:
                if key not in value:
                    return f"needs field '{key}'"
            for key, item in value.items():
                if key in props:
                    inner = self.mismatch(item, props[key], depth=depth + 1)
                    if inner is not None:
                        return f"field '{key}' {inner}"
        return None

    # -- templates -----------------------------------------------------------------------------

    def _check_template(self, text: str, schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Problem]:
        try:
            parts = parse(text)
        except TemplateError:
            return  # reported by the spec checks
        if len(parts) != 1 or not isinstance(parts[0], Ref):
            yield from self._literal(text, schema, path, types_only=True, origin=" (an interpolated string)")
            return
        ref = parts[0]
        if ref.namespace == "matrix":
            yield from self._check_matrix(ref.name, schema, path)
        elif ref.namespace == "repeat":
            yield from self._literal(0, schema, path, types_only=True, origin=" (${{ repeat }} is an integer)")
        elif ref.namespace == "row":
            yield from self._check_row(ref.name, schema, path)

    def _check_matrix(self, name: str, schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Problem]:
        values = self.job.matrix.get(name)
        matrix_at = self.source.at("matrix")
        for i, value in enumerate(values if isinstance(values, list) else []):
            message = self.mismatch(value, schema)
            if message is not None:
                yield self._problem(path, f"'{self._name(path)}' {message} (matrix.{name} value {i}, used at "
                                          f"arguments.{self._name(path)})", where=(*matrix_at, name, i))
                return  # one per argument: the rest of the sweep is likely the same mistake
        for i, combo in enumerate(self.job.include):
            if isinstance(combo, dict) and name in combo:
                message = self.mismatch(combo[name], schema)
                if message is not None:
                    yield self._problem(path, f"'{self._name(path)}' {message} (include[{i}].{name})",
                                        where=(*self.source.at("include"), i, name))
                    return

    def _check_row(self, name: str, schema: dict[str, Any], path: tuple[str | int, ...]) -> Iterator[Problem]:
        dataset = self.job.dataset
        if isinstance(dataset, list):  # inline rows: few, so each is checked by value
            for i, row in enumerate(dataset):
                if isinstance(row, dict) and name in row:
                    message = self.mismatch(row[name], schema)
                    if message is not None:
                        yield self._problem(path, f"'{self._name(path)}' {message} (dataset row {i}, field '{name}')",
                                            where=(*self.source.at("dataset"), i, name))
                        return
            return
        typed = self.job.dataset_types.get(name)
        if typed in _JSON_TYPES:
            kind = _JSON_TYPES[typed]
        elif typed is None and dataset is not None and dataset.suffix.lower() == ".csv":
            kind = "string"
        else:
            return  # json-typed or a JSONL/YAML column: its type is known only row by row
        sample = {"integer": 0, "number": 0.5, "boolean": False, "string": ""}[kind]
        message = self.mismatch(sample, schema, types_only=True)
        if message is not None:
            hint = (f"; give the dataset `types: {{{name}: int}}` (or float, bool)"
                    if kind == "string" and self._wants_scalar(schema) else "")
            yield self._problem(path, f"'{self._name(path)}' must be {self._wanted(schema)}, but dataset column "
                                      f"'{name}' is {_article(kind)}{hint}")

    def _wants_scalar(self, schema: dict[str, Any]) -> bool:
        return any(self._wants(schema, k) for k in ("integer", "number", "boolean"))

    def _wanted(self, schema: dict[str, Any]) -> str:
        wanted = schema.get("type")
        wanted_list = wanted if isinstance(wanted, list) else [wanted] if isinstance(wanted, str) else []
        return " or ".join(_article(w) for w in wanted_list) or "of another type"


def _article(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _bounds(value: float, schema: dict[str, Any]) -> str | None:
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:  # OpenAPI 3.0: a boolean modifying minimum
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    if _num(low) and value < low:
        return f"must be >= {low}, got {_describe(value)}"
    if _num(high) and value > high:
        return f"must be <= {high}, got {_describe(value)}"
    if _num(ex_low) and value <= ex_low:
        return f"must be > {ex_low}, got {_describe(value)}"
    if _num(ex_high) and value >= ex_high:
        return f"must be < {ex_high}, got {_describe(value)}"
    return None


def _lengths(n: int, schema: dict[str, Any], what: str, low_key: str, high_key: str, value: Any) -> str | None:
    low, high = schema.get(low_key), schema.get(high_key)
    if _num(low) and n < low:
        return f"must have at least {low} {what}, got {n}"
    if _num(high) and n > high:
        return f"must have at most {high} {what}, got {n}"
    return None


def _num(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
