"""The JSON Schemas ship as package data, load via importlib.resources, and are valid 2020-12."""

from __future__ import annotations

import importlib.resources
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from batchrun.spec.schema import load_schema, validator

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["spec", "record"]


@pytest.mark.parametrize("name", NAMES)
def test_schema_loads_via_importlib_resources_and_is_valid(name: str) -> None:
    resource = importlib.resources.files("batchrun") / "schemas" / f"{name}.schema.json"
    schema = json.loads(resource.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert load_schema(name) == schema
    assert (ROOT / "schemas" / f"{name}.schema.json").read_bytes() == resource.read_bytes()


def test_validator_is_built_once() -> None:
    assert validator("spec") is validator("spec")


def test_every_object_in_the_spec_schema_forbids_unknown_keys() -> None:
    """additionalProperties: false on every object that lists properties (no silent typos)."""
    loose = []

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if "properties" in node and node.get("additionalProperties") is not False:
                loose.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(load_schema("spec"), "#")
    assert loose == []


def test_job_options_and_defaults_list_the_same_keys() -> None:
    defs = load_schema("spec")["$defs"]
    assert list(defs["job"]["properties"]) == ["name", *defs["defaults"]["properties"]]


def test_package_data_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'batchrun = ["schemas/*.json", "py.typed"]' in text


@pytest.mark.slow
def test_the_wheel_contains_the_schemas(tmp_path: Path) -> None:
    """Build the real wheel (no network: no isolation, no deps) from a copy of the tree, and look inside."""
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns(".git", "build", "dist", ".venv", "outputs", "*.egg-info", "__pycache__", ".*cache*", ".hypothesis")
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("batchrun_fal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "batchrun/schemas/spec.schema.json" in names
    assert "batchrun/schemas/record.schema.json" in names
