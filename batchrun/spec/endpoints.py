"""Pinned endpoint files: an endpoint's OpenAPI document and unit price as `batchrun endpoints pull`
wrote them, read back for `validate` (argument checks), `plan --count` and the budget (prices).

Layout: `endpoints/<endpoint id>.json` beside the spec (`endpoints/fal-ai/flux/dev.json`), one JSON
object per file, keys sorted and indented so a re-pull's git diff shows exactly what changed:

    {"endpoint_id": "...", "source": "fal" | "local" | "<platform API URL>",
     "price": {"unit_price": 0.025, "unit": "image", "currency": "USD"} | null,
     "openapi": {... the endpoint's OpenAPI document ...}}

An endpoint without a file is simply unpinned: nothing about it changes. Only files of endpoints
the spec uses are opened (a spec read stays one `open` when nothing is pinned).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from batchrun.errors import Problem

__all__ = [
    "DEFAULT_DIR",
    "Pinned",
    "dump_pinned",
    "input_schema",
    "output_schema",
    "pin_path",
    "pinned_price",
    "properties",
    "read_pinned",
    "resolve",
]

DEFAULT_DIR = "endpoints"
_IMAGE_UNITS = {"image", "images"}
_REQUEST_UNITS = {"request", "requests", "call", "calls", "run", "runs"}


@dataclasses.dataclass(frozen=True, slots=True)
class Pinned:
    endpoint_id: str
    file: Path
    openapi: dict[str, Any]
    price: dict[str, Any] | None

    @property
    def input(self) -> dict[str, Any] | None:
        return input_schema(self.openapi, self.endpoint_id)

    @property
    def output(self) -> dict[str, Any] | None:
        return output_schema(self.openapi, self.endpoint_id)

    def output_json_schema(self) -> dict[str, Any] | None:
        """The result's schema as JSON Schema 2020-12 (`expect: [{schema: pinned}]`)."""
        schema = _output_body(self.openapi, self.endpoint_id)
        return as_json_schema(self.openapi, schema) if isinstance(schema, dict) else None


def properties(schema: dict[str, Any]) -> dict[str, Any]:
    """An object schema's `properties` ({} when it has none, or they are not a mapping)."""
    props = schema.get("properties")
    return props if isinstance(props, dict) else {}


def pinned_dir(spec: Path, value: Any) -> Path:
    """Where a spec's pinned files are: its `pinned_dir` (relative to the spec's folder), else
    `endpoints/` beside it."""
    return spec.parent / (value if isinstance(value, str) and value else DEFAULT_DIR)


def pin_path(directory: Path, endpoint_id: str) -> Path:
    return directory.joinpath(*endpoint_id.split("/")).with_suffix(".json")


def dump_pinned(endpoint_id: str, source: str, openapi: dict[str, Any], price: dict[str, Any] | None) -> str:
    return json.dumps({"endpoint_id": endpoint_id, "source": source, "price": price, "openapi": openapi},
                      indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_pinned(directory: Path, endpoint_ids: list[str]) -> tuple[dict[str, Pinned], list[Problem]]:
    """The pinned files of these endpoints that exist, and a located problem for each unreadable one."""
    pinned: dict[str, Pinned] = {}
    problems: list[Problem] = []
    for endpoint_id in dict.fromkeys(endpoint_ids):
        path = pin_path(directory, endpoint_id)
        if not path.is_file():
            continue
        label = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(label, 1, 1, "$", f"cannot read pinned endpoint file: {exc}"))
            continue
        except json.JSONDecodeError as exc:
            problems.append(Problem(label, exc.lineno, exc.colno, "$", f"pinned endpoint file is not JSON: {exc.msg}"))
            continue
        if not isinstance(data, dict) or not isinstance(data.get("openapi"), dict):
            problems.append(Problem(label, 1, 1, "$", "pinned endpoint file needs an `openapi` object; "
                                    "re-pin it with `batchrun endpoints pull`"))
            continue
        if data.get("endpoint_id") != endpoint_id:
            problems.append(Problem(label, 1, 1, "$.endpoint_id", f"pins {data.get('endpoint_id')!r}, but its "
                                    f"path says {endpoint_id!r}; re-pin it with `batchrun endpoints pull`"))
            continue
        price = data.get("price")
        pinned[endpoint_id] = Pinned(endpoint_id, path, data["openapi"], price if isinstance(price, dict) else None)
    return pinned, problems


