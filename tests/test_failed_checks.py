"""One meaning of "this record failed an expectation" (records_io.failed_checks), shared by report,
diff, resume, gates and the run summary; hand-edited records are where they used to disagree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import run_cli, write_spec

from batchrun.cli import main
from batchrun.output.reading import failed_checks, failed_expectation
from batchrun.output.resume import scan_output
from batchrun.output.summary import RunSummary
from batchrun.report.diff import diff_files
from batchrun.report.stats import build_report
from batchrun.server import ServerThread
from batchrun.toolkit.gates import Gates

# id -> (expectations as hand-edited; None = the key is absent, messages of the failed checks)
CASES: dict[str, tuple[Any, list[str]]] = {
    "absent": (None, []),
    "null": ("null", []),
    "empty": ([], []),
    "all-passed": ([{"passed": True, "message": "a"}, {"passed": True, "message": "b"}], []),
    "passed-false": ([{"passed": False, "message": "width: expected 512, got 768"}], ["width: expected 512, got 768"]),
    "passed-missing": ([{"message": "seed: expected 7, got 8"}], ["seed: expected 7, got 8"]),
    "passed-string": ([{"passed": "true", "message": "quoted"}], ["quoted"]),
    "passed-one": ([{"passed": 1, "message": "one"}], ["one"]),
    "passed-null": ([{"passed": None, "message": "none"}], ["none"]),
    "no-message": ([{"passed": False}], ['invalid check: {"passed": false}']),
    "not-an-object": (["ok"], ['invalid check: "ok"']),
    "second-fails": ([{"passed": True, "message": "a"}, {"passed": False, "message": "b failed"}], ["b failed"]),
    "object-not-list-passed": ({"passed": True, "message": "lone"}, []),
    "object-not-list-failed": ({"passed": False, "message": "lone failed"}, ["lone failed"]),
}
FAILED = [rid for rid, (_, messages) in CASES.items() if messages]


def _record(index: int, rid: str, expectations: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": rid, "index": index, "job": "edited", "status": "ok", "result": {"seed": 7}, "error": None,
        "attempts": 1,
        "timing": {"started_at": "2025-01-01T12:00:00Z", "finished_at": "2025-01-01T12:00:01Z",
                   "latency_s": 1.0, "queue_s": None},
    }
    if expectations == "null":
        record["expectations"] = None
    elif expectations is not None:
        record["expectations"] = expectations
    return record


@pytest.fixture
def edited(tmp_path: Path) -> Path:
    """The hand-edited output: one ok record per case."""
    path = tmp_path / "edited.jsonl"
    lines = [json.dumps(_record(i, rid, exp)) for i, (rid, (exp, _)) in enumerate(CASES.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_predicate_itself(edited: Path) -> None:
    for record in records(edited):
        assert failed_checks(record) == CASES[record["id"]][1], record["id"]
        assert failed_expectation(record) is bool(CASES[record["id"]][1]), record["id"]


def test_report_lists_exactly_the_failed_checks(edited: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = build_report(edited)
    assert [(f.id, f.message) for f in report.expectation_failures] == [
        (rid, message) for rid, (_, messages) in CASES.items() for message in messages
    ]
    assert report.overall.expectation_failed_requests == len(FAILED) == 9
    assert main(["report", str(edited), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["overall"]["expectation_failures"] == {"requests": 9, "checks": 9}


def test_diff_sees_a_regression_exactly_where_a_check_now_fails(edited: Path, tmp_path: Path) -> None:
    # The baseline passed two checks (matched by position: no `check` definitions) for every id.
    base = tmp_path / "base.jsonl"
    passing = [{"passed": True, "message": "base a"}, {"passed": True, "message": "base b"}]
    base.write_text("".join(json.dumps(_record(i, rid, passing)) + "\n" for i, rid in enumerate(CASES)))
    diff = diff_files(base, edited)
    found = [(e.id, e.detail) for e in diff.categories["expectation_regressions"]]
    assert found == [(rid, messages[0]) for rid, (_, messages) in CASES.items() if messages]
    # ... and none the other way round: the hand-edited side as the baseline passed nothing new.
    assert diff_files(edited, base).categories["expectation_regressions"] == []


def test_resume_counts_the_same_ids(edited: Path) -> None:
    assert scan_output(edited).expect_failed == set(FAILED)


def test_run_summary_and_fail_fast_gate_agree(edited: Path) -> None:
    summary = RunSummary(output=str(edited))
    stopped_at = []
    for record in records(edited):
        gates = Gates({"fail_fast": True})
        summary.add(record)
        if gates.after_record(summary, record) is not None:
            stopped_at.append(record["id"])
    assert summary.jobs["edited"].expectation_failures == len(FAILED)
    assert summary.expectations_failed == 9
    assert stopped_at == FAILED


SPEC = """\
    version: 1
    name: edited
    jobs:
      - name: echo
        endpoint: local/echo
        mode: run
        arguments: {prompt: "${{ matrix.prompt }}"}
        matrix: {prompt: [a cat, a dog]}
        expect:
          - {path: echo.prompt, exists: true}
"""


def test_end_to_end_a_hand_edited_verdict_fails_run_report_and_diff_alike(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """`passed: "true"` (a string) written into a passing record: the resumed run exits 1, the
    report lists the check, and diff against the untouched output calls it a regression."""
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    argv = [str(spec), "-o", str(out), "--run-url", loopback_server.run_url, "--queue-url",
            loopback_server.queue_url, "--no-progress"]
    assert run_cli(*argv) == 0
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_bytes(out.read_bytes())
    lines = out.read_text().splitlines()
    dog_line = next(i for i, line in enumerate(lines) if '"a dog"' in line)
    dog = json.loads(lines[dog_line])
    dog["expectations"][0]["passed"] = "true"
    lines[dog_line] = json.dumps(dog)
    out.write_text("\n".join(lines) + "\n")
    capsys.readouterr()

    assert run_cli(*argv) == 1  # nothing left to send; the edited verdict still fails the run
    assert "expectations_failed=1" in capsys.readouterr().err
    assert main(["report", str(out), "--format", "json"]) == 0
    failures = json.loads(capsys.readouterr().out)["expectation_failures"]
    assert failures == [{"job": "echo", "id": dog["id"], "message": dog["expectations"][0]["message"],
                         "request": "prompt=a dog"}]
    assert main(["diff", str(baseline), str(out), "--format", "json"]) == 1
    regressions = json.loads(capsys.readouterr().out)["expectation_regressions"]
    assert regressions == [{"id": dog["id"], "job": "echo", "request": "prompt=a dog",
                            "detail": dog["expectations"][0]["message"],
                            "check": {"path": "echo.prompt", "exists": True}}]
