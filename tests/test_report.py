"""`batchrun report`: exact text, markdown and json for a crafted output file, and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from batchrun.cli import main
from batchrun.report.stats import build_report

DATA = Path(__file__).parent / "data" / "records"

# run.jsonl: two jobs, 7 lines, 6 ids (id-04 failed, then succeeded on resume: the newest wins),
# written in completion order; errors, retries, queue times, expectation failures and costs.
EXPECTED_TEXT = """\
batchrun report: run.jsonl
FAIL: 2 errors, 2 expectation failures
(7 records, 1 superseded by newer ones)

all jobs
  requests                 6
  ok                       4
  error                    2 (33.3%)
  expectation failures     2 requests (3 checks)
  latency p50 / p95 / max  1.200 s / 3.400 s / 3.400 s
  queue p50 / p95          0.200 s / 0.500 s
  attempts                 9 (2 requests retried)
  throughput               1.20 requests/s over 5.000 s
  cost                     $0.0350

job txt2img
  requests                 4
  ok                       3
  error                    1 (25.0%)
  expectation failures     2 requests (3 checks)
  latency p50 / p95 / max  2.000 s / 3.400 s / 3.400 s
  queue p50 / p95          0.200 s / 0.500 s
  attempts                 5 (1 request retried)
  throughput               0.91 requests/s over 4.400 s
  cost                     $0.0300

job upscale
  requests                 2
  ok                       1
  error                    1 (50.0%)
  expectation failures     0
  latency p50 / p95 / max  0.800 s / 0.800 s / 0.800 s
  queue p50 / p95          n/a
  attempts                 4 (1 request retried)
  throughput               0.67 requests/s over 3.000 s
  cost                     $0.0050