def resolve(doc: dict[str, Any], schema: Any, depth: int = 0) -> Any:
    """`schema` with a local `$ref` (`#/components/schemas/X`) followed, repeatedly."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < 32:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return {}  # a remote reference: treated as "anything goes"
        target: Any = doc
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target.get(part) if isinstance(target, dict) else None
        schema = target if isinstance(target, dict) else {}
        depth += 1
    return schema


def _operation(doc: dict[str, Any], path: str, method: str) -> dict[str, Any] | None:
    paths = doc.get("paths")
    if not isinstance(paths, dict):
        return None
    item = paths.get(path)
    op = item.get(method) if isinstance(item, dict) else None
    if isinstance(op, dict):
        return op
    if method == "post":  # a document of one endpoint under another spelling of its path: its only POST
        posts = [i["post"] for i in paths.values() if isinstance(i, dict) and isinstance(i.get("post"), dict)]
        return posts[0] if len(posts) == 1 else None
    return None


def input_schema(doc: dict[str, Any], endpoint_id: str) -> dict[str, Any] | None:
    """The submit's JSON request body schema (fal's documents: POST /{endpoint_id}), `$ref`s resolved."""
    op = _operation(doc, f"/{endpoint_id}", "post")
    try:
        schema = op["requestBody"]["content"]["application/json"]["schema"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    resolved = resolve(doc, schema)
    return resolved if isinstance(resolved, dict) else None


def _output_body(doc: dict[str, Any], endpoint_id: str) -> Any:
    """The result's schema as written (GET /{endpoint_id}/requests/{request_id}, 200), or None."""
    op = _operation(doc, f"/{endpoint_id}/requests/{{request_id}}", "get")
    try:
        return op["responses"]["200"]["content"]["application/json"]["schema"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def output_schema(doc: dict[str, Any], endpoint_id: str) -> dict[str, Any] | None:
    """The result's schema (GET /{endpoint_id}/requests/{request_id}, 200), `$ref`s resolved."""
    resolved = resolve(doc, _output_body(doc, endpoint_id))
    return resolved if isinstance(resolved, dict) else None


def as_json_schema(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` from an OpenAPI document as a self-contained JSON Schema 2020-12, for jsonschema:
    local `$ref`s become `$defs` (the referenced schemas come along), OpenAPI 3.0's `nullable: true`
    admits null, and its boolean `exclusiveMinimum`/`exclusiveMaximum` become 2020-12's numbers."""
    defs: dict[str, Any] = {}

    def convert(node: Any, depth: int = 0) -> Any:
        if isinstance(node, list):
            return [convert(item, depth) for item in node]
        if not isinstance(node, dict) or depth > 64:
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/") and len(node) == 1:
            name = ref[2:].replace("/", ".")
            if name not in defs:
                defs[name] = {}  # a placeholder first: a recursive schema refers to itself
                defs[name] = convert(resolve(doc, node), depth + 1)
            return {"$ref": f"#/$defs/{name}"}
        out = {key: convert(value, depth + 1) for key, value in node.items() if key != "nullable"}
        for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if out.get(bound) is True and limit in out:
                out[bound] = out.pop(limit)
            elif isinstance(out.get(bound), bool):
                del out[bound]
        if node.get("nullable") is True:
            kind = out.get("type")
            if isinstance(kind, str):
                out["type"] = [kind, "null"]
            elif isinstance(kind, list) and "null" not in kind:
                out["type"] = [*kind, "null"]
            elif kind is None:
                out = {"anyOf": [out, {"type": "null"}]}
        return out

    converted = convert(schema)
    return {**converted, "$defs": defs} if defs else converted


def pinned_price(pinned: Pinned) -> dict[str, Any] | None:
    """The pinned price as a spec `pricing:` entry, or None when it has none usable.

    fal prices per billing unit. A per-image price whose input has `num_images` is per unit of that
    argument (its schema default when a request leaves it out); a per-request price is flat; any
    other unit (megapixels, video seconds, ...) is counted as one unit per request, an estimate
    that says so (`estimate: "1 <unit> per request"`), since the units are known only afterwards.
    """
    price = pinned.price
    if price is None:
        return None
    unit_price, unit = price.get("unit_price"), price.get("unit")
    if isinstance(unit_price, bool) or not isinstance(unit_price, (int, float)) or not isinstance(unit, str):
        return None
    where = {"pinned": str(pinned.file)}
    schema = pinned.input or {}
    props = properties(schema)
    if unit.lower() in _IMAGE_UNITS and "num_images" in props:
        default = resolve(pinned.openapi, props["num_images"]).get("default", 1)
        return {"per_unit": float(unit_price), "unit_argument": "num_images", "unit_default": default, **where}
    if unit.lower() in _REQUEST_UNITS:
        return {"per_request": float(unit_price), **where}
    return {"per_request": float(unit_price), "estimate": f"1 {unit} per request", **where}
