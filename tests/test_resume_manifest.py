"""A resume keeps the manifest describing the output: `counts` are the plan's requests by their
newest record (earlier runs' included), `started_at` is the output's first start, and `runs` lists
every run with its own counts (the user saw `ok=0 skipped=7` and the resume's start time)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import run_cli, server_urls, write_spec

from batchrun.output.manifest import manifest_path
from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: history
    jobs:
      - {name: a, endpoint: local/echo, mode: run, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3, 4]}}
      - {name: b, endpoint: local/fail, mode: run, arguments: {status: 422, x: "${{ matrix.x }}"}, matrix: {x: [1, 2]}}
"""



def _manifest(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manifest_path(out).read_text())
    return data


def _run_counts(ok: int, error: int, skipped: int, skipped_errors: int) -> dict[str, int]:
    return {"ok": ok, "error": error, "skipped": skipped, "skipped_errors": skipped_errors, "expectation_failures": 0}


def test_resumes_add_runs_and_keep_the_outputs_counts(tmp_path: Path, loopback_server: ServerThread) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    output_counts = {"ok": 4, "error": 2, "not_run": 0, "expectation_failures": 0}
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    first = _manifest(out)
    assert first["counts"] == output_counts
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1  # everything skipped
    second = _manifest(out)
    assert second["counts"] == output_counts
    assert second["started_at"] == first["started_at"] < second["runs"][1]["started_at"]
    assert second["runs"][0] == first["runs"][0]
    assert [r["counts"] for r in second["runs"]] == [_run_counts(4, 2, 0, 0), _run_counts(0, 0, 6, 2)]
    assert [r["resumed"] for r in second["runs"]] == [False, True]
    # --retry-errors sends b's two again (they fail again): they replace their old error records.
    assert run_cli(str(spec), "-o", str(out), "--retry-errors", *server_urls(loopback_server)) == 1
    third = _manifest(out)
    assert third["counts"] == output_counts
    assert [r["counts"] for r in third["runs"]] == [_run_counts(4, 2, 0, 0), _run_counts(0, 0, 6, 2),
                                                    _run_counts(0, 2, 4, 0)]
    assert [r["exit_code"] for r in third["runs"]] == [1, 1, 1]


def test_a_stopped_run_counts_what_never_ran_and_a_version_1_manifest_becomes_the_first_run(
    tmp_path: Path, loopback_server: ServerThread
) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: stopped
        concurrency: 1
        gates: {fail_fast: true}
        jobs:
          - {name: b, endpoint: local/fail, mode: run, arguments: {status: 422, x: "${{ matrix.x }}"}, matrix: {x: [1, 2]}}
          - {name: a, endpoint: local/echo, mode: run, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3, 4]}}
    """)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1  # the first (failing) request stops it
    m = _manifest(out)
    assert m["counts"] == {"ok": 0, "error": 1, "not_run": 5, "expectation_failures": 0}
    assert m["stopped_by"] is not None and m["stopped_by"].startswith("gate fail_fast")
    # An output a version 1 batchrun left: its manifest's one run becomes the first entry.
    v1 = {key: m[key] for key in m if key != "runs"}
    v1.update(manifest_version=1, counts=_run_counts(0, 1, 0, 0), started_at="2020-01-01T00:00:00.000Z")
    manifest_path(out).write_text(json.dumps(v1))
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    m = _manifest(out)
    assert m["started_at"] == "2020-01-01T00:00:00.000Z"
    # The output already breaches fail_fast, so the resume sends nothing (issue 14; it used to send
    # b's second request, which stopped it again).
    assert [r["counts"] for r in m["runs"]] == [_run_counts(0, 1, 0, 0), _run_counts(0, 0, 1, 1)]
    assert m["runs"][0]["exit_code"] == 1 and m["runs"][1]["resumed"] is True
    assert m["counts"] == {"ok": 0, "error": 1, "not_run": 5, "expectation_failures": 0}


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_an_unreadable_manifest_starts_the_history_again(tmp_path: Path, loopback_server: ServerThread,
                                                         content: str) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    manifest_path(out).write_text(content)
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    m = _manifest(out)
    assert m["counts"] == {"ok": 4, "error": 2, "not_run": 0, "expectation_failures": 0}
    assert [r["counts"] for r in m["runs"]] == [_run_counts(0, 0, 6, 2)]
