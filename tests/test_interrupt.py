"""Ctrl-C in the situations tests/test_execute_interrupt.py does not cover: while queue submits
sleep between retry attempts, with the embedded server (`target: local`) dying with the run, and
in the first moments of a run. Each time: exit 130 within 5 s, no traceback, an output of complete
records, and a resume that finishes the plan without submitting anything twice.

SIGTERM (how CI and Kubernetes stop work) takes the same path and exits 143: the start-up cases
run with both signals, and the SIGTERM-only cases are at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, wait_for, write_spec

from batchrun.load import load_spec
from batchrun.output.journal import journal_path, read_journal
from batchrun.output.manifest import manifest_path
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

pytestmark = pytest.mark.slow  # the interrupt matrix: runs as subprocesses, stopped by signals

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

# (signal, exit code, what the interrupted line says after "batchrun: interrupted")
STOPS = [pytest.param(signal.SIGINT, 130, "", id="SIGINT"),
         pytest.param(signal.SIGTERM, 143, " (SIGTERM)", id="SIGTERM")]


def _interrupt(cmd: list[str], cwd: Path, ready: Callable[[], bool], signum: signal.Signals = signal.SIGINT,
               again_after: float | None = None) -> tuple[int, str, float]:
    """Start `cmd`, wait for `ready`, send `signum` (and once more `again_after` seconds later);
    (exit code, stderr, seconds from the first signal to exit)."""
    with subprocess.Popen(cmd, cwd=cwd, stderr=subprocess.PIPE, text=True, env=dict(os.environ)) as proc:
        wait_for(lambda: ready() or proc.poll() is not None)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        t0 = time.monotonic()
        proc.send_signal(signum)
        if again_after is not None:
            time.sleep(again_after)
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
        return proc.returncode, err, time.monotonic() - t0


def _resume(cmd: list[str], cwd: Path) -> tuple[int, str]:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stderr


def test_ctrl_c_while_submits_back_off_exits_fast_and_the_resume_submits_them_once(
    tmp_path: Path, make_server: MakeServer
) -> None:
    """Queue submits refused with 429 sleep 20+ s before their next attempt. Ctrl-C: exit 130
    within 5 s; nothing of theirs is on the wire, so their write-ahead intents are withdrawn and
    the resume submits them (not outcome_unknown), each exactly once."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: backoff
        concurrency: 8
        jobs:
          - name: refused-first
            endpoint: local/fail
            matrix: {n: [1, 2, 3, 4]}
            retries: {initial_delay: 20, max_delay: 40, max_attempts: 3}
            arguments: {submit: "429", times: 1, key: "backoff-${{ matrix.n }}", n: "${{ matrix.n }}"}
          - {name: direct, endpoint: local/echo, mode: run, matrix: {n: [1, 2]}, arguments: {n: "${{ matrix.n }}"}}
    """)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--run-url", srv.run_url,
               "--queue-url", srv.queue_url, "--no-progress"]
        code, err, elapsed = _interrupt(
            cmd, tmp_path, lambda: stats(srv.origin)["requests"]["submit"] == 4 and len(records(out)) == 2)
        assert code == 130, err
        assert elapsed < 5.0
        assert "Traceback" not in err and "batchrun: interrupted" in err
        assert [r["job"] for r in records(out)] == ["direct", "direct"]
        in_flight, intents = read_journal(journal_path(out))
        assert (in_flight, intents) == ({}, {})  # nothing accepted, nothing of unknown outcome
        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    final = records(out)
    assert sorted(r["job"] for r in final) == ["direct", "direct", "refused-first", "refused-first",
                                               "refused-first", "refused-first"]
    assert all(r["status"] == "ok" for r in final)
    assert counters["apps"]["local/fail"]["submit"] == 4  # accepted once each (the 429s were refused)
    assert counters["duplicate_submits"] == 0
    assert not journal_path(out).exists()


def test_the_summary_counts_direct_calls_an_interrupt_cut_short(tmp_path: Path, make_server: MakeServer) -> None:
    """Regression: after Ctrl-C twice the summary said `total: ok=0 error=0` and nothing of the four
    direct calls it had cut off on the wire (which the server may have run, and the resume sends
    again)."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: cut
        concurrency: 4
        jobs:
          - {name: slow, endpoint: local/sleep, mode: run, repeat: 6, arguments: {seconds: 30, i: "${{ repeat }}"}}
    """)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *server_urls(srv)]
        code, err, _ = _interrupt(cmd, tmp_path, lambda: stats(srv.origin)["requests"]["run"] == 4, again_after=0.3)
    assert code == 130, err
    assert ("  4 direct calls cut short on the wire: no record; the server may have run them, and resuming "
            "sends them again") in err.splitlines()
    assert not out.exists() or records(out) == []


def test_the_summary_counts_queue_submits_an_interrupt_cut_short(tmp_path: Path, make_server: MakeServer) -> None:
    """A submit still waiting for its answer may have been accepted: the summary says so, and the
    next run records it as outcome_unknown rather than submitting it a second time."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: cut-submits
        jobs:
          - {name: q, endpoint: local/fail, arguments: {submit: slow, submit_delay: 30}}
    """)
    out = tmp_path / "out.jsonl"
    with make_server() as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *server_urls(srv)]
        code, err, _ = _interrupt(cmd, tmp_path, lambda: stats(srv.origin)["requests"]["submit"] == 1,
                                  again_after=0.3)
        assert code == 130, err
        assert ("  1 queue submits cut short before their answer: fal may have accepted them, so the next run "
                "records them as outcome_unknown instead of submitting twice") in err.splitlines()
        code, err = _resume(cmd, tmp_path)
        submits = stats(srv.origin)["requests"]["submit"]
    assert code == 1, err
    [record] = records(out)
    assert record["error"]["type"] == "outcome_unknown" and submits == 1


def test_ctrl_c_with_the_embedded_server_settles_its_requests_and_the_resume_finishes(tmp_path: Path) -> None:
    """`target: local`: the embedded server stops with the interrupted run, so its queued
    requests cannot be re-attached; they are settled in the journal (not left dangling) and the
    resume runs them again on a fresh server."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: local-interrupt
        target: local
        concurrency: 4
        jobs:
          - {name: q, endpoint: local/sleep, matrix: {n: [1, 2]}, arguments: {seconds: 1.5, n: "${{ matrix.n }}"}}
          - {name: d, endpoint: local/echo, mode: run, arguments: {n: 0}}
    """)
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--no-progress"]
    code, err, elapsed = _interrupt(cmd, tmp_path, lambda: len(read_journal(journal_path(out))[0]) == 2)
    assert code == 130, err
    assert elapsed < 5.0
    assert "Traceback" not in err
    assert read_journal(journal_path(out)) == ({}, {})
    assert all(r["status"] == "ok" for r in records(out))
    code, err = _resume(cmd, tmp_path)
    assert code == 0, err
    planned = sorted(p.id for p in build_plan(load_spec(spec)))
    assert sorted(r["id"] for r in records(out)) == planned
    assert not journal_path(out).exists()


def test_a_run_starts_processes_only_while_stop_signals_are_held(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C that lands in a subprocess.Popen's finalizer is swallowed there ("Exception ignored
    in Popen.__del__") and the run goes on as if never interrupted: the start-up case below lost
    one that way. So a run starts only the processes it needs (git, for the manifest; not the
    `uname -p` of platform.platform()) and each one is created and finalized with SIGINT and
    SIGTERM blocked. Observed by wrapping the standard library's Popen, in process."""
    started: list[tuple[str, bool]] = []
    finalized: list[bool] = []

    def blocked() -> bool:
        return {signal.SIGINT, signal.SIGTERM} <= signal.pthread_sigmask(signal.SIG_BLOCK, [])

    init, final = subprocess.Popen.__init__, subprocess.Popen.__del__

    def recording_init(self: subprocess.Popen[str], args: Any, *rest: Any, **kwargs: Any) -> None:
        started.append((str(list(args)[0]) if not isinstance(args, str) else args, blocked()))
        init(self, args, *rest, **kwargs)

    def recording_del(self: subprocess.Popen[str]) -> None:
        finalized.append(blocked())
        final(self)

    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    monkeypatch.setattr(subprocess.Popen, "__del__", recording_del)
    spec = write_spec(tmp_path, """\
        version: 1
        name: processes
        jobs:
          - {name: d, endpoint: local/echo, mode: run, arguments: {n: 1}}
    """)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 0
    assert [r["status"] for r in records(out)] == ["ok"]
    assert json.loads(manifest_path(out).read_text())["platform"].startswith(os.uname().sysname)
    assert started and all(program == "git" for program, _ in started), started
    assert all(held for _, held in started), started
    assert len(finalized) == len(started) and all(finalized), finalized


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
@pytest.mark.parametrize(("signum", "exit_code", "said"), STOPS)
def test_ctrl_c_in_the_first_moments_of_a_run(tmp_path: Path, make_server: MakeServer, delay: float,
                                              signum: signal.Signals, exit_code: int, said: str) -> None:
    """SIGINT or SIGTERM right after the run took its output lock (plus `delay`), while it scans,
    plans, starts its event loop or sends its first requests: exit 130/143 within 5 s, no
    traceback, complete records only, and the resume completes the plan with no duplicate submit."""
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
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--run-url", srv.run_url,
               "--queue-url", srv.queue_url, "--no-progress"]
        code, err, elapsed = _interrupt(cmd, tmp_path, started, signum)
        assert code == exit_code, err
        assert elapsed < 5.0
        assert "Traceback" not in err
        assert f"batchrun: interrupted{said}" in err
        first = records(out) if out.exists() else []
        assert len(first) < 12
        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    assert len({r["id"] for r in records(out)}) == len(records(out)) == 12
    assert counters["duplicate_submits"] == 0
    assert not journal_path(out).exists()


