"""The small path language that points into a result (expectations, `diff`, `--ignore`), and how
values found there are compared and shown.

    images[0].url        dotted keys and [N] list indices
    images[-1].seed      negative indices count from the end
    ["a.b"].c            a key holding `.`, `[`, `]` or `*` (or an empty key) is quoted, JSON-style
    images[*].seed       patterns only (`diff --ignore`): `[*]` any index, `*` any key

A parsed path is a tuple of parts: `str` for a key, `int` for an index, and the `ANY_INDEX` /
`ANY_KEY` wildcards in patterns. `format_path(parse_path(p))` is canonical and round-trips.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Final


class _Wildcard:
    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


ANY_INDEX: Final = _Wildcard("[*]")
ANY_KEY: Final = _Wildcard("*")
MISSING: Final = _Wildcard("<missing>")

Part = str | int | _Wildcard

# A plain key: anything but the characters that delimit parts (quote the rest).
_PLAIN_KEY = re.compile(r"[^.\[\]\"*]+")
_INDEX = re.compile(r"\[(-?\d+|\*)\]")


class PathError(ValueError):
    """A path that does not parse; the message names the offending position."""


def parse_path(text: str, *, wildcards: bool = False) -> tuple[Part, ...]:
    """Parse `text` into parts. `wildcards` allows `[*]` and `*` (patterns only).

    Raises:
        PathError: with the position and what was expected there.
    """
    if not text.strip():
        raise PathError("empty path")
    parts: list[Part] = []
    pos = 0
    while pos < len(text):
        if text.startswith('["', pos):
            key, pos = _quoted_key(text, pos)
            parts.append(key)
        elif text.startswith("[", pos):
            match = _INDEX.match(text, pos)
            if match is None:
                raise PathError(f"invalid path {text!r}: expected [N] at position {pos}")
            if match.group(1) == "*":
                if not wildcards:
                    raise PathError(f"invalid path {text!r}: [*] is only allowed in patterns")
                parts.append(ANY_INDEX)
            else:
                parts.append(int(match.group(1)))
            pos = match.end()
        else:
            if parts:
                if not text.startswith(".", pos):
                    raise PathError(f"invalid path {text!r}: expected '.' or '[' at position {pos}")
                pos += 1
            if wildcards and text.startswith("*", pos):
                parts.append(ANY_KEY)
                pos += 1
                continue
            match = _PLAIN_KEY.match(text, pos)
            if match is None:
                raise PathError(f"invalid path {text!r}: expected a key at position {pos}")
            parts.append(match.group(0))
            pos = match.end()
    return tuple(parts)


def _quoted_key(text: str, pos: int) -> tuple[str, int]:
    decoder = json.JSONDecoder()
    try:
        key, end = decoder.raw_decode(text, pos + 1)
    except json.JSONDecodeError:
        raise PathError(f"invalid path {text!r}: unterminated quoted key at position {pos}") from None
    if not isinstance(key, str) or not text.startswith("]", end):
        raise PathError(f"invalid path {text!r}: expected '\"key\"]' at position {pos}")
    return key, end + 1


def format_path(parts: Sequence[Part]) -> str:
    """The canonical text of a path; the empty path (the whole result) is `$`."""
    out: list[str] = []
    for part in parts:
        if part is ANY_INDEX:
            out.append("[*]")
        elif part is ANY_KEY:
            out.append(".*" if out else "*")
        elif isinstance(part, int):
            out.append(f"[{part}]")
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part) and part.strip() == part:
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out) or "$"


def get_path(value: Any, parts: Sequence[Part]) -> Any:
    """The value at `parts` inside `value`, or `MISSING` when any step does not exist."""
    for part in parts:
        if isinstance(part, str) and isinstance(value, dict):
            if part not in value:
                return MISSING
            value = value[part]
        elif isinstance(part, int) and not isinstance(part, bool) and isinstance(value, list):
            if not -len(value) <= part < len(value):
                return MISSING
            value = value[part]
        else:
            return MISSING
    return value


def matches_prefix(pattern: Sequence[Part], parts: Sequence[Part]) -> bool:
    """True when `pattern` matches `parts` or one of its ancestors (ignoring a whole subtree)."""
    if len(pattern) > len(parts):
        return False
    for want, have in zip(pattern, parts, strict=False):
        if want is ANY_INDEX:
            if not isinstance(have, int):
                return False
        elif want is ANY_KEY:
            if not isinstance(have, str):
                return False
        elif isinstance(want, int) and want < 0:
            return False  # a negative index cannot name a concrete position without the list
        elif want != have or type(want) is not type(have):
            return False
    return True


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: numbers compare by value (1 == 1.0), but booleans are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def show_value(value: Any, limit: int = 120) -> str:
    """A value as JSON text, shortened: messages must stay one readable line."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
