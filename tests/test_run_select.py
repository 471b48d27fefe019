"""`batchrun run --only JOB[,JOB...] --limit N`: a cheap smoke test on a part of the plan, whose ids
are the full plan's, so a later full run on the same output resumes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, write_spec

from batchrun.load import load_spec
from batchrun.output.manifest import manifest_path
from batchrun.output.planids import plan_ids_path
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: smoke
    jobs:
      - {name: alpha, endpoint: local/echo, mode: run, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2, 3, 4]}}
      - {name: beta, endpoint: local/echo, mode: run, arguments: {y: "${{ matrix.y }}"}, matrix: {y: [1, 2, 3]}}
      - {name: gamma, endpoint: local/echo, mode: run, arguments: {z: "${{ env.BR_SELECT_GAMMA }}"}}
"""



def test_a_smoke_run_then_the_full_run_resumes_it(tmp_path: Path, make_server: MakeServer,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("BR_SELECT_GAMMA", raising=False)  # gamma is not selected: a warning, not a stop
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    plan = {r.index: r.id for r in build_plan(load_spec(spec))}
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(out), "--only", "alpha,beta", "--limit", "2", *server_urls(srv)) == 0
        smoke = records(out)
        assert [(r["job"], r["index"], r["id"]) for r in smoke] == [
            ("alpha", 0, plan[0]), ("alpha", 1, plan[1]), ("beta", 4, plan[4]), ("beta", 5, plan[5])]
        assert "BR_SELECT_GAMMA is not set" in capsys.readouterr().err
        assert not plan_ids_path(out).exists()  # a part of the plan is not recorded as the plan
        m = json.loads(manifest_path(out).read_text())
        assert m["plan"] == {"count": 4, "ids_sha256": None, "ids_file": None,
                             "selection": "--only alpha,beta --limit 2"}
        monkeypatch.setenv("BR_SELECT_GAMMA", "g")
        assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == 0
        sent = stats(srv.origin)["requests"]["run"]
    err = capsys.readouterr().err
    assert "4 of 8 planned requests are already done (4 ok, 0 error)" in err
    assert "plan changed" not in err
    assert sent == 8  # 4 + 4: nothing twice
    assert sorted(r["id"] for r in records(out)) == sorted(plan.values())
    m = json.loads(manifest_path(out).read_text())
    assert (m["plan"]["count"], m["plan"]["selection"]) == (8, None) and plan_ids_path(out).exists()
    assert [r["selection"] for r in m["runs"]] == ["--only alpha,beta --limit 2", None]


@pytest.mark.parametrize(("args", "message"), [
    (["--only", "alpah"], "--only: the spec has no job 'alpah'; did you mean 'alpha'? its jobs: alpha, beta, gamma"),
    (["--only", "alpha,,beta"], "--only 'alpha,,beta': expected job names separated by commas, e.g. --only alpha"),
    (["--only", "zzz"], "--only: the spec has no job 'zzz'; its jobs: alpha, beta, gamma"),
])
def test_unknown_jobs_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                       message: str) -> None:
    spec = write_spec(tmp_path, SPEC)
    assert run_cli(str(spec), "-o", str(tmp_path / "out.jsonl"), *args) == 2
    assert f"batchrun: error: {message}\n" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [spec]



HUGE = """\
    version: 1
    name: huge
    limits: {max_requests: 1000000000000}
    jobs:
      - {name: many, endpoint: local/echo, mode: run, repeat: 100000000000, arguments: {v: 1}}
      - {name: pair, endpoint: local/echo, mode: run, repeat: 3, matrix: {m: [1, 1]}, arguments: {m: "${{ matrix.m }}"}}
      - {name: last, endpoint: local/echo, mode: run, arguments: {v: 2}}
"""


def test_a_huge_repeat_is_stepped_over_not_walked(tmp_path: Path, make_server: MakeServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: a job with repeat 10^11 made `validate` (its duplicate check) and `run --limit 2`
    (the plan walk to the selected indices) step through every repeat, for minutes. Now one repeat
    is checked for duplicates (repeats differ by their index), the walk jumps over repeats it does
    not want, and both take well under the test's timeout. Duplicates are still found, with their
    real plan indices."""
    import time

    from batchrun.load import validate_spec

    spec = write_spec(tmp_path, HUGE)
    t0 = time.monotonic()
    _, found = validate_spec(spec)
    messages = [p.message for p in found]
    assert len(messages) == 1 and messages[0].startswith("requests 100000000000 and 100000000003 of job 'pair'")
    assert "(3 duplicates in all)" in messages[0]
    fixed = write_spec(tmp_path, HUGE.replace("[1, 1]", "[1, 2]"), "fixed.yaml")
    assert validate_spec(fixed)[1] == []
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        assert run_cli(str(fixed), "-o", str(out), "--limit", "2", *server_urls(srv)) == 0
    got = sorted((r["job"], r["index"], r["repeat"]) for r in records(out))
    assert got == [("last", 100000000006, 0), ("many", 0, 0), ("many", 1, 1),
                   ("pair", 100000000000, 0), ("pair", 100000000001, 1)]
    assert time.monotonic() - t0 < 20


def test_workers_are_capped_at_the_requests_left(tmp_path: Path, make_server: MakeServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: `--concurrency 100000` on a 4-request plan started 100000 workers (and as many
    local runners and connections): 8.2 s and 109 MB at 10000, 538 s and 583 MB at 100000. The run
    starts no more than it has requests left (the progress line shows the limit in use), and more
    than 10000 is a usage error."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: four
        jobs:
          - {name: a, endpoint: local/echo, mode: run, repeat: 4, arguments: {v: 1}}
    """)
    out = tmp_path / "out.jsonl"
    with make_server(runners=2) as srv:
        urls = ["--run-url", srv.run_url, "--queue-url", srv.queue_url]
        assert run_cli(str(spec), "-o", str(out), "--concurrency", "10000", *urls) == 0
        assert "concurrency=4/4" in capsys.readouterr().err
        with pytest.raises(SystemExit) as exc:
            run_cli(str(spec), "-o", str(out), "--concurrency", "10001", *urls)
        assert exc.value.code == 2
    assert "--concurrency: must be at most 10000, got 10001" in capsys.readouterr().err
    assert len(records(out)) == 4
