"""What changed between a pinned endpoint and the live one (`batchrun endpoints check`): fields
added, removed or changed in the input and output schemas, and price changes, one line each.

Compared per field: the keywords a batch depends on (type, enum, bounds, default, nullable, and
whether it is required), with `$ref`s resolved; descriptions and titles are not drift.
"""

from __future__ import annotations

import json
from typing import Any

from batchrun.spec.endpoints import input_schema, output_schema, properties, resolve

__all__ = ["drift"]

_KEYWORDS = ("type", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
             "minLength", "maxLength", "minItems", "maxItems", "default", "nullable", "anyOf", "oneOf", "items")


def drift(endpoint_id: str, old_doc: dict[str, Any], old_price: dict[str, Any] | None,
          new_doc: dict[str, Any], new_price: dict[str, Any] | None) -> list[str]:
    changes: list[str] = []
    for label, getter in (("input", input_schema), ("output", output_schema)):
        old = getter(old_doc, endpoint_id) or {}
        new = getter(new_doc, endpoint_id) or {}
        changes.extend(f"{label}: {c}" for c in _fields(old_doc, old, new_doc, new))
    for key in ("unit_price", "unit", "currency"):
        before = (old_price or {}).get(key)
        after = (new_price or {}).get(key)
        if before != after:
            changes.append(f"price: {key} {_show(before)} -> {_show(after)}")
    return changes


def _fields(old_doc: dict[str, Any], old: dict[str, Any], new_doc: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_props = properties(old)
    new_props = properties(new)
    old_req = set(old.get("required") or [])
    new_req = set(new.get("required") or [])
    out = []
    for name in new_props:
        if name not in old_props:
            out.append(f"added field '{name}'" + (" (required)" if name in new_req else ""))
    for name in old_props:
        if name not in new_props:
            out.append(f"removed field '{name}'")
    for name in old_props:
        if name not in new_props:
            continue
        before = _essence(old_doc, old_props[name])
        after = _essence(new_doc, new_props[name])
        for key in _KEYWORDS:
            if before.get(key) != after.get(key):
                out.append(f"'{name}' {key} {_show(before.get(key))} -> {_show(after.get(key))}")
        if (name in old_req) != (name in new_req):
            out.append(f"'{name}' is {'now' if name in new_req else 'no longer'} required")
    return out


def _essence(doc: dict[str, Any], schema: Any) -> dict[str, Any]:
    resolved = resolve(doc, schema)
    if not isinstance(resolved, dict):
        return {}
    out = {}
    for key in _KEYWORDS:
        if key not in resolved:
            continue
        value = resolved[key]
        if key in ("anyOf", "oneOf") and isinstance(value, list):
            value = [_essence(doc, v) for v in value]
        elif key == "items":
            value = _essence(doc, value)
        out[key] = value
    return out


def _show(value: Any) -> str:
    if value is None:
        return "none"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
