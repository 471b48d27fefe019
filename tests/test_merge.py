"""`batchrun merge`: plan order, one record per id (ok wins, then newest), completeness, atomic write."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from batchrun.cli import main
from batchrun.load import load_spec
from batchrun.plan.planner import build_plan

DATA = Path(__file__).parent / "data" / "records"


def rec(rid: str, index: int, status: str = "ok", finished: str = "12:00:01", **extra: Any) -> dict[str, Any]:
    return {
        "id": rid, "index": index, "job": "j", "endpoint": "local/echo", "path": "", "mode": "run",
        "arguments": {"n": index}, "matrix": {}, "row": None, "repeat": 0, "status": status,
        "result": {"n": index} if status == "ok" else None,
        "error": None if status == "ok" else {"type": "http_error", "status_code": 500, "detail": "x",
                                               "retryable": True},
        "request_id": None, "attempts": 1, "logs": None, "metrics": None,
        "timing": {"started_at": "2025-01-01T12:00:00Z", "finished_at": f"2025-01-01T{finished}Z",
                   "latency_s": 1.0, "queue_s": None},
        **extra,
    }


def write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plan_order_and_byte_exact_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Records from shards written in completion order come out in plan order, bytes unchanged."""
    a = write(tmp_path / "a.jsonl", [rec("r3", 3), rec("r0", 0)])
    b = write(tmp_path / "b.jsonl", [rec("r2", 2), rec("r1", 1), rec("r4", 4)])
    out = tmp_path / "all.jsonl"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"merged 2 files: 5 records -> 5 requests in {out}\n"
    assert [r["id"] for r in read(out)] == ["r0", "r1", "r2", "r3", "r4"]
    source_lines = set(a.read_text().splitlines()) | set(b.read_text().splitlines())
    assert set(out.read_text().splitlines()) == source_lines


def test_ok_wins_over_a_newer_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id that succeeded anywhere keeps its ok record, even if an error came later."""
    a = write(tmp_path / "a.jsonl", [rec("r0", 0, "ok", "12:00:01")])
    b = write(tmp_path / "b.jsonl", [rec("r0", 0, "error", "12:30:00")])
    out = tmp_path / "all.jsonl"
    assert main(["merge", str(b), str(a), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"merged 2 files: 2 records -> 1 request in {out} (1 superseded record dropped)\n"
    assert [(r["id"], r["status"]) for r in read(out)] == [("r0", "ok")]


@pytest.mark.parametrize("status", ["ok", "error"])
def test_newest_wins_among_equals(tmp_path: Path, status: str) -> None:
    """Between two records of the same status, the later finished_at wins, wherever it was read."""
    newer = rec("r0", 0, status, "12:10:00", attempts=2)
    older = rec("r0", 0, status, "12:05:00", attempts=1)
    a = write(tmp_path / "a.jsonl", [newer])
    b = write(tmp_path / "b.jsonl", [older])
    out = tmp_path / "all.jsonl"
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 0
    assert [r["attempts"] for r in read(out)] == [2]


def test_same_time_last_read_wins(tmp_path: Path) -> None:
    """On a tie the record read last wins (a resumed run appends its newer attempt)."""
    one = write(tmp_path / "a.jsonl", [rec("r0", 0, attempts=1), rec("r0", 0, attempts=3)])
    out = tmp_path / "all.jsonl"
    assert main(["merge", str(one), "-o", str(out)]) == 0
    assert [r["attempts"] for r in read(out)] == [3]


def test_shards_merge_to_the_unsharded_output(tmp_path: Path) -> None:
    """Splitting an output into shards (by id hash, any order) and merging gives the unsharded merge."""
    lines = (DATA / "run.jsonl").read_text().splitlines(keepends=True) + (
        DATA / "base.jsonl"
    ).read_text().splitlines(keepends=True)
    whole = tmp_path / "whole.jsonl"
    whole.write_text("".join(lines))
    shards: list[list[str]] = [[], [], []]
    for line in lines:
        shards[zlib.crc32(json.loads(line)["id"].encode()) % 3].append(line)
    shard_files = []
    for number, shard in enumerate(shards, start=1):
        path = tmp_path / f"shard-{number}.jsonl"
        path.write_text("".join(reversed(shard)))
        shard_files.append(str(path))
    assert all(shards)
    assert main(["merge", str(whole), "-o", str(tmp_path / "expected.jsonl")]) == 0
    assert main(["merge", *shard_files, "-o", str(tmp_path / "merged.jsonl")]) == 0
    assert (tmp_path / "merged.jsonl").read_bytes() == (tmp_path / "expected.jsonl").read_bytes()
    merged = read(tmp_path / "merged.jsonl")
    assert len(merged) == 17
    assert [(r["index"], r["id"]) for r in merged] == sorted((r["index"], r["id"]) for r in merged)


SPEC = """\
version: 1
name: tiny
target: local
jobs:
  - name: echo
    endpoint: local/echo
    mode: run
    arguments:
      n: "${{ matrix.n }}"
    matrix:
      n: [1, 2, 3]
