"""`batchrun run` end to end against the embedded server: records, error classes, attempts, resume,
journal re-attach, --fresh, --retry-errors, locks and unwritable outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from fixtures_disk import fill, tmpfs
from fixtures_execute import records, run_cli, stats, write_spec

from batchrun.load import load_spec
from batchrun.output.journal import Journal, journal_path
from batchrun.output.records import RECORD_FIELDS
from batchrun.output.sink import OutputLock
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

ERRORS_SPEC = """\
    version: 1
    name: errors
    concurrency: 8
    defaults:
      retries: {initial_delay: 0, max_delay: 0, max_attempts: 4}
    jobs:
      - {name: run-ok, endpoint: local/echo, mode: run, arguments: {prompt: hi}}
      - {name: run-422, endpoint: local/fail, mode: run, arguments: {status: 422}}
      - {name: run-429-twice, endpoint: local/fail, mode: run, arguments: {status: 429, times: 2, key: r429}}
      - {name: run-429-always, endpoint: local/fail, mode: run, arguments: {status: 429}}
      - {name: run-500, endpoint: local/fail, mode: run, arguments: {}}
      - {name: run-ingress-twice, endpoint: local/fail, mode: run, arguments: {ingress: true, times: 2, key: ing}}
      - {name: run-bad-json, endpoint: local/fail, mode: run, arguments: {bad_json: true}}
      - {name: run-list, endpoint: local/fail, mode: run, arguments: {not_object: true}}
      - {name: run-reset, endpoint: local/fail, mode: run, arguments: {reset: true}}
      - {name: sub-ok, endpoint: local/echo, arguments: {prompt: hi}}
      - {name: sub-runner-error, endpoint: local/fail, headers: {X-Fal-No-Retry: "1"},
         arguments: {error_type: runner_server_error}}
      - {name: sub-ingress-once, endpoint: local/fail, arguments: {ingress: true, times: 1, key: sing}}
      - {name: sub-client-timeout, endpoint: local/fail, client_timeout: 0.5, arguments: {hang: true}}
      - {name: sub-422, endpoint: local/fail, arguments: {status: 422}}
"""

# job -> (status, attempts, error type, HTTP status, retryable)
EXPECTED = {
    "run-ok": ("ok", 1, None, None, None),
    "run-422": ("error", 1, "validation_error", 422, False),
    "run-429-twice": ("ok", 3, None, None, None),
    "run-429-always": ("error", 4, "concurrent_requests_limit", 429, True),
    "run-500": ("error", 1, "runner_server_error", 500, True),
    "run-ingress-twice": ("ok", 3, None, None, None),
    "run-bad-json": ("error", 1, "invalid_response", 200, False),
    "run-list": ("error", 1, "invalid_response", 200, False),
    "run-reset": ("error", 4, "connection_error", None, True),
    "sub-ok": ("ok", 1, None, None, None),
    "sub-runner-error": ("error", 1, "runner_server_error", 500, True),
    "sub-ingress-once": ("ok", 2, None, None, None),
    "sub-client-timeout": ("error", 1, "client_timeout", None, True),
    "sub-422": ("error", 1, "validation_error", 422, False),
}


def test_every_error_class_gets_its_record_and_attempts(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line per planned id, schema-valid, fields in order; each error class has the right record."""
    spec = write_spec(tmp_path, ERRORS_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        code = run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                       "--no-progress")
        counters = stats(srv.origin)
    assert code == 1
    got = records(out)
    planned = list(build_plan(load_spec(spec)))
    assert sorted(r["id"] for r in got) == sorted(p.id for p in planned)
    by_job = {r["job"]: r for r in got}
    for job, (status, attempts, etype, code_, retryable) in EXPECTED.items():
        r = by_job[job]
        assert list(r) == [*RECORD_FIELDS, "asked"], job  # every one of them sent something
        assert (r["status"], r["attempts"]) == (status, attempts), job
        if status == "ok":
            assert r["error"] is None and isinstance(r["result"], dict), job
        else:
            e = r["error"]
            assert (e["type"], e["status_code"], e["retryable"]) == (etype, code_, retryable), job
            assert r["result"] is None
    assert by_job["sub-ok"]["result"] == {"echo": {"prompt": "hi"}, "path": ""}
    assert by_job["sub-ok"]["timing"]["queue_s"] is not None
    assert by_job["run-ok"]["timing"]["queue_s"] is None
    assert by_job["sub-client-timeout"]["request_id"] is not None
    assert counters["cancelled"] == 1  # the client timeout cancelled its request remotely
    assert counters["duplicate_submits"] == 0
    err = capsys.readouterr().err
    assert "  total: ok=5 error=9" in err
    assert f"  output: {out}" in err
    assert "    errors by type: concurrent_requests_limit=1" in err
    assert "  run-429-twice: ok=1 error=0 ok latency p50=" in err and "retries=2" in err
    assert not journal_path(out).exists()  # nothing left in flight


