"""A resume walks the plan twice: once to count what the output settles (the "N of M already done"
message), once to run what is left. The second walk renders only the requests left to do and skips
the settled ones per job in bulk; these tests pin that it sends, skips and reports exactly what a
request-by-request walk would."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, stats, write_spec

from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: walk
    concurrency: 4
    jobs:
      - {name: a, endpoint: local/echo, mode: run, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3, 4, 5, 6]}}
      - {name: b, endpoint: local/fail, mode: run, arguments: {status: 422, x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3]}}
      - {name: c, endpoint: local/echo, mode: run, arguments: {r: "${{ repeat }}"}, repeat: 4}
"""


def _urls(srv: ServerThread) -> list[str]:
    return ["--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress"]


def _summary(err: str) -> list[str]:
    """The summary's job lines without latencies (they vary)."""
    lines = [re.sub(r" ok latency p50=\S+ p95=\S+ max=\S+", "", line) for line in err.splitlines()]
    return [line for line in lines if line.startswith(("  a:", "  b:", "  c:", "  total:"))]


def test_resume_sends_skips_and_reports_exactly_what_is_left(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 1  # job b fails by design
        first = records(out)
        assert [r["job"] for r in first].count("a") == 6 and len(first) == 13
        # Lose a's x=2 and x=5 and c's last repeat, as if the run had stopped before them.
        lost = {r["id"] for r in first if (r["job"] == "a" and r["arguments"]["x"] in (2, 5))
                or (r["job"] == "c" and r["repeat"] == 3)}
        out.write_text("".join(json.dumps(r) + "\n" for r in first if r["id"] not in lost))
        capsys.readouterr()
        before = stats(srv.origin)["requests"]["run"]
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 1  # b's errors are still the newest
        sent = stats(srv.origin)["requests"]["run"] - before
        err = capsys.readouterr().err
        assert sent == 3
        assert ("10 of 13 planned requests are already done (7 ok, 3 error; --retry-errors re-runs errors)"
                in err)
        assert _summary(err) == [
            "  a: ok=2 error=0 skipped=4 (already in the output) retries=0",
            "  b: ok=0 error=0 skipped=3 (already in the output, 3 of them errors) retries=0",
            "  c: ok=1 error=0 skipped=3 (already in the output) retries=0",
            "  total: ok=3 error=0 skipped=10",
        ]
        after = records(out)
        assert {r["id"] for r in after[-3:]} == lost and len(after) == 13

        # --retry-errors: b's three errors are left to do (between a and c in the plan).
        before = stats(srv.origin)["requests"]["run"]
        assert run_cli(str(spec), "-o", str(out), "--retry-errors", *_urls(srv)) == 1
        sent = stats(srv.origin)["requests"]["run"] - before
        err = capsys.readouterr().err
        assert sent == 3
        assert "10 of 13 planned requests are already done (10 ok, 0 error)" in err
        # (b's line comes after c's: c is skipped while b's requests are on the wire; timing, so sorted)
        assert sorted(_summary(err)) == [
            "  a: ok=0 error=0 skipped=6 (already in the output) retries=0",
            "  b: ok=0 error=3 retries=0",
            "  c: ok=0 error=0 skipped=4 (already in the output) retries=0",
            "  total: ok=0 error=3 skipped=10",
        ]
        assert [r["job"] for r in records(out)[-3:]] == ["b", "b", "b"]


def test_sharded_resume_runs_only_the_shards_missing_request(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "shard.jsonl"
    with make_server(runners=4) as srv:
        run_cli(str(spec), "-o", str(out), "--shard", "2/3", *_urls(srv))
        first = records(out)
        out.write_text("".join(json.dumps(r) + "\n" for r in first[1:]))
        capsys.readouterr()
        before = stats(srv.origin)["requests"]["run"]
        run_cli(str(spec), "-o", str(out), "--shard", "2/3", *_urls(srv))
        assert stats(srv.origin)["requests"]["run"] - before == 1
    err = capsys.readouterr().err
    n = len(first)
    assert f"{n - 1} of {n} planned requests are already done" in err
    last = records(out)[-1]
    assert (last["id"], last["index"]) == (first[0]["id"], first[0]["index"])


def test_a_run_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path, make_server: MakeServer) -> None:
    """The run freezes start-up objects out of the cyclic GC (see batchrun/run/runner.py) and unfreezes them
    when it ends, so a program running several commands in one process keeps collecting them."""
    import gc

    spec = write_spec(tmp_path, SPEC)
    with make_server(runners=4) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "out.jsonl"), *_urls(srv)) == 1
    assert gc.get_freeze_count() == 0
