"""Resume scanning: newest record per id, torn last lines repaired (time and memory: bench/bench_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchrun.output.resume import repair_tail, scan_output


def _line(rid: str, status: str, **extra: object) -> str:
    return json.dumps({"id": rid, "status": status, **extra}) + "\n"


def test_missing_output_is_an_empty_state(tmp_path: Path) -> None:
    """No output yet: nothing to skip."""
    state = scan_output(tmp_path / "nope.jsonl")
    assert state.newest_ok == {} and state.lines == 0


def test_newest_record_per_id_wins(tmp_path: Path) -> None:
    """An id retried after an error is ok; an id that later failed is an error again."""
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a", "error") + _line("b", "ok") + _line("a", "ok") + _line("c", "ok") + _line("c", "error"))
    state = scan_output(out)
    assert state.newest_ok == {"a": True, "b": True, "c": False}
    assert (state.ok, state.errors, state.lines) == (2, 1, 5)
    assert state.skip("a", retry_errors=False) and state.skip("a", retry_errors=True)
    assert state.skip("c", retry_errors=False) and not state.skip("c", retry_errors=True)
    assert not state.skip("z", retry_errors=False)


def test_truncated_last_line_is_cut_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A torn last line (a crash mid-write) is removed, the user is told, and earlier lines stay."""
    out = tmp_path / "out.jsonl"
    good = _line("a", "ok") + _line("b", "error")
    out.write_text(good + '{"id": "c", "status": "o')
    state = scan_output(out)
    assert out.read_text() == good
    assert state.newest_ok == {"a": True, "b": False}
    assert state.repaired_bytes == len('{"id": "c", "status": "o')
    assert capsys.readouterr().err == (
        f"batchrun: {out}: removed a truncated last line (24 bytes) left by an interrupted run; "
        "its request will run again\n"
    )


def test_a_file_that_is_one_torn_line_becomes_empty(tmp_path: Path) -> None:
    """Even with no newline at all, the repair leaves a valid (empty) file."""
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a"' * 10000)
    assert repair_tail(out) == 100000
    assert out.read_bytes() == b""


def test_complete_file_is_not_touched(tmp_path: Path) -> None:
    """A file ending in a newline is left alone."""
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a", "ok"))
    assert repair_tail(out) == 0
    assert out.read_text() == _line("a", "ok")


def test_foreign_lines_are_ignored_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not a record is located in a warning and does not count."""
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a", "ok") + "not json\n" + _line("b", "ok"))
    state = scan_output(out)
    assert state.newest_ok == {"a": True, "b": True} and state.bad_lines == 1
    assert capsys.readouterr().err == f"batchrun: {out}:2: warning: not a batchrun record; ignored\n"


def test_watched_request_ids_with_a_record_are_reported(tmp_path: Path) -> None:
    """Journaled queue ids that already have a record are returned as finished."""
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a", "ok", request_id="q1") + _line("b", "ok", request_id="q2"))
    state = scan_output(out, watch_request_ids={"q2", "q3"})
    assert state.finished_request_ids == {"q2"}


def test_planner_style_ids_scan_to_the_newest_status(tmp_path: Path) -> None:
    """Full-size records with the planner's 16-hex ids (the shape bench/bench_resume.py scans a
    million of; its time and memory are measured there, not here): every id counted once, the
    newest status wins, blank lines are skipped."""
    out = tmp_path / "big.jsonl"
    with open(out, "w") as f:
        for i in range(3000):
            f.write('{"id":"%016x","index":%d,"job":"j","endpoint":"fal-ai/x","arguments":{"prompt":"a cat %d",'  # noqa: UP031
                    '"seed":%d},"status":"%s","result":{"images":[{"url":"http://127.0.0.1/x.png","width":512,'
                    '"height":512}],"seed":42},"timing":{"latency_s":0.1}}\n' % (i % 2000, i, i, i, "ok" if i % 10 else "error"))
            if i % 500 == 0:
                f.write("\n")
    state = scan_output(out)
    assert (len(state.newest_ok), state.lines, state.bad_lines) == (2000, 3000, 0)
    # ids 0..999 were written twice: the second record (i + 2000) decides.
    errors = {i % 2000 for i in range(3000) if i % 10 == 0 and (i >= 2000 or i % 2000 >= 1000)}
    assert state.errors == len(errors) == 200
    assert {int(k, 16) for k, ok in state.newest_ok.items() if not ok} == errors
