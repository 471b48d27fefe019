"""What a spec or dataset value may hold: only what UTF-8 JSON can carry to the API.

YAML and Python's json module accept more than JSON can send: `.inf` and `.nan` (and JSON's
`NaN`/`Infinity` extensions), and `"\\ud800"`, a lone surrogate escape, which is not Unicode text
and has no UTF-8 encoding. Let through, such a value passed validation and then failed every
request at send time, or crashed the run where a request id or the spec digest was computed.
So each is refused where it is written, with the path to it; the checks are cheap enough for every
dataset row.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["bad_number", "bad_text", "bad_value", "lone_surrogate"]

_SURROGATE = re.compile("[\ud800-\udfff]")

PathKey = tuple[str | int, ...]


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text`, or None. (A valid pair decodes to one
    character in Python, so any surrogate code point left in a str is a lone one.)"""
    match = _SURROGATE.search(text)
    return None if match is None else match.start()


def bad_text(text: str) -> str | None:
    """Why `text` cannot be sent (a lone surrogate), or None."""
    at = lone_surrogate(text)
    if at is None:
        return None
    return (f"the text holds a lone surrogate (\\u{ord(text[at]):04x} at character {at + 1}), which is not "
            "Unicode and cannot be sent as UTF-8 JSON; write the character itself (or a complete pair)")


def bad_number(value: float) -> str | None:
    """Why the float `value` cannot be sent (inf or nan), or None."""
    if math.isfinite(value):
        return None
    return f"{value} is not a number JSON can carry; use a finite number (or a string)"


def bad_value(value: Any, path: PathKey = ()) -> tuple[PathKey, str] | None:
    """The first part of a JSON-shaped `value` that cannot be sent, as (its path under `path`,
    why), or None. Keys are checked too."""
    if isinstance(value, str):
        why = bad_text(value)
        return None if why is None else (path, why)
    if isinstance(value, float):
        why = bad_number(value)
        return None if why is None else (path, why)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (why := bad_text(key)) is not None:
                return (*path, key), why.replace("the text", "the key", 1)
            found = bad_value(item, (*path, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = bad_value(item, (*path, i))
            if found is not None:
                return found
    return None
