"""SIGTERM, the way CI (a cancelled GitHub Actions job) and Kubernetes (a deleted pod of an Indexed
Job) stop work: the same graceful path as Ctrl-C, exit 143 (128 + 15). Each test runs a real
`python -m batchrun run` against a server that outlives it, and resumes it to the end without
submitting anything twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from batchrun.journal import journal_path, read_journal
from batchrun.manifest import manifest_path
from batchrun.plan import build_plan
from batchrun.server import ServerThread
from batchrun.specload import load_spec
from fixtures_execute import records, stats, write_spec

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: sigterm
    concurrency: 6
    jobs:
      - name: slow-queue
        endpoint: local/sleep
        matrix: {n: [1, 2, 3, 4]}
        arguments: {seconds: 1.5, tag: "${{ matrix.n }}"}
      - name: direct
        endpoint: local/echo
        mode: run
        matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}
        arguments: {delay: 0.2, n: "${{ matrix.n }}"}
"""


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.01)


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _stop(cmd: list[str], cwd: Path, ready: Callable[[], bool], *sent: signal.Signals,
          gap: float = 0.3) -> tuple[int, str, float]:
    """Start `cmd`, wait for `ready`, send the signals `gap` s apart; (exit code, stderr, seconds
    from the first signal to the exit)."""
    with subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True, env=dict(os.environ)) as proc:
        _wait_for(lambda: ready() or proc.poll() is not None)
        assert proc.poll() is None, "the run ended before it could be stopped"
        t0 = time.monotonic()
        for i, signum in enumerate(sent):
            if i:
                time.sleep(gap)
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
        return proc.returncode, err, time.monotonic() - t0


def _resume(cmd: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr


def _cmd(spec: Path, out: Path, srv: ServerThread) -> list[str]:
    return [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--run-url", srv.run_url,
            "--queue-url", srv.queue_url, "--no-progress"]


def test_sigterm_mid_run_exits_143_and_the_resume_reattaches_without_resubmitting(
    tmp_path: Path, make_server: MakeServer
) -> None:
    """SIGTERM with 4 queue requests running remotely and direct calls on the wire: no new
    requests, the direct calls on the wire finish and are written, exit 143 within 5 s. Every line
    is a whole schema-valid record, the 4 queue requests stay journaled, the manifest says 143;
    the resume re-attaches them (4 submits in all) and completes the plan, one record per id."""
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    journal = journal_path(out)
    with make_server(runners=8) as srv:
        cmd = _cmd(spec, out, srv)
        code, err, elapsed = _stop(
            cmd, tmp_path, lambda: len(read_journal(journal)[0]) == 4 and _lines(out) >= 2, signal.SIGTERM)
        assert code == 143, err
        assert elapsed < 5.0
        assert "Traceback" not in err
        assert "batchrun: interrupted (SIGTERM); no new requests" in err
        assert "batchrun: 4 queue requests are still running remotely" in err
        assert "batchrun: interrupted (SIGTERM); run the same command again to resume" in err
        first = records(out)  # every line whole and schema-valid
        assert out.read_bytes().endswith(b"\n")
        assert all(r["job"] == "direct" and r["status"] == "ok" for r in first)
        assert 2 <= len(first) < 20
        in_flight, intents = read_journal(journal)
        assert (len(in_flight), intents) == (4, {})
        assert {e.id for e in in_flight.values()}.isdisjoint(r["id"] for r in first)
        manifest = json.loads(manifest_path(out).read_text())
        assert (manifest["exit_code"], manifest["interrupted"]) == (143, True)

        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    assert "4 journaled queue requests to re-attach" in err
    final = records(out)
    planned = sorted(p.id for p in build_plan(load_spec(spec)))
    assert sorted(r["id"] for r in final) == planned  # nothing lost, nothing twice
    assert all(r["status"] == "ok" for r in final)
    assert counters["requests"]["submit"] == 4 and counters["duplicate_submits"] == 0
    assert [r["attempts"] for r in final if r["job"] == "slow-queue"] == [1, 1, 1, 1]
    assert not journal.exists()


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigterm_in_the_first_moments_of_a_run(tmp_path: Path, make_server: MakeServer, delay: float) -> None:
    """SIGTERM right after the run took its output lock (plus `delay`), while it scans, plans,
    starts its event loop or sends its first requests: exit 143 within 5 s, no traceback, whole
    records only, and the resume completes the plan with no duplicate submit."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: early
        concurrency: 4
        jobs:
          - {name: q, endpoint: local/echo, matrix: {n: [1, 2, 3, 4, 5, 6]}, arguments: {n: "${{ matrix.n }}", delay: 0.1}}
          - {name: d, endpoint: local/echo, mode: run, matrix: {n: [1, 2, 3, 4, 5, 6]},
             arguments: {n: "${{ matrix.n }}", delay: 0.1}}
    """)
    out = tmp_path / "out.jsonl"
    lock = out.with_name(out.name + ".lock")

    def started() -> bool:
        if not lock.exists():
            return False
        time.sleep(delay)
        return True

    with make_server(runners=4) as srv:
        cmd = _cmd(spec, out, srv)
        code, err, elapsed = _stop(cmd, tmp_path, started, signal.SIGTERM)
        assert code == 143, err
        assert elapsed < 5.0
        assert "Traceback" not in err
        assert "batchrun: interrupted (SIGTERM)" in err
        assert len(records(out) if out.exists() else []) < 12
        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    assert len({r["id"] for r in records(out)}) == len(records(out)) == 12
    assert counters["duplicate_submits"] == 0
    assert not journal_path(out).exists()


