"""diff and merge read their inputs twice (the second time by offset), yet a pipe works as an input:
`batchrun diff base.jsonl <(zcat new.jsonl.gz)`. Real FIFOs, fed by a thread."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from batchrun.cli import main

DATA = Path(__file__).parent / "data" / "records"


def _feeding(path: Path, data: bytes) -> threading.Thread:
    def feed() -> None:
        with path.open("wb") as pipe:  # blocks until the reader opens it
            pipe.write(data)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def test_diff_with_a_pipe_prints_what_the_file_gives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new.fifo"
    os.mkfifo(new)
    assert main(["diff", str(DATA / "base.jsonl"), str(DATA / "new.jsonl"), "--format", "json"]) == 1
    expected = capsys.readouterr().out.replace(str(DATA / "new.jsonl"), str(new))
    feeder = _feeding(new, (DATA / "new.jsonl").read_bytes())
    assert main(["diff", str(DATA / "base.jsonl"), str(new), "--format", "json"]) == 1
    feeder.join(5)
    assert capsys.readouterr().out == expected


def test_a_damaged_line_in_a_pipe_is_named_for_the_pipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new.fifo"
    os.mkfifo(new)
    feeder = _feeding(new, b'{bad\n{"id": "x"}\n')
    assert main(["diff", str(DATA / "base.jsonl"), str(new)]) == 2
    feeder.join(5)
    assert capsys.readouterr().err == (
        f"batchrun: error: {new}:1: invalid JSON (Expecting property name enclosed in double quotes at column 2)\n"
    )


def test_merge_with_a_pipe_writes_the_same_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = tmp_path / "run.fifo"
    os.mkfifo(pipe)
    assert main(["merge", str(DATA / "run.jsonl"), str(DATA / "base.jsonl"), "-o", str(tmp_path / "files.jsonl")]) == 0
    feeder = _feeding(pipe, (DATA / "run.jsonl").read_bytes())
    assert main(["merge", str(pipe), str(DATA / "base.jsonl"), "-o", str(tmp_path / "piped.jsonl")]) == 0
    feeder.join(5)
    assert (tmp_path / "piped.jsonl").read_bytes() == (tmp_path / "files.jsonl").read_bytes()
    out = capsys.readouterr().out.splitlines()
    # (each merge also says it rebased base.jsonl's artifact paths from tests/data/records)
    assert out[2] == f"merged 2 files: 18 records -> 17 requests in {tmp_path / 'piped.jsonl'} (1 superseded record dropped)"
