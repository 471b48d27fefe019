"""Column types for dataset rows: `dataset: {path: F, types: {seed: int, hd: bool, meta: json}}`.

A CSV cell is always a string, and an API that wants an integer seed refuses `"7"` on every row;
`types` converts the named columns as the rows are read. The same conversion applies to every
file format: a string value is parsed, a value that already has the type (a JSON number for
`int`) is kept as it is, and any other value is an error. So `types` on a typed JSONL file is a
no-op that only checks, and a spec without `types` reads exactly what it read before (its
request ids do not change).

Parsing is strict, since a guess sends a wrong argument to a paid API: `int` takes optional sign
and digits (no `7.0`, no `1_000`), `float` a decimal or exponent number (no `nan`, no `inf`, which
JSON cannot carry), `bool` true/false, yes/no or 1/0 in any case (or the numbers 1 and 0), `json` any JSON text.
An empty cell is an error for every type (`json` can spell `null`).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from batchrun.spec.jsonvalues import bad_value

TYPES = ("int", "float", "bool", "json")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


class CellError(ValueError):
    """A value that does not convert to its column's type; the message names both."""

    def __init__(self, message: str, column: str = "") -> None:
        super().__init__(message)
        self.column = column


def _show(value: Any, limit: int = 40) -> str:
    """A short JSON rendering: a long prompt in a wrong column must not flood the terminal."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _INT.fullmatch(text):
            try:
                return int(text)
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                raise CellError(f"a whole number of {len(text)} digits is more than batchrun reads "
                                f"({sys.get_int_max_str_digits()} at most)") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise CellError(f"{_show(value)} is not a whole number")


def _to_float(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if _FLOAT.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # a JSON number already: kept as written (7 stays 7, as the request id saw it)
    raise CellError(f"{_show(value)} is not a finite number")


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        found = _BOOLS.get(value.strip().lower())
        if found is not None:
            return found
    raise CellError(f"{_show(value)} is not true/false, yes/no or 1/0")


def _to_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # already structured (a JSONL or YAML row)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CellError(f"{_show(value)} is not JSON: {exc.msg} at character {exc.pos + 1}") from None
    except RecursionError:
        raise CellError("the JSON is nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts
        raise CellError(f"{_show(value)} holds an integer of more digits than batchrun reads "
                        f"({sys.get_int_max_str_digits()} at most)") from None
    bad = bad_value(parsed)  # NaN, Infinity (Python's json extensions) or a lone surrogate escape
    if bad is not None:
        raise CellError(f"{_show(value)}: {bad[1]}")
    return parsed


_CONVERT: dict[str, Callable[[Any], Any]] = {"int": _to_int, "float": _to_float, "bool": _to_bool, "json": _to_json}


class RowTypes:
    """The conversions of one dataset, built once and applied per row."""

    __slots__ = ("names", "steps")

    def __init__(self, types: Mapping[str, str]) -> None:
        self.names = frozenset(types)
        self.steps = [(name, kind, _CONVERT[kind]) for name, kind in types.items()]

    def apply(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row` with its typed fields converted, in place. A field a row lacks is left for the
        template checks to report. Raises the first CellError (see `errors`)."""
        for name, kind, convert in self.steps:
            if name in row:
                try:
                    row[name] = convert(row[name])
                except CellError as exc:
                    raise CellError(f"column '{name}' ({kind}): {exc}", name) from None
        return row

    def errors(self, row: dict[str, Any]) -> list[CellError]:
        """Convert `row` in place as `apply` does, returning every cell that failed (validation
        shows them all), each naming its column and type."""
        try:
            self.apply(row)
            return []
        except CellError:
            pass
        found = []
        for name, kind, convert in self.steps:
            if name in row:
                try:
                    row[name] = convert(row[name])
                except CellError as exc:
                    found.append(CellError(f"column '{name}' ({kind}): {exc}", name))
        return found


def csv_cell(raw: str, field: int) -> tuple[int, int]:
    """(lines after the record's first line, 1-based column) where field `field` (0-based) of the
    raw CSV record `raw` starts, for the default dialect (`,` and `"` with doubled quotes)."""
    quoted = False
    start = 0
    seen = 0
    for offset, char in enumerate(raw):
        if seen == field:
            break
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            seen += 1
            start = offset + 1
    line_start = raw.rfind("\n", 0, start) + 1
    return raw.count("\n", 0, start), start - line_start + 1
