"""Per-request expectations through real runs on the embedded server, and `batchrun check`: a fixed
spec re-evaluated on the stored results (nothing sent), --write seen by report, resume, merge, diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, run_cli, stats, write_spec

from batchrun.cli import main
from batchrun.output.sink import OutputLock
from batchrun.server import ServerThread
from batchrun.spec.resultpath import show_value

ROWS = [
    {"text": "great", "model_says": "positive", "want": "positive"},
    {"text": "awful", "model_says": "positive", "want": "negative"},
    {"text": "fine", "model_says": "neutral", "want": "neutral"},
]

LABELS = """\
    version: 1
    name: labels
    jobs:
      - name: label
        endpoint: local/echo
        mode: run
        dataset: rows.jsonl
        arguments: {text: "${{ row.text }}", label: "${{ row.model_says }}"}
        expect:
          - {path: echo.label, equals: "${{ row.want }}"}
"""


def run(spec: Path, out: Path, srv: ServerThread, *args: str) -> int:
    return run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                   "--no-progress", *args)


def check(*args: str | Path) -> int:
    return main(["check", *map(str, args)])


def labels_spec(tmp_path: Path, body: str = LABELS, rows: list[dict[str, Any]] = ROWS, name: str = "spec.yaml") -> Path:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return write_spec(tmp_path, body, name)


def by_text(out: Path) -> dict[str, dict[str, Any]]:
    """The newest record per dataset text (later lines win), every line schema-validated."""
    return {r["arguments"]["text"]: r for r in records(out)}


def test_each_row_is_checked_against_its_own_expected_label(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    assert run(labels_spec(tmp_path), out, loopback_server) == 1
    got = {text: [(e["passed"], e["message"], e["check"]) for e in r["expectations"]] for text, r in by_text(out).items()}
    assert got == {
        "great": [(True, 'echo.label: equals "positive"', {"path": "echo.label", "equals": "positive"})],
        "awful": [(False, 'echo.label: expected "negative", got "positive"', {"path": "echo.label", "equals": "negative"})],
        "fine": [(True, 'echo.label: equals "neutral"', {"path": "echo.label", "equals": "neutral"})],
    }
    assert "  label: ok=3 error=0" in capsys.readouterr().err
    assert main(["report", str(out)]) == 0
    assert "  expectation failures     1 request (1 check)\n" in capsys.readouterr().out


def test_a_whole_string_matrix_template_compares_with_the_values_type(
    tmp_path: Path, loopback_server: ServerThread
) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: seeds
        jobs:
          - name: seeds
            endpoint: local/echo
            mode: run
            matrix: {seed: [1, 42]}
            arguments: {seed: "${{ matrix.seed }}", tag: "seed-${{ matrix.seed }}"}
            expect:
              - {path: echo.seed, equals: "${{ matrix.seed }}"}
              - {path: echo.tag, equals: "seed-${{ matrix.seed }}"}
              - {path: echo.seed, min: "${{ matrix.seed }}", max: 42}
    """)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 0
    checks = sorted(([e["check"] for e in r["expectations"]] for r in records(out)), key=json.dumps)
    assert checks == [
        [{"path": "echo.seed", "equals": 1}, {"path": "echo.tag", "equals": "seed-1"},
         {"path": "echo.seed", "min": 1, "max": 42}],
        [{"path": "echo.seed", "equals": 42}, {"path": "echo.tag", "equals": "seed-42"},
         {"path": "echo.seed", "min": 42, "max": 42}],
    ]
    assert all(e["passed"] for r in records(out) for e in r["expectations"])


def test_validate_refuses_unknown_references_and_env_in_expect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = LABELS.replace("row.want", "row.wnat") + '          - {path: echo.text, equals: "${{ env.FAL_KEY }}"}\n'
    spec = labels_spec(tmp_path, bad)
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:11:35: $.jobs[0].expect[1].equals: ${{{{ env.FAL_KEY }}}}: env templates are not allowed in "
        "expect: an expected value is shown in failure messages and stored in records, so a secret would leak",
        *(f"{tmp_path / 'rows.jsonl'}:{n + 1}:1: $[{n}]: row {n} has no field 'wnat' (used by $.jobs[0].expect[0].equals)"
          for n in range(3)),
    ]