"""


def test_spec_completeness(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --spec, missing planned ids are listed (exit 1); a complete merge says so (exit 0)."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC)
    plan = [(p.id, p.index) for p in build_plan(load_spec(spec))]
    assert [index for _, index in plan] == [0, 1, 2]
    (id0, _), (id1, _), (id2, _) = plan
    shard = write(tmp_path / "s1.jsonl", [rec(id2, 2), rec(id0, 0), rec("stray", 7)])
    out = tmp_path / "all.jsonl"
    assert main(["merge", str(shard), "-o", str(out), "--spec", str(spec)]) == 1
    assert capsys.readouterr().out == (
        f"merged 1 file: 3 records -> 3 requests in {out}\n"
        f"note: 1 request not in the plan of {spec} (kept):\n"
        "  stray\n"
        "incomplete: 1 of 3 planned requests missing:\n"
        f"  {id1}  #1  echo\n"
    )
    assert [r["id"] for r in read(out)] == [id0, id2, "stray"]
    rest = write(tmp_path / "s2.jsonl", [rec(id1, 1)])
    assert main(["merge", str(shard), str(rest), "-o", str(out), "--spec", str(spec)]) == 0
    assert capsys.readouterr().out.endswith("complete: all 3 planned requests present\n")
    assert [r["id"] for r in read(out)] == [id0, id1, id2, "stray"]


def test_invalid_spec_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --spec is a located spec error (exit 2), and nothing is written."""
    spec = tmp_path / "bad.yaml"
    spec.write_text("version: 1\nname: x\njobs: 3\n")
    shard = write(tmp_path / "s.jsonl", [rec("r0", 0)])
    assert main(["merge", str(shard), "-o", str(tmp_path / "all.jsonl"), "--spec", str(spec)]) == 2
    assert capsys.readouterr().err.startswith(f"{spec}:3:7: $.jobs: ")
    assert not (tmp_path / "all.jsonl").exists()


def test_write_is_atomic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged input leaves the previous output untouched and no temporary file behind."""
    out = write(tmp_path / "all.jsonl", [rec("old", 0)])
    before = out.read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rec("r0", 0)) + "\n{broken\n" + json.dumps(rec("r1", 1)) + "\n")
    assert main(["merge", str(bad), "-o", str(out)]) == 2
    assert capsys.readouterr().err == f"batchrun: error: {bad}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)\n"
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "bad.jsonl"]


def test_output_may_be_an_input(tmp_path: Path) -> None:
    """Merging a file into itself (dedupe in place) works: the rename comes after reading."""
    path = write(tmp_path / "out.jsonl", [rec("r1", 1), rec("r0", 0, "error"), rec("r0", 0)])
    assert main(["merge", str(path), "-o", str(path)]) == 0
    assert [(r["id"], r["status"]) for r in read(path)] == [("r0", "ok"), ("r1", "ok")]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output that cannot be written (its folder cannot be made: a file is in the way) is a
    clear error, not a traceback. (A merely missing folder is made: see the test below.)"""
    shard = write(tmp_path / "s.jsonl", [rec("r0", 0)])
    (tmp_path / "nope").write_text("a file, not a folder")
    out = tmp_path / "nope" / "all.jsonl"
    assert main(["merge", str(shard), "-o", str(out)]) == 1
    assert capsys.readouterr().err == f"batchrun: error: {out}: cannot write: {out.parent} is a file, not a folder\n"


E2E_SPEC = """\
version: 1
name: e2e
target: local
concurrency: 4
jobs:
  - name: sweep
    endpoint: local/image
    arguments:
      prompt: "a lighthouse, ${{ matrix.style }}"
      seed: "${{ matrix.seed }}"
    matrix:
      style: [watercolor, photo]
      seed: [1, 2, 3]
  - name: echo
    endpoint: local/echo
    mode: run
    arguments:
      message: hello
"""


def test_sharded_run_merges_to_the_unsharded_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """End to end on the embedded server: 3 shard runs merged equal one unsharded run (diff: no differences)."""
    spec = tmp_path / "e2e.yaml"
    spec.write_text(E2E_SPEC)
    whole = tmp_path / "whole.jsonl"
    assert main(["run", str(spec), "-o", str(whole), "--no-progress"]) == 0
    shards = [tmp_path / f"shard-{i}.jsonl" for i in (1, 2, 3)]
    for i, shard in enumerate(shards, start=1):
        assert main(["run", str(spec), "--shard", f"{i}/3", "-o", str(shard), "--no-progress"]) == 0
    merged = tmp_path / "merged.jsonl"
    capsys.readouterr()
    assert main(["merge", *map(str, shards), "-o", str(merged), "--spec", str(spec)]) == 0
    assert capsys.readouterr().out == (
        f"merged 3 files: 7 records -> 7 requests in {merged}\ncomplete: all 7 planned requests present\n"
    )
    assert [(r["index"], r["id"]) for r in read(merged)] == sorted((r["index"], r["id"]) for r in read(whole))
    assert main(["diff", str(whole), str(merged), "--latency-ratio", "1000"]) == 0
    assert capsys.readouterr().out.endswith("\nno differences\n")
    assert main(["report", str(merged), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {name: (s["requests"], s["ok"]) for name, s in report["jobs"].items()} == {"sweep": (6, 6), "echo": (1, 1)}


def test_merge_creates_the_output_folder(tmp_path: Path) -> None:
    """Regression: `merge -o new/dir/x.jsonl` failed on the missing folder; `run -o` makes it."""
    a = write(tmp_path / "a.jsonl", [rec("r1", 1), rec("r0", 0)])
    out = tmp_path / "new" / "dir" / "all.jsonl"
    assert main(["merge", str(a), "-o", str(out)]) == 0
    assert [r["id"] for r in read(out)] == ["r0", "r1"]
