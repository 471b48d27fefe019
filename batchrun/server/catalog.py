"""What the server says about its own apps: a per-endpoint OpenAPI document and a unit price, in the
shapes of fal's Platform API (`GET /v1/models?endpoint_id=...&expand=openapi-3.0`,
`GET /v1/models/pricing?endpoint_id=...`; docs/fal-protocol.md §9.7), so `batchrun endpoints pull
--target local` and everything built on pinned schemas is tested offline.

Built-in apps have hand-written schemas that match what their handlers accept (a change to a
handler's arguments must change its schema here too). A user's `--app` function gets its schema from
a declared `input_schema` / `output_schema` attribute (JSON Schema dicts) or else from the type
hints of its first parameter and its return value (a TypedDict or a dataclass; `Literal` becomes an
enum), and its price from a `price` attribute (`{"unit_price": .., "unit": ..}`), else 0 per request.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from batchrun.server.image import DEFAULT_SIZE, MAX_IMAGES, MAX_SIDE, PRESETS

__all__ = ["Entry", "catalog_entry", "openapi_document"]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    endpoint_id: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    unit_price: float
    unit: str
    description: str
    category: str = "custom"


_IMAGE = {
    "type": "object",
    "required": ["url", "width", "height", "content_type"],
    "properties": {
        "url": {"type": "string"},
        "width": {"type": "integer"},
        "height": {"type": "integer"},
        "content_type": {"type": "string"},
    },
}

_BUILTINS: dict[str, Entry] = {
    "local/echo": Entry(
        "local/echo",
        # echo takes anything and answers it back, so unknown arguments are no mistake here
        {"type": "object", "additionalProperties": True,
         "properties": {"delay": {"type": "number", "minimum": 0, "description": "seconds to wait first"}}},
        {"type": "object", "required": ["echo", "path"],
         "properties": {"echo": {"type": "object"}, "path": {"type": "string"}}},
        0.0001, "request", "Answers its arguments back.", "utility",
    ),
    "local/sleep": Entry(
        "local/sleep",
        {"type": "object",
         "properties": {"seconds": {"type": "number", "minimum": 0, "default": 1.0}}},
        {"type": "object", "required": ["slept"], "properties": {"slept": {"type": "number"}}},
        0.0001, "request", "Sleeps, logging as it goes.", "utility",
    ),
    "local/image": Entry(
        "local/image",
        {
            "type": "object",
            "required": ["prompt"],
            "properties": {
                "prompt": {"type": "string", "description": "The prompt to generate an image from."},
                "image_size": {
                    "default": DEFAULT_SIZE,
                    "anyOf": [
                        {"type": "string", "enum": list(PRESETS)},
                        {"type": "object", "required": ["width", "height"], "properties": {
                            "width": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE},
                            "height": {"type": "integer", "minimum": 1, "maximum": MAX_SIDE}}},
                    ],
                },
                "num_images": {"type": "integer", "minimum": 1, "maximum": MAX_IMAGES, "default": 1},
                "seed": {"type": "integer"},
                "delay": {"type": "number", "minimum": 0},
            },
        },
        {
            "type": "object",
            "required": ["images", "seed", "prompt", "timings", "has_nsfw_concepts"],
            "properties": {
                "images": {"type": "array", "items": _IMAGE},
                "seed": {"type": "integer"},
                "prompt": {"type": "string"},
                "timings": {"type": "object"},
                "has_nsfw_concepts": {"type": "array", "items": {"type": "boolean"}},
            },
        },
        0.003, "image", "Deterministic PNGs in fal's image-model shape.", "text-to-image",
    ),
    "local/fail": Entry(
        "local/fail",
        {"type": "object", "additionalProperties": True, "properties": {}},  # fault knobs, open-ended
        {"type": "object"},
        0.0, "request", "Fault injection chosen by the arguments.", "utility",
    ),
}


def catalog_entry(endpoint_id: str, user_functions: dict[str, Callable[..., Any]]) -> Entry | None:
    """The entry of `endpoint_id` (a user's app first, as the server dispatches), or None."""
    func = user_functions.get(endpoint_id)
    if func is not None:
        return _user_entry(endpoint_id, func)
    return _BUILTINS.get(endpoint_id)


def _user_entry(endpoint_id: str, func: Callable[..., Any]) -> Entry:
    declared_in = getattr(func, "input_schema", None)
    declared_out = getattr(func, "output_schema", None)
    hints = _hints(func)
    params = [p for p in _parameters(func) if p.name not in ("log", "path")]
    input_schema = declared_in if isinstance(declared_in, dict) else (
        _schema_of(hints.get(params[0].name)) if params and params[0].name in hints else {"type": "object"})
    output_schema = declared_out if isinstance(declared_out, dict) else _schema_of(hints.get("return"))
    price = getattr(func, "price", None)
    price = price if isinstance(price, dict) else {}
    unit_price = price.get("unit_price", 0.0)
    return Entry(
        endpoint_id, input_schema, output_schema,
        float(unit_price) if isinstance(unit_price, (int, float)) else 0.0,
        str(price.get("unit", "request")), (inspect.getdoc(func) or "").split("\n\n")[0],
    )


def _parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # a hint naming something the module cannot resolve: no schema from hints
        return {}


_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _schema_of(hint: Any) -> dict[str, Any]:
    """JSON Schema of a type hint; anything it does not understand becomes `{}` (anything goes)."""
    if hint is None or hint is Any:
        return {}
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(hint)
        schema = dict(_schema_of(base))
        for extra in extras:  # Annotated[int, {"minimum": 1}]: a dict of JSON Schema keywords
            if isinstance(extra, dict):
                schema.update(extra)
        return schema
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(options) < len(typing.get_args(hint))
        if len(options) == 1:
            schema = _schema_of(options[0])
            return {**schema, "nullable": True} if nullable else schema
        return {"anyOf": [_schema_of(a) for a in options]}
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        args = typing.get_args(hint)
        return {"type": "array", "items": _schema_of(args[0])} if args else {"type": "array"}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if hint in _SCALARS:
        return {"type": _SCALARS[hint]}
    if typing.is_typeddict(hint):
        fields = typing.get_type_hints(hint, include_extras=True)
        required = sorted(getattr(hint, "__required_keys__", set(fields)))
        props = {name: _schema_of(_strip_required(t)) for name, t in fields.items()}
        return {"type": "object", "title": hint.__name__, "properties": props, "required": required}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        fields_ = dataclasses.fields(hint)
        hints = typing.get_type_hints(hint, include_extras=True)
        props = {}
        required = []
        for f in fields_:
            schema = _schema_of(hints.get(f.name))
            if f.default is not dataclasses.MISSING:
                schema = {**schema, "default": f.default}
            elif f.default_factory is dataclasses.MISSING:
                required.append(f.name)
            props[f.name] = schema
        return {"type": "object", "title": hint.__name__, "properties": props, "required": required}
    return {}


def _strip_required(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Required, typing.NotRequired):
        return typing.get_args(hint)[0]
    return hint


def _title(endpoint_id: str) -> str:
    """fal names a document's schemas after the endpoint (`FluxDevInput`): the same CamelCase here."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", endpoint_id) if part)


def openapi_document(entry: Entry, queue_base: str) -> dict[str, Any]:
    """A per-endpoint OpenAPI 3.0 document in the layout of fal's: the queue paths of one endpoint,
    its input schema as the submit's request body and its output as the result's response."""
    name = _title(entry.endpoint_id)
    base = f"/{entry.endpoint_id}"
    rid = [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    status_ref = {"$ref": "#/components/schemas/QueueStatus"}
    return {
        "openapi": "3.0.4",
        "info": {
            "title": "Queue OpenAPI for " + entry.endpoint_id,
            "version": "1.0.0",
            "description": entry.description,
            "x-fal-metadata": {"endpointId": entry.endpoint_id, "category": entry.category},
        },
        # relative (to where the document was read): a re-pull from another port changes nothing
        "servers": [{"url": queue_base}],
        "components": {
            "schemas": {
                "QueueStatus": {
                    "type": "object",
                    "required": ["status", "request_id"],
                    "properties": {
                        "status": {"type": "string", "enum": ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]},
                        "request_id": {"type": "string"},
                        "response_url": {"type": "string"},
                        "status_url": {"type": "string"},
                        "cancel_url": {"type": "string"},
                    },
                },
                f"{name}Input": {"title": f"{name}Input", **entry.input_schema},
                f"{name}Output": {"title": f"{name}Output", **entry.output_schema},
            }
        },
        "paths": {
            base: {"post": {
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}Input"}}}},
                "responses": {"200": {"description": "The request status.",
                                      "content": {"application/json": {"schema": status_ref}}}},
            }},
            f"{base}/requests/{{request_id}}/status": {"get": {
                "parameters": rid,
                "responses": {"200": {"description": "The request status.",
                                      "content": {"application/json": {"schema": status_ref}}}},
            }},
            f"{base}/requests/{{request_id}}/cancel": {"put": {
                "parameters": rid,
                "responses": {"200": {"description": "The request was cancelled."}},
            }},
            f"{base}/requests/{{request_id}}": {"get": {
                "parameters": rid,
                "responses": {"200": {"description": "Result of the request.", "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}Output"}}}}},
            }},
        },
    }