def test_ctrl_c_while_the_commands_are_imported_is_held_back_then_delivered() -> None:
    """Regression: a SIGINT landing inside an extension module's init (orjson) crashed the
    interpreter with a segfault, elsewhere in the imports it printed a traceback. During start-up
    the signal is now blocked and delivered afterwards, where `main` turns it into exit 130."""
    from batchrun.signals import held

    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with held():
            # Directed at this thread: other threads of the test session (servers) must not take it.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            time.sleep(0.05)  # had it not been held back, KeyboardInterrupt would be raised here
            reached_end = True
    assert reached_end


@pytest.mark.parametrize(("signum", "exit_code", "said"), STOPS)
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(
    tmp_path: Path, signum: signal.Signals, exit_code: int, said: str
) -> None:
    """SIGINT (SIGTERM) at several points of `batchrun validate`'s start-up: held back, then
    delivered as a stop: 130 (143) and one line every time, never a traceback or, for SIGTERM, the
    default death by signal (-15); once the interpreter itself is up: its own first imports are
    Python's business."""
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
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=15)
        outcomes.append((proc.returncode, "Traceback" in err or "Fatal Python error" in err))
        if proc.returncode == exit_code:
            assert err.splitlines()[-1] == f"batchrun: interrupted{said}"
    # 0 when the validation finished before the signal arrived; never a crash or a traceback.
    assert all(code in (0, exit_code) and not crashed for code, crashed in outcomes), outcomes
    assert (exit_code, False) in outcomes