def test_sigterm_while_the_commands_are_imported_exits_143_without_a_traceback(tmp_path: Path) -> None:
    """SIGTERM at several points of `python -m batchrun validate`'s start-up (once batchrun's own
    code runs): held back, then delivered as a graceful stop: 143 and one line, never the default
    death by signal (-15) or a traceback."""
    spec = write_spec(tmp_path, "version: 1\nname: s\njobs: [{name: a, endpoint: local/echo}]\n")
    cmd = [sys.executable, "-X", "importtime", "-m", "batchrun", "validate", str(spec)]
    outcomes = []
    for delay in (0.0, 0.02, 0.05, 0.1):
        with subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None
            # -X importtime reports each import as it ends: wait until batchrun's own code runs.
            for line in proc.stderr:
                if line.rstrip().endswith("batchrun.cli"):
                    break
            time.sleep(delay)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        outcomes.append((proc.returncode, "Traceback" in err or "Fatal Python error" in err))
        if proc.returncode == 143:
            assert err.splitlines()[-1] == "batchrun: interrupted (SIGTERM)"
    # 0 when the validation finished before the signal arrived; never a crash or a traceback.
    assert all(code in (0, 143) and not crashed for code, crashed in outcomes), outcomes
    assert (143, False) in outcomes


def test_sigterm_stops_a_run_started_with_sigint_ignored(tmp_path: Path, make_server: MakeServer) -> None:
    """`cmd &` in a non-interactive shell (and nohup) starts a program with SIGINT ignored, so
    Python installs no KeyboardInterrupt handler; SIGTERM must still stop the run gracefully, at
    start-up as well as mid-run."""
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=8) as srv:
        inner = " ".join(_cmd(spec, out, srv))
        cmd = ["sh", "-c", f"trap '' INT; exec {inner}"]
        lock = out.with_name(out.name + ".lock")
        code, err, _ = _stop(cmd, tmp_path, lock.exists, signal.SIGTERM)
        assert code == 143, err
        assert "Traceback" not in err
        code, err, elapsed = _stop(cmd, tmp_path, lambda: _lines(out) >= 4, signal.SIGTERM)
        assert code == 143, err
        assert elapsed < 5.0
        assert "Traceback" not in err and "batchrun: interrupted (SIGTERM); no new requests" in err
        records(out)
        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    assert len({r["id"] for r in records(out)}) == len(records(out)) == 24
    assert counters["duplicate_submits"] == 0


def test_sigint_then_sigterm_like_a_cancelled_github_job_keeps_the_queued_requests(
    tmp_path: Path, make_server: MakeServer
) -> None:
    """GitHub Actions cancels a job with SIGINT, then SIGTERM. Only a second Ctrl-C cancels the
    journaled queue requests remotely; a SIGTERM after it does not throw that paid-for work away:
    exit 130 (the first signal), the queue requests stay journaled, and nothing is cancelled."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: gha
        concurrency: 4
        jobs:
          - {name: q, endpoint: local/sleep, matrix: {n: [1, 2]}, arguments: {seconds: 30, n: "${{ matrix.n }}"}}
          - {name: d, endpoint: local/echo, mode: run, matrix: {n: [1, 2]}, arguments: {delay: 2, n: "${{ matrix.n }}"}}
    """)
    out = tmp_path / "out.jsonl"
    journal = journal_path(out)
    with make_server(runners=4) as srv:
        code, err, elapsed = _stop(
            _cmd(spec, out, srv), tmp_path,
            lambda: len(read_journal(journal)[0]) == 2 and stats(srv.origin)["requests"]["run"] == 2,
            signal.SIGINT, signal.SIGTERM)
        counters = stats(srv.origin)
    assert code == 130, err
    assert elapsed < 5.0
    assert "Traceback" not in err
    assert counters["requests"]["cancel"] == 0
    assert len(read_journal(journal)[0]) == 2
    assert sorted(r["job"] for r in records(out)) == ["d", "d"]  # the direct calls finished in the grace