# ---- batchrun check ------------------------------------------------------------------------------

WRONG = LABELS.replace("path: echo.label", "path: label")  # the result has echo.label, not label


def test_check_after_a_spec_fix_then_write_makes_every_reader_see_it(
    tmp_path: Path, make_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [dict(r, want=r["model_says"]) for r in ROWS]  # the model is right; the check was wrong
    wrong, fixed = labels_spec(tmp_path, WRONG, rows), labels_spec(tmp_path, LABELS, rows, "fixed.yaml")
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        assert run(wrong, out, srv) == 1
        sent = stats(srv.origin)
        before = out.read_bytes()
        first = by_text(out)
        assert {t: r["expectations"][0]["message"] for t, r in first.items()} == dict.fromkeys(first, "label: missing")
        capsys.readouterr()

        # The old spec still fails; the fixed one passes and says the stored verdicts are stale.
        assert check(wrong, out) == 1
        ids = sorted((r["index"], r["id"]) for r in records(out))
        assert capsys.readouterr().out.endswith(
            "expectation failures\n"
            "  job    id                message\n"
            + "".join(f"  label  {rid}  label: missing\n" for _, rid in ids)
            + "\nevery stored verdict is current\n"
        )
        assert check(fixed, out) == 0
        assert capsys.readouterr().out == (
            f"batchrun check: {out} against the expectations of {fixed} (nothing sent)\n"
            "  label  3 checked, 3 passed, 0 failed\n"
            "  total: 3 checked, 3 passed, 0 failed\n"
            "\n"
            "verdicts changed for 3 records: add --write to record them (report, diff and resume read them then)\n"
        )
        assert out.read_bytes() == before  # without --write nothing is written

        assert check(fixed, out, "--write") == 0
        assert capsys.readouterr().out.endswith(f"\nwrote 3 re-checked records to {out}\n")
        lines = records(out)  # every line, the appended ones included, validates against the schema
        assert len(lines) == 6 and out.read_bytes().startswith(before)
        for text, rechecked in by_text(out).items():
            assert rechecked["expectations"] == [
                {"passed": True, "message": f'echo.label: equals "{first[text]["arguments"]["label"]}"',
                 "check": {"path": "echo.label", "equals": first[text]["arguments"]["label"]}}]
            # Same record otherwise: same result, same timing (the request's times are facts).
            assert {**rechecked, "expectations": None} == {**first[text], "expectations": None}

        assert main(["report", str(out)]) == 0
        report = capsys.readouterr().out
        assert "  expectation failures     0\n" in report and "(6 records, 3 superseded by newer ones)" in report
        # A resume sends nothing and is green now.
        assert run(fixed, out, srv) == 0
        assert "label: ok=0 error=0 skipped=3 (already in the output) retries=0\n" in capsys.readouterr().err
        assert stats(srv.origin)["requests"] == sent["requests"]
        # Nothing changed since: a second --write appends nothing.
        assert check(fixed, out, "--write") == 0
        assert capsys.readouterr().out.endswith("\nnothing to write: every stored verdict is current\n")
        assert len(records(out)) == 6

    merged = tmp_path / "merged.jsonl"
    assert main(["merge", str(out), "-o", str(merged)]) == 0
    assert [r["expectations"][0]["passed"] for r in records(merged)] == [True, True, True]
    old = tmp_path / "old.jsonl"
    old.write_bytes(before)
    assert main(["diff", str(old), str(out)]) == 0


def test_check_reuses_the_stored_latency_and_skips_errors_and_unplanned_ids(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: mixed
        jobs:
          - {name: ok, endpoint: local/echo, mode: run, matrix: {n: [1, 2]}, arguments: {n: "${{ matrix.n }}"}}
          - {name: broken, endpoint: local/fail, mode: run, arguments: {status: 400}}
          - {name: gone, endpoint: local/echo, mode: run, arguments: {x: 1}}
    """)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    latency = {r["arguments"]["n"]: r["timing"]["latency_s"] for r in records(out) if r["job"] == "ok"}
    slo = min(latency.values()) / 2  # every stored latency is above it
    checked = write_spec(tmp_path, f"""\
        version: 1
        name: mixed
        jobs:
          - name: ok
            endpoint: local/echo
            mode: run
            matrix: {{n: [1, 2]}}
            arguments: {{n: "${{{{ matrix.n }}}}"}}
            expect: [{{latency_s: {{max: {slo!r}}}}}, {{path: echo.n, equals: "${{{{ matrix.n }}}}"}}]
          - {{name: broken, endpoint: local/fail, mode: run, arguments: {{status: 400}}, expect: [{{path: a, exists: true}}]}}
    """, "checked.yaml")
    capsys.readouterr()
    assert check(checked, out) == 1
    text = capsys.readouterr().out
    ids = {r["arguments"]["n"]: r["id"] for r in records(out) if r["job"] == "ok"}
    assert text.splitlines()[1:5] == [
        "  ok      2 checked, 0 passed, 2 failed",
        "  broken  0 checked, 0 passed, 0 failed",
        "  total: 2 checked, 0 passed, 2 failed",
        "  1 planned request without a result (an error, or not run yet): not checked",
    ]
    assert "  1 id in the output not in this plan: left as they are\n" in text
    for n in (1, 2):
        assert f"  ok   {ids[n]}  latency_s: expected <= {show_value(slo)}, got {show_value(latency[n])}\n" in text


def test_check_write_waits_for_no_run_and_refuses_a_locked_output(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = labels_spec(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    before = out.read_bytes()
    capsys.readouterr()
    with OutputLock(out):  # as a running `batchrun run` holds it
        assert check(spec, out, "--write") == 2
    assert "is in use by another batchrun process" in capsys.readouterr().err
    assert out.read_bytes() == before
    # Read-only checks do not need the lock.
    with OutputLock(out):
        assert check(spec, out) == 1


def test_check_write_cuts_a_torn_last_line_before_appending(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    assert run(labels_spec(tmp_path, WRONG), out, loopback_server) == 1
    with out.open("ab") as f:
        f.write(b'{"id": "torn')
    assert check(labels_spec(tmp_path, LABELS, name="fixed.yaml"), out, "--write") == 1
    assert "removed a truncated last line (12 bytes)" in capsys.readouterr().err
    assert len(records(out)) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["missing.jsonl"], "missing.jsonl: no such output file", id="no-output"),
        pytest.param(["out.jsonl", "--shard", "3/2"], "--shard 3/2: I must be between 1 and N (N >= 1)", id="shard"),
    ],
)
def test_check_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    labels_spec(tmp_path)
    Path("out.jsonl").write_text("")
    assert check("spec.yaml", *args) == 2
    assert capsys.readouterr().err == f"batchrun: error: {message}\n"


def test_check_an_invalid_spec_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = labels_spec(tmp_path, LABELS.replace("row.want", "matrix.want"))
    (tmp_path / "out.jsonl").write_text("")
    assert check(spec, tmp_path / "out.jsonl") == 2
    assert "$.jobs[0].expect[0].equals: unknown matrix key 'want' in ${{ matrix.want }}: job 'label' has no matrix" in capsys.readouterr().err


def test_check_reads_the_newest_record_of_a_retried_request(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"retried-{tmp_path.name}"  # the shared server counts failures per key
    spec = write_spec(tmp_path, f"""\
        version: 1
        name: retried
        jobs:
          - name: flaky
            endpoint: local/fail
            mode: run
            arguments: {{times: 1, key: {key}, n: 5}}
            expect: [{{path: echo.n, equals: 5}}]
    """)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    assert run(spec, out, loopback_server, "--retry-errors") == 0
    assert [r["status"] for r in records(out)] == ["error", "ok"]
    capsys.readouterr()
    assert check(spec, out) == 0
    assert "  flaky  1 checked, 1 passed, 0 failed\n" in capsys.readouterr().out
