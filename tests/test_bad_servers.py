"""Servers that break the protocol: every breakage becomes a structured error record, in bounded
time, and the run goes on (the other requests of the same run still succeed).

The breakage comes from the embedded server's local/fail app (batchrun/server/faults.py), over
real loopback sockets, through the whole `batchrun run` command.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fixtures_execute import records, run_cli, server_urls, stats, write_spec

from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: bad-servers
    concurrency: 16
    defaults:
      retries: {max_attempts: 3, initial_delay: 0}
    jobs:
      - {name: run-not-json, endpoint: local/fail, mode: run, arguments: {bad_json: true}}
      - {name: run-not-object, endpoint: local/fail, mode: run, arguments: {not_object: true}}
      - {name: run-never-answers, endpoint: local/fail, mode: run, timeout: 0.3, arguments: {hang: true}}
      - {name: submit-without-request-id, endpoint: local/fail, arguments: {submit: no_request_id}}
      - {name: submit-not-json, endpoint: local/fail, arguments: {submit: not_json}}
      - {name: submit-not-object, endpoint: local/fail, arguments: {submit: not_object}}
      - {name: submit-answer-lost, endpoint: local/fail, arguments: {submit: reset}}
      - {name: unknown-status, endpoint: local/fail, arguments: {status_value: DONE_ISH}}
      - {name: result-not-json, endpoint: local/fail, arguments: {bad_json: true}}
      - {name: result-not-object, endpoint: local/fail, arguments: {not_object: true}}
      - {name: run-nested-too-deep, endpoint: local/fail, mode: run, arguments: {deep_json: 100000}}
      - {name: result-nested-too-deep, endpoint: local/fail, arguments: {deep_json: 100000}}
      - {name: stream-never-ends, endpoint: local/fail, client_timeout: 1, arguments: {hang: true}}
      - {name: healthy-run, endpoint: local/echo, mode: run, arguments: {n: 1}}
      - {name: healthy-queue, endpoint: local/echo, mode: subscribe, arguments: {n: 2}}
"""

# job -> (error type, HTTP status in the record, the start of the detail, attempts)
EXPECTED: dict[str, tuple[str, int | None, str, int]] = {
    "run-not-json": ("invalid_response", 200, "HTTP 200 answer is not JSON: <html>this is not JSON", 1),
    "run-not-object": ("invalid_response", 200, 'HTTP 200 answer is a JSON list: ["not","an","object"]', 1),
    "run-never-answers": ("http_timeout", None, "no complete answer within 0.3 s", 3),
    "submit-without-request-id": ("invalid_response", 200,
                                  "the queue submit answer lacks request_id, status_url, response_url, cancel_url", 1),
    "submit-not-json": ("invalid_response", 200, "the queue submit answer (HTTP 200) is not a JSON object", 1),
    "submit-not-object": ("invalid_response", 200, "the queue submit answer (HTTP 200) is not a JSON object", 1),
    "submit-answer-lost": ("outcome_unknown", None, "the queue submit was sent but its answer was lost", 1),
    "unknown-status": ("invalid_response", None, "unknown queue status 'DONE_ISH'", 1),
    "result-not-json": ("invalid_response", 200, "HTTP 200 answer is not JSON: <html>this is not JSON", 1),
    "result-not-object": ("invalid_response", 200, 'HTTP 200 answer is a JSON list: ["not","an","object"]', 1),
    "run-nested-too-deep": ("invalid_response", 200, 'HTTP 200 answer is not JSON: {"a":{"a":', 1),
    "result-nested-too-deep": ("invalid_response", 200, 'HTTP 200 answer is not JSON: {"a":{"a":', 1),
    "stream-never-ends": ("client_timeout", None, "client_timeout of 1 s expired for request ", 1),
}