def test_a_ctrl_c_racing_asyncios_runner_start_is_an_interrupt_not_a_crash() -> None:
    """Regression: a SIGINT landing while asyncio's runner installs its handler cancels the main
    task without becoming KeyboardInterrupt (a race in asyncio.Runner); the CancelledError then
    escaped with a traceback and exit 1. It is reported as an interrupt: exit 130."""
    import asyncio
    import contextlib
    import io

    from batchrun.cli import error_handler

    err = io.StringIO()
    with contextlib.redirect_stderr(err), error_handler(False) as code:
        raise asyncio.CancelledError()
    assert code == [130]
    assert err.getvalue() == "batchrun: interrupted\n"


# ---- SIGTERM only ---------------------------------------------------------------------------------

SIGTERM_SPEC = """\
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


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _run_cmd(spec: Path, out: Path, srv: ServerThread) -> list[str]:
    return [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--run-url", srv.run_url,
            "--queue-url", srv.queue_url, "--no-progress"]


def test_sigterm_mid_run_exits_143_and_the_resume_reattaches_without_resubmitting(
    tmp_path: Path, make_server: MakeServer
) -> None:
    """SIGTERM (a cancelled CI job, a deleted pod) with 4 queue requests running remotely and
    direct calls on the wire: no new requests, the direct calls on the wire finish and are written,
    exit 143 within 5 s. Every line is a whole schema-valid record, the 4 queue requests stay
    journaled, the manifest says 143; the resume re-attaches them (4 submits in all) and completes
    the plan, one record per id."""
    spec = write_spec(tmp_path, SIGTERM_SPEC)
    out = tmp_path / "out.jsonl"
    journal = journal_path(out)
    with make_server(runners=8) as srv:
        cmd = _run_cmd(spec, out, srv)
        code, err, elapsed = _interrupt(
            cmd, tmp_path, lambda: len(read_journal(journal)[0]) == 4 and _lines(out) >= 2, signal.SIGTERM)
        assert code == 143, err
        assert elapsed < 5.0
        assert "Traceback" not in err
        assert "batchrun: interrupted (SIGTERM); no new requests" in err
        assert "batchrun: 4 queue requests keep running remotely and stay journaled" in err
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


def test_sigterm_stops_a_run_started_with_sigint_ignored(tmp_path: Path, make_server: MakeServer) -> None:
    """`cmd &` in a non-interactive shell (and nohup) starts a program with SIGINT ignored, so
    Python installs no KeyboardInterrupt handler; SIGTERM must still stop the run gracefully, at
    start-up as well as mid-run."""
    spec = write_spec(tmp_path, SIGTERM_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=8) as srv:
        cmd = ["sh", "-c", f"trap '' INT; exec {' '.join(_run_cmd(spec, out, srv))}"]
        lock = out.with_name(out.name + ".lock")
        code, err, _ = _interrupt(cmd, tmp_path, lock.exists, signal.SIGTERM)
        assert code == 143, err
        assert "Traceback" not in err
        code, err, elapsed = _interrupt(cmd, tmp_path, lambda: _lines(out) >= 4, signal.SIGTERM)
        assert code == 143, err
        assert elapsed < 5.0
        assert "Traceback" not in err and "batchrun: interrupted (SIGTERM); no new requests" in err
        records(out)
        code, err = _resume(cmd, tmp_path)
        counters = stats(srv.origin)
    assert code == 0, err
    assert len({r["id"] for r in records(out)}) == len(records(out)) == 24
    assert counters["duplicate_submits"] == 0