errors
  job      type              count  first request                      example
  txt2img  validation_error  1      id-02 (seed=2)                     [{"loc": ["body", "num_images"], "msg": "ensure this value is less than or equa…
  upscale  http_timeout      1      id-05 (row 5 prompt=a cat seed=5)  read timed out

failed requests
  job      id     request                    error
  txt2img  id-02  seed=2                     validation_error: [{"loc": ["body", "num_images"], "msg": "ensure this value is less than or equa…
  upscale  id-05  row 5 prompt=a cat seed=5  http_timeout: read timed out

expectation failures
  job      id     request  message
  txt2img  id-01  seed=1   images[0].width: expected 512, got 768
  txt2img  id-03  seed=3   seed: expected 7, got 8
  txt2img  id-03  seed=3   latency_s: expected <= 3, got 3.4
"""

EXPECTED_MARKDOWN = """\
## batchrun report: `run.jsonl`

**FAIL: 2 errors, 2 expectation failures**

7 records, 1 superseded by newer ones.

### All jobs

| metric | value |
| --- | --- |
| requests | 6 |
| ok | 4 |
| error | 2 (33.3%) |
| expectation failures | 2 requests (3 checks) |
| latency p50 / p95 / max | 1.200 s / 3.400 s / 3.400 s |
| queue p50 / p95 | 0.200 s / 0.500 s |
| attempts | 9 (2 requests retried) |
| throughput | 1.20 requests/s over 5.000 s |
| cost | $0.0350 |

### Job `txt2img`

| metric | value |
| --- | --- |
| requests | 4 |
| ok | 3 |
| error | 1 (25.0%) |
| expectation failures | 2 requests (3 checks) |
| latency p50 / p95 / max | 2.000 s / 3.400 s / 3.400 s |
| queue p50 / p95 | 0.200 s / 0.500 s |
| attempts | 5 (1 request retried) |
| throughput | 0.91 requests/s over 4.400 s |
| cost | $0.0300 |

### Job `upscale`

| metric | value |
| --- | --- |
| requests | 2 |
| ok | 1 |
| error | 1 (50.0%) |
| expectation failures | 0 |
| latency p50 / p95 / max | 0.800 s / 0.800 s / 0.800 s |
| queue p50 / p95 | n/a |
| attempts | 4 (1 request retried) |
| throughput | 0.67 requests/s over 3.000 s |
| cost | $0.0050 |

### Errors

| job | type | count | first request | example |
| --- | --- | --- | --- | --- |
| txt2img | validation_error | 1 | id-02 (seed=2) | [{"loc": ["body", "num_images"], "msg": "ensure this value is less than or equa… |
| upscale | http_timeout | 1 | id-05 (row 5 prompt=a cat seed=5) | read timed out |

### Failed requests

| job | id | request | error |
| --- | --- | --- | --- |
| txt2img | id-02 | seed=2 | validation_error: [{"loc": ["body", "num_images"], "msg": "ensure this value is less than or equa… |
| upscale | id-05 | row 5 prompt=a cat seed=5 | http_timeout: read timed out |

### Expectation failures

| job | id | request | message |
| --- | --- | --- | --- |
| txt2img | id-01 | seed=1 | images[0].width: expected 512, got 768 |
| txt2img | id-03 | seed=3 | seed: expected 7, got 8 |
| txt2img | id-03 | seed=3 | latency_s: expected <= 3, got 3.4 |
"""


@pytest.fixture
def in_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(DATA)
    return DATA


def test_text_report(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text report, in full: overall, per job, errors and expectation failures."""
    assert main(["report", "run.jsonl"]) == 0
    assert capsys.readouterr().out == EXPECTED_TEXT


def test_markdown_report(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The markdown report, in full: a heading, a table per job, an errors table."""
    assert main(["report", "run.jsonl", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == EXPECTED_MARKDOWN


def test_json_report(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The json report carries the same numbers, unrounded, for machines."""
    assert main(["report", "run.jsonl", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sorted(data) == ["errors", "expectation_failures", "failed_requests", "file", "jobs", "overall", "plan",
                            "records", "run", "superseded", "verdict"]
    assert (data["records"], data["superseded"]) == (7, 1)
    assert (data["verdict"], data["plan"], data["run"]) == ("FAIL: 2 errors, 2 expectation failures", None, None)
    assert data["overall"] == {
        "requests": 6,
        "ok": 4,
        "error": 2,
        "error_rate": 0.333333,
        "errors_by_type": {"http_timeout": 1, "validation_error": 1},
        "expectation_failures": {"requests": 2, "checks": 3},
        "latency_s": {"p50": 1.2, "p95": 3.4, "max": 3.4},
        "queue_s": {"p50": 0.2, "p95": 0.5},
        "attempts": {"total": 9, "retried_requests": 2},
        "rerouted": 0,
        "duration_s": 5.0,
        "throughput_rps": 1.2,
        "cost_usd": 0.035,
    }
    assert list(data["jobs"]) == ["txt2img", "upscale"]
    assert data["jobs"]["upscale"]["queue_s"] == {"p50": None, "p95": None}
    assert data["jobs"]["txt2img"]["throughput_rps"] == 0.909091
    assert data["errors"][1] == {"job": "upscale", "type": "http_timeout", "count": 1, "example": "read timed out",
                                 "example_id": "id-05", "example_request": "row 5 prompt=a cat seed=5"}
    assert data["failed_requests"][1] == {"job": "upscale", "id": "id-05", "request": "row 5 prompt=a cat seed=5",
                                          "error": "http_timeout: read timed out"}
    assert data["expectation_failures"][0] == {
        "job": "txt2img",
        "id": "id-01",
        "message": "images[0].width: expected 512, got 768",
        "request": "seed=1",
    }


def test_percentiles_are_nearest_rank(tmp_path: Path) -> None:
    """p50/p95 of 1..20 s are 10 s and 19 s (nearest rank), max 20 s."""
    out = tmp_path / "out.jsonl"
    out.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "index": i, "job": "j", "status": "ok", "attempts": 1,
                        "timing": {"started_at": "2025-01-01T00:00:00Z", "finished_at": "2025-01-01T00:00:10Z",
                                   "latency_s": float(i + 1), "queue_s": None}}) + "\n"
            for i in range(20)
        )
    )
    stats = build_report(out).overall
    assert (stats.latency_p50, stats.latency_p95, stats.latency_max) == (10.0, 19.0, 20.0)
    assert (stats.duration_s, stats.throughput_rps) == (10.0, 2.0)


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty output says so instead of printing zeros."""
    (tmp_path / "out.jsonl").write_text("")
    assert main(["report", str(tmp_path / "out.jsonl")]) == 0
    assert capsys.readouterr().out == f"batchrun report: {tmp_path / 'out.jsonl'}\nFAIL: no records\nno records\n"


def test_truncated_last_line_is_skipped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed mid-write leaves half a line: it is skipped and named."""
    out = tmp_path / "out.jsonl"
    lines = (DATA / "run.jsonl").read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    assert main(["report", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["overall"]["requests"] == 3
    assert caplog.record_tuples == [
        ("batchrun.output.reading", logging.WARNING,
         f"{out}:4: skipping a truncated last line (the run was stopped mid-write)")
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param('{"id": "a", "index": 0, "job": "j", "status": "ok"}\n{oops\n{"id": "b", "index": 1, "job": "j", '
                     '"status": "ok"}\n', "{path}:2: invalid JSON (Expecting property name enclosed in double quotes "
                     "at column 2)", id="broken-middle-line"),
        pytest.param('[1, 2]\n{}\n', "{path}:1: not a batchrun record: a record is a JSON object", id="not-object"),
        pytest.param('{"id": "a", "index": 0, "job": "j", "status": "done"}\n',
                     '{path}:1: not a batchrun record: \'status\' must be "ok" or "error"', id="bad-status"),
        pytest.param('{"index": 0}\n', "{path}:1: not a batchrun record: 'id' must be a non-empty string", id="no-id"),
    ],
)
def test_bad_input_is_a_located_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A damaged file is exit 2 with FILE:LINE and what is wrong, never a traceback."""
    out = tmp_path / "out.jsonl"
    out.write_text(content)
    assert main(["report", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"batchrun: error: {message.format(path=out)}\n"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file is exit 2 with the OS's reason."""
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err == f"batchrun: error: {tmp_path / 'nope.jsonl'}: cannot read: No such file or directory\n"


def readme_example(command: str) -> str:
    """The output shown under `$ <command>` in the README (an indented block), unindented."""
    lines = (Path(__file__).parent.parent / "README.md").read_text().splitlines()
    start = lines.index(f"    $ {command}") + 1
    out = []
    for line in lines[start:]:
        if line and not line.startswith("    ") or line.startswith("    $ "):
            break
        out.append(line[4:])
    return "\n".join(out).rstrip("\n") + "\n"


def test_readme_shows_the_real_report() -> None:
    """The README's report example is exactly what the command prints."""
    assert readme_example("cd tests/data/records && batchrun report run.jsonl") == EXPECTED_TEXT
