"""The JSON Schemas shipped as package data, loaded via importlib.resources (so they work from a wheel)."""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

from jsonschema import Draft202012Validator


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """`load_schema("spec")` -> the parsed batchrun/schemas/spec.schema.json."""
    resource = importlib.resources.files("batchrun") / "schemas" / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return schema


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """One validator per schema, built once (building compiles $refs)."""
    return Draft202012Validator(load_schema(name))
