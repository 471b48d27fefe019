"""The submit journal: written before waiting, read back as in-flight requests, removed when idle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_disk import fill, tmpfs

from batchrun.errors import SinkError
from batchrun.output.journal import InFlight, Journal, journal_path, read_in_flight, read_journal


def _urls(rid: str) -> dict[str, str]:
    base = f"http://127.0.0.1:1/fal-ai/x/requests/{rid}"
    return {"status_url": base + "/status", "response_url": base, "cancel_url": base + "/cancel"}


def test_journal_path_sits_next_to_the_output() -> None:
    """`out.jsonl` -> `out.jsonl.journal.jsonl`."""
    assert journal_path(Path("o/out.jsonl")) == Path("o/out.jsonl.journal.jsonl")


def test_submit_is_on_disk_before_the_call_returns(tmp_path: Path) -> None:
    """A submitted entry can be read back by another reader immediately (no buffering)."""
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.open()
    entry = journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines == [{"event": "submitted", "id": "a", "request_id": "q1", "job": "j", **_urls("q1"), "at": entry.at}]
    assert read_in_flight(path) == {"a": entry}
    journal.close()
    assert path.exists()  # still in flight: the journal must survive


def test_done_and_cancelled_settle_entries_and_an_idle_journal_is_removed(tmp_path: Path) -> None:
    """done/cancelled remove an id from the in-flight set; closing with nothing in flight deletes it."""
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
        journal.submitted(id="b", job="j", request_id="q2", **_urls("q2"))
        journal.done("a", "q1")
        assert set(read_in_flight(path)) == {"b"}
        journal.cancelled("b", "q2")
        assert read_in_flight(path) == {}
    assert not path.exists()


def test_a_resubmit_replaces_the_older_entry(tmp_path: Path) -> None:
    """The newest submit per id is the one in flight; a 'done' for an older request id does not settle it."""
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
        journal.submitted(id="a", job="j", request_id="q2", **_urls("q2"))
    path.write_text(path.read_text() + json.dumps({"event": "done", "id": "a", "request_id": "q1"}) + "\n")
    assert read_in_flight(path)["a"].request_id == "q2"


def test_entries_survive_reopening(tmp_path: Path) -> None:
    """A second run loads the first run's in-flight entries and can settle them."""
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
    with Journal(path) as journal:
        assert isinstance(journal.in_flight["a"], InFlight)
        journal.done("a", "q1")
    assert not path.exists()


def test_torn_journal_tail_is_repaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A crash mid-append leaves a partial line: it is cut and the complete entries are kept."""
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
    path.write_text(path.read_text() + '{"event":"submitted","id":"b","requ')
    with Journal(path) as journal:
        assert set(journal.in_flight) == {"a"}
        journal.submitted(id="c", job="j", request_id="q3", **_urls("q3"))
    assert set(read_in_flight(path)) == {"a", "c"}
    assert "removed a truncated last line" in capsys.readouterr().err


def test_a_journal_line_cut_by_a_full_disk_is_rolled_back_and_later_entries_survive(tmp_path: Path) -> None:
    """Regression (issue 14, case 8): on a full disk the kernel writes what fits of a line (a short
    write) and the journal took it as written: the run went on, and the next entry, appended after
    the partial one, merged with it into one damaged line, so a resume lost that request's handle.
    Now a line is written whole or not at all: the short write is finished or rolled back, the
    failure is an error, and what is appended once there is room reads back."""
    with tmpfs(tmp_path / "disk", "64k") as disk:
        path = disk / "out.jsonl.journal.jsonl"
        journal = Journal(path)
        journal.open()
        a = journal.submitted(id="a", job="j", request_id="q1", **_urls("q1"))
        journal.sending("b", "j")
        # Blank padding (readers skip it) so that only 40 bytes of the journal's last page are free.
        with open(path, "ab") as f:
            f.write(b" " * (4096 - 40 - path.stat().st_size - 1) + b"\n")
        filler = fill(disk)
        with pytest.raises(SinkError) as exc:
            journal.submitted(id="b", job="j", request_id="q2", **_urls("q2"))
        assert "no space left on device" in str(exc.value)
        assert path.read_bytes().endswith(b"\n")  # the partial line was rolled back
        filler.unlink()
        c = journal.submitted(id="c", job="j", request_id="q3", **_urls("q3"))
        journal.close()
        in_flight, intents = read_journal(path)
    assert in_flight == {"a": a, "c": c}
    assert set(intents) == {"b"}  # its submit answer was never journaled: outcome unknown, not resubmitted
