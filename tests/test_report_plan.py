"""`batchrun report` knows the plan: the verdict line, planned / with a record / never ran, the gate
that stopped the run, `--spec` after a spec change, and requests named by what they are. Real runs
on the embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, write_spec

from batchrun.cli import main
from batchrun.server import ServerThread

# Plan order: (seed 1, times 0), (seed 1, times 99), (seed 2, times 0), ...: `times: 99` always fails.
# With one request at a time, the second failure trips max_errors 1 after 4 of 8 requests.
GATED = """\
    version: 1
    name: gated
    concurrency: 1
    gates: {max_errors: 1}
    jobs:
      - name: sweep
        endpoint: local/fail
        mode: run
        arguments: {status: 500, times: "${{ matrix.times }}", key: "k${{ matrix.seed }}-${{ matrix.times }}-${{ env.RUN_KEY }}",
                    seed: "${{ matrix.seed }}"}
        matrix: {seed: [1, 2, 3, 4], times: [0, 99]}
        retries: {max_attempts: 1}
"""


def run(spec: Path, out: Path, srv: ServerThread) -> int:
    return run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress")


@pytest.fixture
def gated_run(tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    monkeypatch.setenv("RUN_KEY", str(tmp_path))  # fresh fault counters on the shared server
    spec = write_spec(tmp_path, GATED)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    assert len(records(out)) == 4
    capsys.readouterr()
    return spec, out


def _ids(out: Path) -> dict[tuple[int, int], str]:
    return {(r["matrix"]["seed"], r["matrix"]["times"]): r["id"] for r in records(out)}


def test_a_gate_stop_is_the_verdict_and_the_plan_section(gated_run: tuple[Path, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """From the manifest alone: 8 planned, 4 with a record, 4 never ran, stopped by max_errors (exit
    1); the failed requests are named by their matrix values."""
    _, out = gated_run
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    ids = _ids(out)
    stop = "gate max_errors: 2 failed requests > max_errors 1 (4 finished)"
    assert text.startswith(
        f"batchrun report: {out}\n"
        "FAIL: 2 errors, 4 planned requests never ran (gate max_errors)\n"
        "\n"
        "plan (out.jsonl.manifest.json)\n"
        "  planned        8\n"
        "  with a record  4\n"
        "  never ran      4\n"
        f"  run            exit code 1; stopped early by {stop}\n"
        "\n"
        "all jobs\n"
        "  requests                 4\n"
    )
    assert text.endswith(
        "failed requests\n"
        "  job    id                request          error\n"
        f"  sweep  {ids[1, 99]}  seed=1 times=99  http_error: injected failure: HTTP 500\n"
        f"  sweep  {ids[2, 99]}  seed=2 times=99  http_error: injected failure: HTTP 500\n"
    )
    assert f"  sweep  http_error  2      {ids[1, 99]} (seed=1 times=99)  injected failure: HTTP 500\n" in text

    assert main(["report", str(out), "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith(
        f"## batchrun report: `{out}`\n\n**FAIL: 2 errors, 4 planned requests never ran (gate max_errors)**\n\n"
        "### Plan (out.jsonl.manifest.json)\n\n| metric | value |\n| --- | --- |\n| planned | 8 |\n| with a record | 4 |\n"
        f"| never ran | 4 |\n| run | exit code 1; stopped early by {stop} |\n"
    )
    assert f"| sweep | {ids[2, 99]} | seed=2 times=99 | http_error: injected failure: HTTP 500 |\n" in markdown

    assert main(["report", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run"] == {"manifest": f"{out}.manifest.json", "finished": True, "exit_code": 1, "stopped_by": stop,
                           "gates": [stop], "interrupted": False, "shard": None,
                           "selection": None, "selected": None, "running": False}
    # The stopped run never finished its plan walk, so the ids are unknown: counts only.
    assert data["plan"] == {"source": f"{out}.manifest.json", "planned": 8, "with_record": 4, "never_ran": 4,
                            "never_ran_listed": [], "not_planned": 0, "not_planned_listed": []}


def test_spec_lists_the_requests_that_never_ran(gated_run: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--spec plans the spec itself: the 4 requests that never ran are listed with their matrix values."""
    spec, out = gated_run
    assert main(["report", str(out), "--spec", str(spec)]) == 0
    text = capsys.readouterr().out
    from batchrun.load import load_spec
    from batchrun.plan.planner import build_plan

    planned = {(p.matrix["seed"], p.matrix["times"]): p.id for p in build_plan(load_spec(spec))}
    assert (
        f"plan ({spec.name})\n"
        "  planned        8\n"
        "  with a record  4\n"
        "  never ran      4\n"
        "  run            exit code 1; stopped early by gate max_errors: 2 failed requests > max_errors 1 (4 finished)\n"
        "\n"
        "never ran\n"
        "  job    id                request\n"
        f"  sweep  {planned[3, 0]}  seed=3 times=0\n"
        f"  sweep  {planned[3, 99]}  seed=3 times=99\n"
        f"  sweep  {planned[4, 0]}  seed=4 times=0\n"
        f"  sweep  {planned[4, 99]}  seed=4 times=99\n"
    ) in text