ECHO_SPEC = """\
    version: 1
    name: echo
    concurrency: 4
    jobs:
      - name: direct
        endpoint: local/echo
        mode: run
        matrix: {n: [1, 2, 3, 4, 5]}
        arguments: {prompt: "run ${{ matrix.n }}"}
      - name: queued
        endpoint: local/echo
        matrix: {n: [1, 2, 3, 4, 5]}
        arguments: {prompt: "sub ${{ matrix.n }}"}
"""


def _urls(srv: ServerThread) -> list[str]:
    return ["--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress"]


def test_resume_after_a_torn_last_line_neither_loses_nor_duplicates(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cut the output mid-line (a crash mid-write): the resume repairs it, re-runs only that id,
    and the file ends with exactly one record per planned id."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
        data = out.read_bytes()
        last_start = data.rstrip(b"\n").rfind(b"\n") + 1
        cut_id = json.loads(data[last_start:])["id"]
        out.write_bytes(data[: last_start + 40])  # a torn last line
        before = stats(srv.origin)["requests"]
        capsys.readouterr()
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
        after = stats(srv.origin)["requests"]
    got = records(out)
    assert len(got) == 10 and len({r["id"] for r in got}) == 10
    assert got[-1]["id"] == cut_id
    assert (after["run"] - before["run"]) + (after["submit"] - before["submit"]) == 1
    err = capsys.readouterr().err
    assert f"batchrun: {out}: removed a truncated last line (40 bytes) left by an interrupted run" in err
    assert "batchrun: resuming" in err and "9 of 10 planned requests are already done (9 ok, 0 error)" in err


def test_journaled_requests_are_reattached_not_resubmitted(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal with in-flight queue requests (a crash after submit): the resume fetches their
    results; the server's counters prove no second submit."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    out = tmp_path / "out.jsonl"
    queued = [p for p in build_plan(load_spec(spec)) if p.job.name == "queued"]
    with make_server(runners=4) as srv:
        journal = Journal(journal_path(out))
        journal.open()
        handles = {}
        for p in queued[:3]:
            answer = httpx.post(f"{srv.queue_url}/local/echo", json=p.arguments).json()
            handles[p.id] = answer["request_id"]
            journal.submitted(id=p.id, job="queued", request_id=answer["request_id"],
                              status_url=answer["status_url"], response_url=answer["response_url"],
                              cancel_url=answer["cancel_url"])
        journal.close()
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
        counters = stats(srv.origin)
    got = {r["id"]: r for r in records(out)}
    assert len(got) == 10
    for rid, request_id in handles.items():
        assert got[rid]["request_id"] == request_id
        assert got[rid]["status"] == "ok" and got[rid]["attempts"] == 1
    assert counters["requests"]["submit"] == 5  # 3 by the "crashed" run, 2 by the resume
    assert counters["duplicate_submits"] == 0
    assert not journal_path(out).exists()
    assert "3 journaled queue requests to re-attach" in capsys.readouterr().err


def test_retry_errors_reruns_only_error_records(tmp_path: Path, make_server: MakeServer) -> None:
    """An error stays settled on a plain resume (exit 1, no request); --retry-errors re-runs it and
    the newest record wins."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: flaky
        jobs:
          - {name: ok, endpoint: local/echo, mode: run, arguments: {prompt: a}}
          - name: flaky
            endpoint: local/fail
            mode: run
            retries: {max_attempts: 1}
            arguments: {status: 500, times: 1, key: flaky-retry-errors}
    """)
    out = tmp_path / "out.jsonl"
    with make_server() as srv:
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 1
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 1
        assert stats(srv.origin)["requests"]["run"] == 2
        assert run_cli(str(spec), "-o", str(out), "--retry-errors", *_urls(srv)) == 0
        assert stats(srv.origin)["requests"]["run"] == 3
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
    got = records(out)
    # The first run sends both jobs together, so its two records may be in either order; the retry's
    # record is appended after them.
    pairs = [(r["job"], r["status"]) for r in got]
    assert sorted(pairs[:2]) == [("flaky", "error"), ("ok", "ok")] and pairs[2:] == [("flaky", "ok")], pairs


def test_fresh_moves_the_old_output_aside(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--fresh never clobbers: the old output becomes <out>.<time>.bak and everything runs again."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
        old = out.read_bytes()
        capsys.readouterr()
        assert run_cli(str(spec), "-o", str(out), "--fresh", *_urls(srv)) == 0
        assert stats(srv.origin)["requests"]["run"] == 10
    backups = list(tmp_path.glob("out.jsonl.*.bak"))
    assert len(backups) == 1 and backups[0].read_bytes() == old
    assert len(records(out)) == 10
    # The old manifest travels with the old output; the new one describes the fresh run.
    old_manifest = json.loads(Path(f"{backups[0]}.manifest.json").read_text())
    new_manifest = json.loads(Path(f"{out}.manifest.json").read_text())
    assert old_manifest["started_at"] < new_manifest["started_at"]
    assert f"batchrun: --fresh: moved the previous output to {backups[0]}" in capsys.readouterr().err


def test_second_run_on_a_locked_output_is_refused(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another process holds the output, a run is refused with a clear error (a usage problem: exit 2)
    and sends nothing."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    out = tmp_path / "out.jsonl"
    with OutputLock(out):
        assert run_cli(str(spec), "-o", str(out), *_urls(loopback_server)) == 2
    assert not out.exists()
    assert "is in use by another batchrun process" in capsys.readouterr().err


def test_unwritable_output_is_a_clear_error(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output below a regular file cannot be created: exit 1 and a message naming it."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    (tmp_path / "blocker").write_text("")
    out = tmp_path / "blocker" / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *_urls(loopback_server)) == 1
    err = capsys.readouterr().err
    assert err.startswith("batchrun: error: cannot create the output lock ")
    assert "Traceback" not in err


def test_full_disk_mid_run_stops_with_a_clear_error(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """A write failing with ENOSPC ends the run with exit 1 and a message, never a traceback.
    (A full tmpfs: an output symlinked to /dev/full is refused now, as every device is.)"""
    spec = write_spec(tmp_path, ECHO_SPEC)
    with tmpfs(tmp_path / "disk", "64k") as disk:
        out = disk / "out.jsonl"
        fill(disk)
        assert run_cli(str(spec), "-o", str(out), *_urls(loopback_server)) == 1
    err = capsys.readouterr().err
    assert f"batchrun: error: cannot write to the output {out}: no space left on device" in err
    assert "Traceback" not in err


def test_target_local_starts_and_stops_its_own_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`target: local` runs against an embedded server started for the run; progress lines appear
    on a non-terminal stderr."""
    spec = write_spec(tmp_path, ECHO_SPEC.replace("name: echo\n", "name: echo\n    target: local\n"))
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out)) == 0
    got = records(out)
    assert len(got) == 10 and all(r["status"] == "ok" for r in got)
    err = capsys.readouterr().err
    assert "batchrun: 10/10 (100%) ok=10 errors=0 retrying=0 queued=0 running=0 concurrency=4/4 rate=" in err


def test_show_logs_streams_logs_and_with_logs_keeps_them(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """--show-logs prints runner logs prefixed with job and id; only with_logs jobs keep them."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: logs
        jobs:
          - {name: kept, endpoint: local/sleep, with_logs: true, arguments: {seconds: 0.15}}
          - {name: shown, endpoint: local/sleep, arguments: {seconds: 0.15}}
    """)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), "--show-logs", *_urls(loopback_server)) == 0
    by_job = {r["job"]: r for r in records(out)}
    assert by_job["shown"]["logs"] is None
    assert [e["message"] for e in by_job["kept"]["logs"]][0] == "sleeping 0.15 s"
    err = capsys.readouterr().err
    assert f"[shown {by_job['shown']['id']}] INFO sleeping 0.15 s" in err
    assert f"[kept {by_job['kept']['id']}] INFO sleeping 0.15 s" in err


def test_journaled_requests_outside_the_plan_are_reported(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journaled request whose id the (changed) spec no longer plans is left journaled and named."""
    spec = write_spec(tmp_path, ECHO_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        answer = httpx.post(f"{srv.queue_url}/local/echo", json={"prompt": "gone"}).json()
        with Journal(journal_path(out)) as journal:
            journal.submitted(id="not-planned", job="old", request_id=answer["request_id"],
                              status_url=answer["status_url"], response_url=answer["response_url"],
                              cancel_url=answer["cancel_url"])
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
    assert len(records(out)) == 10
    err = capsys.readouterr().err
    assert "batchrun: 1 queue requests keep running remotely and stay journaled" in err
    assert f"batchrun: 1 of them are not in this plan (did the spec or --shard change?), so this run cannot " \
           f"collect them; `batchrun cancel {out}` cancels them" in err
    assert journal_path(out).exists()
