"""The p95 latency gate of a resumed run counts the latencies already in the output: a nightly run
resumed after a kill must not pass a gate that the whole run fails."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, write_spec

from batchrun.output.manifest import manifest_path
from batchrun.server import ServerThread
from batchrun.toolkit.gates import output_latencies

SLOW = """\
    version: 1
    name: nightly
    concurrency: 4
    jobs:
      - {name: slow, endpoint: local/echo, mode: run, matrix: {n: [1, 2, 3, 4]}, arguments: {n: "${{ matrix.n }}", delay: 0.3}}
"""
FAST = """\
      - {name: fast, endpoint: local/echo, mode: run, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]},
         arguments: {n: "${{ matrix.n }}"}}
"""
GATE = "    gates: {max_p95_latency_s: 0.2}\n"


def _run(spec: Path, out: Path, server: ServerThread, *args: str) -> int:
    return run_cli(str(spec), "-o", str(out), "--run-url", server.run_url, "--queue-url", server.queue_url,
                   "--no-progress", *args)


def test_a_resumed_run_fails_the_p95_gate_that_the_whole_output_fails(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first run did the 4 slow requests (0.3 s each); the resume adds 16 fast ones. This run's
    own p95 is a few ms, but over the output's 20 requests the 19th fastest is a slow one."""
    out = tmp_path / "out.jsonl"
    assert _run(write_spec(tmp_path, SLOW, "first.yaml"), out, loopback_server) == 0
    spec = write_spec(tmp_path, SLOW.replace("    jobs:\n", GATE + "    jobs:\n") + FAST, "nightly.yaml")
    capsys.readouterr()
    assert _run(spec, out, loopback_server) == 1
    err = capsys.readouterr().err
    assert "batchrun: resuming" in err and "4 of 20 planned requests are already done" in err
    final = records(out)
    assert [r["job"] for r in final].count("fast") == 16 and len(final) == 20
    this_run = sorted(r["timing"]["latency_s"] for r in final if r["job"] == "fast")
    assert this_run[-1] < 0.2  # the gate would pass on this run's latencies alone
    gates = json.loads(manifest_path(out).read_text())["gates"]
    assert len(gates) == 1
    match = re.fullmatch(r"gate max_p95_latency_s: p95 latency (\d+\.\d{3}) s over 20 requests > 0\.2 s", gates[0])
    assert match is not None and float(match[1]) >= 0.3, gates  # a slow request's latency
    assert f"  failed {gates[0]}" in err

    # Run again: nothing left to send, and the gate still fails (it used to pass on no latencies).
    assert _run(spec, out, loopback_server) == 1
    assert json.loads(manifest_path(out).read_text())["gates"] == gates


def test_output_latencies_keeps_the_newest_record_per_id_and_skips_damaged_lines(tmp_path: Path) -> None:
    """A later line supersedes an earlier one (a --retry-errors re-run); lines that are not
    records, or have no numeric latency, are left out."""
    out = tmp_path / "out.jsonl"
    lines = [
        {"id": "a", "timing": {"latency_s": 9.0}},  # superseded below
        {"id": "b", "timing": {"latency_s": 0.5}},
        "not json",
        {"id": "c", "timing": {"latency_s": "slow"}},
        {"id": "d", "timing": None},
        {"id": "e", "timing": {"latency_s": True}},
        {"id": 7, "timing": {"latency_s": 1.0}},
        ["a", "list"],
        {"id": "f", "timing": {"latency_s": float("nan")}},
        {"id": "a", "timing": {"latency_s": 0.25}},
    ]
    out.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines) + "\n")
    assert sorted(output_latencies(out) or []) == [0.25, 0.5]
    assert output_latencies(tmp_path / "missing.jsonl") is None


@pytest.mark.parametrize("gates", ["{max_errors: 1}", "{fail_fast: true}", "{max_error_rate: 0.5}"])
def test_a_gate_the_output_already_breaches_stops_a_resume_before_it_sends(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str], gates: str
) -> None:
    """Regression (issue 14, case 9): every request fails, so the gate stops the first run; each
    resume then sent another `concurrency` requests before the gate noticed again (2, 4, 6 ...
    records). The resume checks the gates on the output first: it sends nothing, exits 1 and
    says why. --retry-errors still sends (the errors it sends again are not counted as failed)."""
    n = 30
    spec = write_spec(tmp_path, f"""\
        version: 1
        name: breached
        concurrency: 2
        gates: {gates}
        jobs:
          - {{name: bad, endpoint: local/fail, mode: run, matrix: {{i: [{", ".join(map(str, range(n)))}]}},
             arguments: {{status: 500, i: "${{{{ matrix.i }}}}"}}, retries: {{max_attempts: 1}}}}
    """)
    out = tmp_path / "out.jsonl"
    stats = loopback_server.app.state.stats
    assert _run(spec, out, loopback_server) == 1
    first = len(records(out))
    assert 0 < first < n
    capsys.readouterr()
    for _ in range(2):
        sent = stats()["requests"]["run"]
        assert _run(spec, out, loopback_server) == 1
        err = capsys.readouterr().err
        assert stats()["requests"]["run"] == sent  # nothing sent
        assert len(records(out)) == first
        assert ", already in the output: nothing new is sent" in err, err
        manifest = json.loads(manifest_path(out).read_text())
        assert manifest["stopped_by"].endswith(", already in the output: nothing new is sent")
        assert manifest["counts"]["error"] == first
    sent = stats()["requests"]["run"]
    assert _run(spec, out, loopback_server, "--retry-errors") == 1
    assert stats()["requests"]["run"] > sent