def test_each_protocol_breakage_is_a_structured_error_record_in_bounded_time(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=8) as srv:
        t0 = time.monotonic()
        code = run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                       "--no-progress")
        elapsed = time.monotonic() - t0
        counters = stats(srv.origin)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "Traceback" not in err
    by_job = {r["job"]: r for r in records(out)}  # every line schema-valid
    assert len(by_job) == len(EXPECTED) + 2
    got = {
        job: (r["error"]["type"], r["error"]["status_code"], r["error"]["detail"][: len(EXPECTED[job][2])],
              r["attempts"])
        for job, r in by_job.items() if not job.startswith("healthy")
    }
    assert got == EXPECTED
    assert all(r["error"]["retryable"] is (r["error"]["type"] in ("http_timeout", "outcome_unknown", "client_timeout"))
               for job, r in by_job.items() if not job.startswith("healthy"))
    # The run went on: the healthy requests of the same run succeeded.
    healthy = [r for r in records(out) if r["job"].startswith("healthy")]
    assert sorted(r["mode"] for r in healthy) == ["run", "subscribe"] and all(r["status"] == "ok" for r in healthy)
    # Queue answers that did carry a request id keep it in the record (to look the request up later).
    for job in ("unknown-status", "result-not-json", "stream-never-ends"):
        assert by_job[job]["request_id"] is not None
    # Bounded: the slowest breakage is the 1 s client_timeout; the never-ending stream was cancelled.
    assert elapsed < 8.0
    assert counters["cancelled"] == 1
    # One submit per subscribe job (10): a broken or lost submit answer is not sent again.
    assert counters["requests"]["submit"] == 10 and counters["duplicate_submits"] == 0


SURROGATE_SPEC = """\
    version: 1
    name: surrogates
    concurrency: 4
    defaults:
      retries: {max_attempts: 1}
    jobs:
      - {name: run-ok, endpoint: local/fail, mode: run, arguments: {surrogates: true}}
      - {name: run-422, endpoint: local/fail, mode: run, arguments: {surrogates: true, status: 422}}
      - {name: queue-result, endpoint: local/fail, arguments: {surrogates: true}}
      - {name: queue-422, endpoint: local/fail, arguments: {surrogates: true, status: 422}}
      - {name: after, endpoint: local/echo, repeat: 3, arguments: {n: 1}}
"""


def test_answers_with_lone_surrogates_are_records_and_resume_reads_them(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: a JSON answer holding a lone surrogate escape ("\\ud800", valid JSON text, not
    Unicode) crashed the run in the record encoder (UTF-8 cannot encode it); every resume crashed
    again at the same request and the requests planned after it never ran. Now each such answer is
    a record, its lone surrogates written as U+FFFD (the output stays UTF-8 that every reader, orjson
    included, reads), the valid pair beside them kept, and a resume skips them all."""
    spec = write_spec(tmp_path, SURROGATE_SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        code = run_cli(str(spec), "-o", str(out), *server_urls(srv))
        err = capsys.readouterr().err
        assert code == 1, err
        assert "Traceback" not in err and "internal error" not in err
        by_job: dict[str, list[dict[str, Any]]] = {}
        for record in records(out):  # each line is UTF-8 JSON and schema-valid
            by_job.setdefault(record["job"], []).append(record)
        assert sorted(by_job) == ["after", "queue-422", "queue-result", "run-422", "run-ok"]
        assert [r["status"] for r in by_job["after"]] == ["ok"] * 3
        for job in ("run-ok", "queue-result"):
            (record,) = by_job[job]
            assert record["status"] == "ok"
            assert record["result"] == {"text": "\ufffd lone", "\ufffdkey": 1, "items": ["x\ufffd", "\U0001f600 pair"]}
        for job in ("run-422", "queue-422"):
            (record,) = by_job[job]
            assert record["error"]["status_code"] == 422
            assert "\ufffd" in json.dumps(record["error"]["detail"], ensure_ascii=False)
        # The resume reads every record (orjson, like the resume scan): nothing is sent again.
        for line in out.read_bytes().splitlines():
            orjson.loads(line)
        before = stats(srv.origin)["requests"]
        assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == 1
        assert stats(srv.origin)["requests"] == before
    assert "resuming" in capsys.readouterr().err and len(records(out)) == 7