SWEEP = """\
    version: 1
    name: sweep
    jobs:
      - name: echo
        endpoint: local/echo
        mode: run
        arguments: {prompt: "a cat, ${{ matrix.style }}"}
        matrix: {style: [%s]}
"""


def test_a_finished_run_passes_and_a_changed_spec_is_counted_against_its_new_plan(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """A complete run: `PASS: 3/3 ok`, its plan ids from the manifest's .plan-ids. After the spec
    drops `anime` and adds `pixel`, --spec counts 2 of 3 planned, names the one that never ran and
    the record the plan no longer has, and leaves that record out of the numbers."""
    spec = write_spec(tmp_path, SWEEP % "photo, anime, sketch")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "PASS: 3/3 ok"
    assert data["plan"] == {"source": f"{out}.manifest.json", "planned": 3, "with_record": 3, "never_ran": 0,
                            "never_ran_listed": [], "not_planned": 0, "not_planned_listed": []}
    anime = next(r["id"] for r in records(out) if r["matrix"]["style"] == "anime")

    spec.write_text((SWEEP % "photo, sketch, pixel").replace("    ", "", 1).replace("\n    ", "\n"))
    assert main(["report", str(out), "--spec", str(spec), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    from batchrun.load import load_spec
    from batchrun.plan.planner import build_plan

    pixel = next(p.id for p in build_plan(load_spec(spec)) if p.matrix["style"] == "pixel")
    assert data["verdict"] == "FAIL: 1 planned request never ran"
    assert data["plan"] == {
        "source": str(spec), "planned": 3, "with_record": 2, "never_ran": 1,
        "never_ran_listed": [{"id": pixel, "job": "echo", "request": "style=pixel"}],
        "not_planned": 1, "not_planned_listed": [{"id": anime, "job": "echo", "request": "style=anime"}],
    }
    assert (data["records"], data["overall"]["requests"], data["overall"]["ok"]) == (3, 2, 2)

    assert main(["report", str(out), "--spec", str(spec)]) == 0
    text = capsys.readouterr().out
    assert "  not in the plan  1 request (left out of the numbers)\n" in text
    assert f"not in the plan\n  job   id                request\n  echo  {anime}  style=anime\n" in text


DATASET = """\
    version: 1
    name: rows
    jobs:
      - name: label
        endpoint: local/fail
        mode: run
        arguments: {prompt: "${{ row.prompt }}", status: 422, times: "${{ row.times }}", key: "${{ row.prompt }}-${{ env.RUN_KEY }}"}
        dataset:
          - {prompt: "a lighthouse at dusk, long exposure", times: 0}
          - {prompt: "a fox in the snow", times: 9}
"""


def test_dataset_rows_are_named_by_row_and_first_arguments(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed dataset request is `row 1 prompt=a fox in the snow status=422` (values shortened)."""
    monkeypatch.setenv("RUN_KEY", str(tmp_path))
    spec = write_spec(tmp_path, DATASET)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    fox = next(r for r in records(out) if r["row"] == 1)
    assert [(f["id"], f["request"]) for f in data["failed_requests"]] == [(fox["id"], "row 1 prompt=a fox in the snow status=422")]
    assert data["verdict"] == "FAIL: 1 error"


def test_junit_has_one_testcase_per_planned_request(gated_run: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """JUnit XML for CI test tabs: ok requests pass, errors fail, never-run requests are skipped
    with what stopped the run; names carry the matrix values, times the latencies."""
    import xml.etree.ElementTree as ET

    spec, out = gated_run
    assert main(["report", str(out), "--spec", str(spec), "--format", "junit"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    assert (root.tag, root.attrib["tests"], root.attrib["failures"], root.attrib["skipped"]) == ("testsuites", "8", "2", "4")
    [suite] = root
    assert suite.attrib["name"] == "sweep"
    cases = suite.findall("testcase")
    names = [case.attrib["name"].split(" ", 1)[1] for case in cases]
    assert names == [f"seed={s} times={t}" for s in (1, 2, 3, 4) for t in (0, 99)]
    outcome = [(child.tag, child.attrib.get("type"), child.attrib["message"]) for case in cases for child in case]
    assert outcome == [("failure", "http_error", "http_error: injected failure: HTTP 500")] * 2 + [
        ("skipped", None, "never ran (gate max_errors)")] * 4
    latencies = {r["id"]: r["timing"]["latency_s"] for r in records(out)}
    assert [case.attrib["time"] for case in cases[:4]] == [
        f"{latencies[case.attrib['name'].split(' ')[0]]:.3f}" for case in cases[:4]]
    assert suite.find("properties/property").attrib == {
        "name": "verdict", "value": "FAIL: 2 errors, 4 planned requests never ran (gate max_errors)"}


SMOKE = """\
    version: 1
    name: smoke
    jobs:
      - {name: alpha, endpoint: local/echo, mode: run, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3, 4]}}
      - {name: beta, endpoint: local/echo, mode: run, arguments: {y: "${{ matrix.y }}"}, matrix: {y: [1, 2, 3]}}
"""


def test_a_smoke_run_is_named_and_what_it_left_out_is_not_its_failure(
        tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    """`run --limit 2` (manifest plan.selection): the report says the run took a part of the plan;
    the manifest's count is that part's, so it is no plan to hold the output against (it used to
    read 4 planned; after a full run and a smoke run on the same output, `PASS: 7/2 ok`). With --spec
    the 3 left out are counted against the spec's plan, and the verdict says why they have no record."""
    spec = write_spec(tmp_path, SMOKE)
    out = tmp_path / "out.jsonl"
    urls = ["--run-url", loopback_server.run_url, "--queue-url", loopback_server.queue_url, "--no-progress"]
    assert run_cli(str(spec), "-o", str(out), "--limit", "2", *urls) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.startswith(
        f"batchrun report: {out}\n"
        "PASS: 4/4 ok (run with --limit 2)\n"
        "\n"
        "plan (out.jsonl.manifest.json)\n"
        "  run  exit code 0; a part of the plan: --limit 2 (4 requests)\n"
        "\n"
        "all jobs\n"
        "  requests                 4\n"
    )
    assert main(["report", str(out), "--spec", str(spec)]) == 0
    text = capsys.readouterr().out
    assert text.startswith(
        f"batchrun report: {out}\n"
        "FAIL: 3 planned requests never ran (run with --limit 2)\n"
        "\n"
        f"plan ({spec.name})\n"
        "  planned        7\n"
        "  with a record  4\n"
        "  never ran      3\n"
        "  run            exit code 0; a part of the plan: --limit 2 (4 requests)\n"
    )
    assert main(["report", str(out), "--spec", str(spec), "--format", "junit"]) == 0
    assert capsys.readouterr().out.count('<skipped message="never ran (run with --limit 2)"/>') == 3

    assert run_cli(str(spec), "-o", str(out), *urls) == 0  # the full run resumes the smoke run's 4
    assert run_cli(str(spec), "-o", str(out), "--limit", "1", *urls) == 0  # nothing left to send
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "PASS: 7/7 ok (run with --limit 1)"
    assert (data["plan"], data["run"]["selection"], data["run"]["selected"]) == (None, "--limit 1", 2)
