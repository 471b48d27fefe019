"""Helpers for the executor's end-to-end tests (imported by tests/test_execute*.py and test_run_cli.py)."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from batchrun.cli import main

SCHEMA = json.loads((Path(__file__).parent.parent / "batchrun" / "schemas" / "record.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def write_spec(tmp_path: Path, body: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def records(path: Path) -> list[dict[str, Any]]:
    """Every record of an output, each validated against the published record schema."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        VALIDATOR.validate(record)
        out.append(record)
    return out


def run_cli(*args: str) -> int:
    return main(["run", *args])


def server_urls(srv: Any) -> list[str]:
    """`batchrun run` flags pointing at a test server (a ServerThread), progress off."""
    return ["--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress"]


def stats(origin: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(origin + "/_emulator/stats").json()
    return result


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll `predicate` until true (a subprocess run getting going); fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.01)
