"""No new retries once the run is stopping. A gate or the budget halting the run: a request sleeping
before its next attempt, or failing the attempt it has on the wire, ends with the error it had (its
record says why), instead of retrying for up to max_attempts (the user's run took ~16 s longer).
Ctrl-C / SIGTERM: such a request ends at once with no record, and the resume sends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, write_spec

from batchrun.output.journal import journal_path
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

# The flaky request's backoff is 5 s, so any retry would show in the run's time.
GATED = """\
    version: 1
    name: gated
    concurrency: 4
    gates: {{max_errors: 0}}
    jobs:
      - name: flaky
        endpoint: local/fail
        mode: {mode}
        retries: {{initial_delay: 5, max_delay: 5, max_attempts: 10}}
        arguments: {arguments}
      - {{name: bad, endpoint: local/fail, mode: run, arguments: {{status: 400, delay: 0.3}}}}
"""
GATE = "gate max_errors: 1 failed requests > max_errors 0 (1 finished)"



@pytest.mark.parametrize(("mode", "arguments", "error"), [
    pytest.param("run", "{ingress: true}", ("http_error", 503), id="sleeping-before-its-retry"),
    pytest.param("run", "{ingress: true, delay: 0.6}", ("http_error", 503), id="attempt-on-the-wire"),
    pytest.param("subscribe", '{submit: "429"}', ("concurrent_requests_limit", 429), id="queue-submit-refused"),
])
def test_a_gate_stop_starts_no_new_retry(tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str],
                                         mode: str, arguments: str, error: tuple[str, int]) -> None:
    spec = write_spec(tmp_path, GATED.format(mode=mode, arguments=arguments))
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        t0 = time.monotonic()
        assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == 1
        elapsed = time.monotonic() - t0
        sent = stats(srv.origin)["requests"]
    assert elapsed < 2.5  # the retry would have slept 2.5-5 s
    assert sent["run"] + sent["submit"] == 2  # one attempt each (a refused submit counts too)
    by_job = {r["job"]: r for r in records(out)}
    assert by_job["flaky"]["attempts"] == 1
    kind, status = error
    assert by_job["flaky"]["error"] == {
        "type": kind, "status_code": status, "retryable": True,
        "detail": f"attempt 1 failed with {kind} (HTTP {status}); not retried because the run was stopping "
                  f"({GATE}); `batchrun run --retry-errors` sends it again",
    }
    assert not journal_path(out).exists()  # the refused submit's write-ahead intent is settled by its record
    err = capsys.readouterr().err
    assert f"batchrun: {GATE}; finishing the requests in flight (no new retries)" in err
    assert f"  stopped early: {GATE}" in err


@pytest.mark.slow  # a run stopped by a signal
def test_ctrl_c_ends_a_retry_backoff_at_once_and_the_resume_sends_it(tmp_path: Path, make_server: MakeServer) -> None:
    """Without the change the request would sleep through the 3 s grace; now it ends at once, with
    no record (the interrupt cut it short), and the resume sends it (the server now answers)."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: interrupted
        jobs:
          - name: flaky
            endpoint: local/fail
            mode: run
            retries: {initial_delay: 20, max_delay: 20}
            arguments: {ingress: true, times: 1, key: once}
    """)
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *server_urls(srv)]
        with subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=dict(os.environ)) as proc:
            deadline = time.monotonic() + 20
            while stats(srv.origin)["requests"]["run"] < 1:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.01)
            time.sleep(0.2)  # the answer is in: the request sleeps before its retry
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - t0
        assert proc.returncode == 130, err
        assert elapsed < 2.0  # not the 3 s grace, not the 20 s backoff
        assert out.read_text() == ""
        resumed = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        sent = stats(srv.origin)["apps"]["local/fail"]["run"]
    assert resumed.returncode == 0, resumed.stderr
    assert [(r["status"], r["attempts"]) for r in records(out)] == [("ok", 1)]
    assert sent == 2
