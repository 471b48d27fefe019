"""`batchrun export`: an output's newest records as Parquet, CSV or JSONL, readable by pyarrow and csv."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import batchrun.api as br
from batchrun.cli import main

SPEC = """\
    version: 1
    name: exp
    target: local
    jobs:
      - {name: f, endpoint: local/fail, mode: run, arguments: {status: 422, n: "${{ matrix.n }}"}, matrix: {n: [1, 2]}}
      - {name: e, endpoint: local/echo, mode: run, arguments: {n: "${{ matrix.n }}"}, matrix: {n: [1, 2, 3]}}
"""


@pytest.fixture
def superseded(tmp_path: Path) -> Path:
    """An output holding superseded records: two error ids sent again with --retry-errors."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    out = tmp_path / "out.jsonl"
    assert main(["run", str(spec), "-o", str(out), "--no-progress"]) == 1
    assert main(["run", str(spec), "-o", str(out), "--no-progress", "--retry-errors"]) == 1
    assert len(out.read_text().splitlines()) == 7
    return out


def test_parquet_has_the_newest_records(superseded: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Parquet reads back in pyarrow with one row per id (the newest), flattened columns typed."""
    assert main(["export", str(superseded)]) == 0
    dest = superseded.with_name("out.parquet")
    assert f"exported 5 records (newest per id) to {dest}" in capsys.readouterr().err
    table = pq.read_table(dest)
    newest = list(br.read(superseded))
    assert table.num_rows == len(newest) == 5
    assert table.column("id").to_pylist() == [r["id"] for r in newest]
    assert table.column("error_type").to_pylist()[:2] == [r["error"]["type"] for r in newest[:2]]
    assert table.column("matrix.n").to_pylist() == [1, 2, 1, 2, 3]
    assert str(table.schema.field("latency_s").type) == "double"
    # the newest of a retried id is the second run's record
    retried = [json.loads(line) for line in superseded.read_text().splitlines()][-2:]
    assert {r["request_id"] for r in retried} <= set(table.column("request_id").to_pylist())


def test_csv_and_all_records(superseded: Path, tmp_path: Path) -> None:
    """CSV has a header of flattened columns; --all-records keeps the superseded records too."""
    dest = tmp_path / "all.csv"
    assert main(["export", str(superseded), "-o", str(dest), "--all-records"]) == 0
    with dest.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7
    assert {"job", "status", "matrix.n", "latency_s", "error_type", "arguments.n"} <= set(rows[0])
    assert [r["status"] for r in rows].count("error") == 4


def test_jsonl_copies_the_newest_lines(superseded: Path, tmp_path: Path) -> None:
    """--format jsonl writes the newest records' own lines, byte for byte, in plan order."""
    dest = tmp_path / "newest.jsonl"
    assert main(["export", str(superseded), "--format", "jsonl", "-o", str(dest)]) == 0
    lines = dest.read_bytes().splitlines()
    assert len(lines) == 5 and set(lines) <= set(superseded.read_bytes().splitlines())
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3, 4]


def test_a_damaged_output_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken line in the middle is a located error (exit 2), and nothing is written."""
    out = tmp_path / "bad.jsonl"
    out.write_text('{"id": "a", "index": 0, "job": "j", "status": "ok"}\n{oops\n{"id": "b", "index": 1, "job": "j", "status": "ok"}\n')
    assert main(["export", str(out), "-o", str(tmp_path / "x.csv")]) == 2
    assert "bad.jsonl:2: invalid JSON" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
