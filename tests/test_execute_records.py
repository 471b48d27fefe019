"""Records, progress lines and the summary, built from real values (no server needed)."""

from __future__ import annotations

import io

from fixtures_execute import VALIDATOR

from batchrun.client.fal import Outcome
from batchrun.output.records import RECORD_FIELDS, build_record, isoformat
from batchrun.output.summary import RunSummary, percentile
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import Redactor
from batchrun.run.progress import Progress
from batchrun.spec.model import Job

JOB = Job(name="j", endpoint="fal-ai/x", path="/dev", mode="subscribe", with_logs=True)
REQUEST = PlannedRequest(id="abc", index=3, job=JOB, arguments={"prompt": "${{ env.K }}", "n": 1},
                         matrix={"n": 1}, row=None, repeat=0)


def _outcome(**changes: object) -> Outcome:
    values: dict[str, object] = dict(ok=True, result={"echo": "s3cret-value"}, error=None, request_id="q1",
                                     attempts=2, logs=[{"message": "saw s3cret-value"}], metrics={"t": 1.0},
                                     queue_s=0.25, served_from="runner-0")
    values.update(changes)
    return Outcome(**values)  # type: ignore[arg-type]


def test_record_fields_order_redaction_and_timing() -> None:
    """A record has the schema's fields in order, keeps planned arguments and scrubs secrets."""
    record = build_record(REQUEST, _outcome(), started_at=0.0, finished_at=1.5, latency_s=1.5,
                          scrub=Redactor(["s3cret-value"]).scrub)
    VALIDATOR.validate(record)
    assert list(record) == list(RECORD_FIELDS)
    assert record["arguments"] == {"prompt": "${{ env.K }}", "n": 1}
    assert record["result"] == {"echo": "[REDACTED]"}
    assert record["logs"] == [{"message": "saw [REDACTED]"}]
    assert record["timing"] == {"started_at": "1970-01-01T00:00:00.000Z", "finished_at": "1970-01-01T00:00:01.500Z",
                                "latency_s": 1.5, "queue_s": 0.25}
    assert (record["path"], record["mode"], record["attempts"], record["served_from"]) == ("/dev", "subscribe", 2, "runner-0")


def test_error_record_and_logs_only_when_kept() -> None:
    """An error outcome has result null and the error object; logs are dropped unless kept."""
    error = {"type": "runner_server_error", "status_code": 500, "detail": "boom", "retryable": True}
    record = build_record(REQUEST, _outcome(ok=False, result=None, error=error), started_at=0, finished_at=0,
                          latency_s=0, scrub=Redactor().scrub, keep_logs=False)
    VALIDATOR.validate(record)
    assert (record["status"], record["result"], record["error"], record["logs"]) == ("error", None, error, None)


def test_isoformat_is_utc_with_milliseconds() -> None:
    assert isoformat(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"


def test_plain_progress_line() -> None:
    """Off a terminal, progress is a plain line with every counter."""
    stream = io.StringIO()
    progress = Progress(10, skipped=2, concurrency=8, stream=stream, tty=False)
    progress.set_state("a", "queued")
    progress.set_state("b", "retrying")
    progress.set_state("c", "running")
    progress.effective = 4
    progress.advance(True)
    progress.advance(False)
    line = progress.line()
    assert line.startswith("batchrun: 4/10 (40%) ok=1 errors=1 retrying=1 queued=1 running=1 concurrency=4/8 rate=")
    assert " eta " in line
    progress.close()
    assert stream.getvalue().splitlines()[-1].startswith("batchrun: 4/10 (40%)")


def test_terminal_progress_bar_shows_counts_and_effective_concurrency() -> None:
    """On a terminal, the tqdm bar carries ok/err/queued/running and conc=effective/limit."""
    stream = io.StringIO()
    progress = Progress(4, concurrency=4, stream=stream, tty=True)
    progress.set_state("a", "queued")
    progress.effective = 2
    progress.advance(True)
    progress.tick()
    progress.message("hello")
    progress.close()
    text = stream.getvalue()
    assert "1/4" in text and "ok=1 err=0 queued=1 running=0 conc=2/4" in text and "hello\n" in text


def test_disabled_progress_prints_only_messages() -> None:
    """--no-progress: no bar and no lines, but messages still show."""
    stream = io.StringIO()
    progress = Progress(2, stream=stream, enabled=False, tty=False)
    progress.advance(True)
    progress.tick()
    progress.message("note")
    progress.close()
    assert stream.getvalue() == "note\n"


def test_summary_counts_percentiles_and_retries() -> None:
    """Per job: counts by status, errors by type, nearest-rank p50/p95/max of the ok requests (the
    failures' 0.5, 1.0, 1.5 and 2.0 s are left out, as report does), retries; the output path."""
    summary = RunSummary(output="out.jsonl")
    for i in range(1, 21):
        ok = i % 5 != 0
        summary.add({"job": "a", "status": "ok" if ok else "error", "attempts": 2 if i == 1 else 1,
                     "error": None if ok else {"type": "http_error"}, "timing": {"latency_s": i / 10}})
    summary.skip("a", ok=False)
    lines = summary.lines()
    assert lines[1] == ("  a: ok=16 error=4 skipped=1 (already in the output, 1 of them errors) "
                        "ok latency p50=0.900s p95=1.900s max=1.900s retries=1")
    assert lines[2] == "    errors by type: http_error=4"
    assert lines[-1] == "  output: out.jsonl"
    assert summary.failed == 5
    assert percentile([], 50) == 0.0 and percentile([1.0], 95) == 1.0


def test_summary_lists_jobs_in_plan_order_with_ok_latencies_only() -> None:
    """Records arrive in completion order; the summary lists jobs in plan order. A job whose
    requests all failed shows no latency (the user saw `hang p50=3.002s` with ok=0), and a job the
    run never reached is not listed."""
    summary = RunSummary(output="out.jsonl")
    summary.plan_order(["first", "hang", "never"])
    summary.add({"job": "hang", "status": "error", "attempts": 1, "error": {"type": "client_timeout"},
                 "timing": {"latency_s": 3.002}})
    summary.add({"job": "first", "status": "ok", "attempts": 1, "error": None, "timing": {"latency_s": 0.25}})
    assert summary.lines()[1:4] == [
        "  first: ok=1 error=0 ok latency p50=0.250s p95=0.250s max=0.250s retries=0",
        "  hang: ok=0 error=1 retries=0",
        "    errors by type: client_timeout=1",
    ]
    assert summary.lines()[4] == "  total: ok=1 error=1"
