"""The JSONL sink: whole lines, flushed at once, an exclusive lock, clear errors on bad paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.errors import SinkError
from batchrun.output.sink import JsonlSink, OutputLock, encode_record, lock_path


def test_each_record_is_one_flushed_line(tmp_path: Path) -> None:
    """A record is on disk (readable by another handle) as soon as write() returns."""
    out = tmp_path / "sub" / "out.jsonl"
    with JsonlSink(out) as sink:
        sink.write({"id": "a", "n": 1, "text": "é"})
        assert out.read_bytes() == b'{"id":"a","n":1,"text":"\xc3\xa9"}\n'
        sink.write({"id": "b"})
        assert out.read_text().splitlines() == ['{"id":"a","n":1,"text":"é"}', '{"id":"b"}']
    assert sink.written == 2


def test_appends_to_an_existing_output(tmp_path: Path) -> None:
    """Opening an existing output keeps its lines and appends after them."""
    out = tmp_path / "out.jsonl"
    out.write_text('{"id":"old"}\n')
    with JsonlSink(out) as sink:
        sink.write({"id": "new"})
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["old", "new"]


def test_field_order_is_kept() -> None:
    """Key order is the dict's order, so every record has the same field order."""
    assert encode_record({"z": 1, "a": 2, "m": None}) == b'{"z":1,"a":2,"m":null}\n'


def test_second_lock_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """Two runs on one output: the second is refused, naming the output and the lock file."""
    out = tmp_path / "out.jsonl"
    with OutputLock(out):
        with pytest.raises(SinkError) as exc, OutputLock(out):
            pass
        assert str(exc.value) == (
            f"{out} is in use by another batchrun process (lock {lock_path(out)} is held); "
            "wait for it to finish or choose another output with -o"
        )
    with OutputLock(out):  # released: can be taken again
        pass


def test_lock_held_by_another_process_is_refused(tmp_path: Path) -> None:
    """The lock works across processes (flock), not only within one."""
    out = tmp_path / "out.jsonl"
    code = (
        "import sys, time; from pathlib import Path; from batchrun.output.sink import OutputLock\n"
        f"lock = OutputLock(Path({str(out)!r})); lock.acquire(); print('locked', flush=True); "
        "sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "locked\n"
        with pytest.raises(SinkError, match="in use by another batchrun process"), OutputLock(out):
            pass
        proc.stdin.close()
        proc.wait(timeout=30)
    with OutputLock(out):
        pass


def test_unwritable_directory_is_a_sink_error(tmp_path: Path) -> None:
    """An output under a path that cannot be created is a SinkError that names the path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "out.jsonl"
    with pytest.raises(SinkError) as exc:
        JsonlSink(out).open()
    assert str(out.parent) in str(exc.value) or str(out) in str(exc.value)
    assert exc.value.path == str(out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_output_is_a_sink_error(tmp_path: Path) -> None:
    """A read-only output file gives 'permission denied', not a traceback."""
    out = tmp_path / "out.jsonl"
    out.write_text("")
    out.chmod(0o444)
    with pytest.raises(SinkError, match="permission denied"):
        JsonlSink(out).open()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_disk_is_a_sink_error_that_keeps_the_count(tmp_path: Path) -> None:
    """A write to a full device (/dev/full gives ENOSPC) is a SinkError saying so."""
    out = tmp_path / "out.jsonl"
    out.symlink_to("/dev/full")
    sink = JsonlSink(out)
    sink.open()
    try:
        with pytest.raises(SinkError) as exc:
            sink.write({"id": "a"})
    finally:
        sink.close()
    assert str(exc.value) == (
        f"cannot write to the output {out}: no space left on device; 0 records written in this run are kept"
    )


def test_records_written_together_are_joined_only_up_to_a_bound_and_a_full_disk_keeps_the_first(
    tmp_path: Path,
) -> None:
    """The writer hands the sink every record waiting at once; joining them all was a second copy
    of up to `concurrency` large results. Lines are joined up to BATCH_BYTES, so on a disk that
    fills up the records before the failed write stay whole, and are counted."""
    from fixtures_disk import tmpfs

    from batchrun.output.sink import BATCH_BYTES

    big = "x" * (BATCH_BYTES * 6 // 10)  # two do not fit in one write
    with tmpfs(tmp_path / "disk", "1m") as disk:
        sink = JsonlSink(disk / "out.jsonl")
        sink.open()
        try:
            with pytest.raises(SinkError, match="no space left on device; 1 records written"):
                sink.write_many([{"id": "a", "blob": big}, {"id": "b", "blob": big}, {"id": "c"}])
            assert sink.written == 1
        finally:
            sink.close()
        lines = (disk / "out.jsonl").read_bytes().splitlines(keepends=True)
    assert [json.loads(line)["id"] for line in lines] == ["a"] and lines[0].endswith(b"\n")
    small = tmp_path / "small.jsonl"
    with JsonlSink(small) as sink:
        sink.write_many([{"id": str(n)} for n in range(50)])
        assert sink.written == 50
    assert [json.loads(line)["id"] for line in small.read_text().splitlines()] == [str(n) for n in range(50)]
