"""The result cache (`cache:` in a spec): hits across outputs and specs counted on the server,
never across targets or past a TTL, never errors or env values, and safe against kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, wait_for, write_spec

from batchrun.cli import main
from batchrun.output.resultcache import DB_NAME, ResultCache
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("BATCHRUN_CACHE_DIR", str(folder))
    return folder


def sweep(first: int, last: int, *, name: str = "sweep", mode: str = "subscribe", cache: str = "true",
          extra: str = "", endpoint: str = "local/echo") -> str:
    """A spec of one job over prompts p<first>..p<last-1>: two sweeps share their overlap."""
    prompts = ", ".join(f"p{i}" for i in range(first, last))
    return f"""\
        version: 1
        name: {name}
        cache: {cache}
        concurrency: 8
        jobs:
          - name: gen
            endpoint: {endpoint}
            mode: {mode}
            matrix: {{prompt: [{prompts}]}}
            arguments: {{prompt: "${{{{ matrix.prompt }}}}"}}
{extra}"""


def sent(srv: ServerThread) -> int:
    requests = stats(srv.origin)["requests"]
    return int(requests["submit"] + requests["run"])


def entries(folder: Path) -> int:
    with sqlite3.connect(folder / DB_NAME) as db:
        return int(db.execute("SELECT count(*) FROM results").fetchone()[0])


def test_two_specs_sharing_60_of_100_requests_send_40(
    tmp_path: Path, cache_dir: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The done-when of the cache: a second spec (its own file, name and output) sharing 60 of its 100
    requests with the first sends 40 (the server's counters), writes 100 records of which 60 are
    marked cached, and `report` and `diff` read them as ordinary records."""
    a = write_spec(tmp_path, sweep(0, 100, name="first"), "a.yaml")
    b = write_spec(tmp_path, sweep(40, 140, name="second"), "b.yaml")
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with make_server(runners=4) as srv:
        assert run_cli(str(a), "-o", str(out_a), *server_urls(srv)) == 0
        assert sent(srv) == 100
        assert entries(cache_dir) == 100
        capsys.readouterr()
        assert main(["plan", str(b), "--count"]) == 0  # the spec's target (fal) is not the server's
        assert "result cache: 0 requests would be served from the cache, 100 sent" in capsys.readouterr().out
        assert run_cli(str(b), "-o", str(out_b), *server_urls(srv)) == 0
        assert sent(srv) == 100 + 40
    assert "cache: 60 records served from the result cache" in capsys.readouterr().err
    got = records(out_b)  # each validated against the record schema
    assert len(got) == 100
    cached = [r for r in got if "cached" in r]
    assert len(cached) == 60
    assert {r["arguments"]["prompt"] for r in cached} == {f"p{i}" for i in range(40, 100)}
    first = {r["id"]: r for r in records(out_a)}
    for r in cached:
        assert r["status"] == "ok" and r["attempts"] == 0
        assert r["result"] == first[r["id"]]["result"] and r["request_id"] == first[r["id"]]["request_id"]
        assert r["cached"]["output"] == str(out_a) and r["cached"]["target"] == srv.queue_url
        assert r["cached"]["latency_s"] == first[r["id"]]["timing"]["latency_s"]
    assert main(["report", str(out_b), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["requests"] == 100 and report["overall"]["ok"] == 100
    code = main(["diff", str(out_a), str(out_b), "--format", "json"])
    diff = json.loads(capsys.readouterr().out)
    assert diff["shared_ids"] == 60
    assert diff["counts"]["results_changed"] == 0 and diff["counts"]["newly_failing"] == 0
    assert diff["counts"]["latency_regressions"] == 0 and diff["counts"]["expectation_regressions"] == 0
    assert (diff["counts"]["missing"], diff["counts"]["added"]) == (40, 40)
    assert code == 1  # the 40 of the first sweep the second does not plan are missing: a regression


def test_plan_count_says_hits_and_savings(tmp_path: Path, cache_dir: Path, make_server: MakeServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`plan --count` on the target that filled the cache: how many would be hits and what they save."""
    with make_server(runners=2) as srv:
        target = f"        target: {{run_url: {srv.run_url}, queue_url: {srv.queue_url}}}"
        pricing = "        pricing:\n          local/echo: {per_request: 0.25}\n"
        a = write_spec(tmp_path, sweep(0, 6, extra=pricing).replace("cache: true", "cache: true\n" + target), "a.yaml")
        b = write_spec(tmp_path, sweep(2, 10, extra=pricing).replace("cache: true", "cache: true\n" + target),
                       "b.yaml")
        assert run_cli(str(a), "-o", str(tmp_path / "a.jsonl"), "--no-progress") == 0
        capsys.readouterr()
        assert main(["plan", str(b), "--count"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0].split() == ["job", "endpoint", "requests", "est.", "cost", "cached", "cache",
                                               "saves"]
        assert out.splitlines()[1].split() == ["gen", "local/echo", "8", "$2.0000", "4", "$1.0000"]
        assert "result cache: 4 requests would be served from the cache, 4 sent" in out
        assert run_cli(str(b), "-o", str(tmp_path / "b.jsonl"), "--no-progress") == 0
        assert sent(srv) == 6 + 4
    err = capsys.readouterr().err
    assert "saving $1.0000" in err and "cost: $1.0000 estimated for this run" in err
    got = records(tmp_path / "b.jsonl")
    assert sorted(r["cost_usd"] for r in got) == [0.0] * 4 + [0.25] * 4


def test_a_cached_result_never_crosses_targets(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """One spec, three targets (a server, another server, the embedded one): each sends everything
    the first time; the same target again hits."""
    spec = write_spec(tmp_path, sweep(0, 5))
    with make_server(runners=2) as one, make_server(runners=2) as two:
        assert run_cli(str(spec), "-o", str(tmp_path / "1.jsonl"), *server_urls(one)) == 0
        assert run_cli(str(spec), "-o", str(tmp_path / "2.jsonl"), *server_urls(two)) == 0
        assert run_cli(str(spec), "-o", str(tmp_path / "3.jsonl"), "--target", "local", "--no-progress") == 0
        assert run_cli(str(spec), "-o", str(tmp_path / "4.jsonl"), *server_urls(two)) == 0
        assert (sent(one), sent(two)) == (5, 5)
    for n in (1, 2, 3):
        assert not any("cached" in r for r in records(tmp_path / f"{n}.jsonl"))
    assert {r["cached"]["target"] for r in records(tmp_path / "4.jsonl")} == {two.queue_url}
    assert entries(cache_dir) == 15


def test_an_expired_entry_is_not_served(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """`ttl` is the reader's: entries two hours old miss under `ttl: 1h` (sent again and replaced)
    and hit under `ttl: 3h`."""
    one_hour = write_spec(tmp_path, sweep(0, 4, cache="{ttl: 1h}"), "1h.yaml")
    three_hours = write_spec(tmp_path, sweep(0, 4, cache="{ttl: 3h}"), "3h.yaml")
    with make_server(runners=2) as srv:
        assert run_cli(str(one_hour), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
        with sqlite3.connect(cache_dir / DB_NAME) as db:  # two hours pass
            db.execute("UPDATE results SET created = created - 7200")
        assert run_cli(str(three_hours), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 4
        assert run_cli(str(one_hour), "-o", str(tmp_path / "c.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 8
        assert run_cli(str(one_hour), "-o", str(tmp_path / "d.jsonl"), *server_urls(srv)) == 0  # replaced: fresh
        assert sent(srv) == 8
    assert all("cached" in r for r in records(tmp_path / "b.jsonl"))
    assert not any("cached" in r for r in records(tmp_path / "c.jsonl"))
    assert all("cached" in r for r in records(tmp_path / "d.jsonl"))


def test_errors_are_never_cached(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """A failed request is sent again by the next run, whatever the cache."""
    spec = write_spec(tmp_path, sweep(0, 3, endpoint="local/fail", mode="run").replace(
        'arguments: {prompt: "${{ matrix.prompt }}"}', 'arguments: {prompt: "${{ matrix.prompt }}", status: 422}'))
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 1
        assert run_cli(str(spec), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 1
        assert sent(srv) == 6
    assert entries(cache_dir) == 0
    assert [r["status"] for r in records(tmp_path / "b.jsonl")] == ["error"] * 3


def test_expectations_are_evaluated_afresh_on_a_hit(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """A spec with `expect` over results another spec cached judges them itself."""
    plain = write_spec(tmp_path, sweep(0, 3), "plain.yaml")
    strict = write_spec(tmp_path, sweep(0, 3).replace(
        "      mode: subscribe", "      mode: subscribe\n            expect:\n              - {path: echo.prompt, equals: p1}"),
        "strict.yaml")
    with make_server(runners=2) as srv:
        assert run_cli(str(plain), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
        assert run_cli(str(strict), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 1
        assert sent(srv) == 3
    got = {r["arguments"]["prompt"]: r for r in records(tmp_path / "b.jsonl")}
    assert all("cached" in r for r in got.values())
    assert {p: all(e["passed"] for e in r["expectations"]) for p, r in got.items()} == {"p0": False, "p1": True,
                                                                                   "p2": False}


def test_hits_cost_nothing_against_the_budget(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """A budget for 2 requests: 5 hits and 2 sent fit; without the cache the run stops after 2."""
    pricing = "        pricing:\n          local/echo: {per_request: 1.0}\n"
    fill = write_spec(tmp_path, sweep(0, 5, extra=pricing), "fill.yaml")
    budgeted = write_spec(tmp_path, sweep(0, 7, extra=pricing + "        budget: {max_usd: 2}\n"), "budget.yaml")
    with make_server(runners=2) as srv:
        assert run_cli(str(fill), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
        assert run_cli(str(budgeted), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 7
        assert run_cli(str(budgeted), "-o", str(tmp_path / "c.jsonl"), "--no-cache", *server_urls(srv)) == 1
        assert sent(srv) == 9
    b = records(tmp_path / "b.jsonl")
    assert len(b) == 7 and sum(r["cost_usd"] for r in b) == 2.0
    assert len(records(tmp_path / "c.jsonl")) == 2


def test_no_cache_and_refresh_cache(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """--no-cache neither reads nor writes; --refresh-cache sends everything and replaces the entries."""
    spec = write_spec(tmp_path, sweep(0, 4))
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a.jsonl"), "--no-cache", *server_urls(srv)) == 0
        assert not (cache_dir / DB_NAME).exists()
        assert run_cli(str(spec), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 0
        with sqlite3.connect(cache_dir / DB_NAME) as db:
            before = sorted(db.execute("SELECT created FROM results"))
        assert run_cli(str(spec), "-o", str(tmp_path / "c.jsonl"), "--refresh-cache", *server_urls(srv)) == 0
        with sqlite3.connect(cache_dir / DB_NAME) as db:
            after = sorted(db.execute("SELECT created FROM results"))
        assert run_cli(str(spec), "-o", str(tmp_path / "d.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 12
    assert len(after) == 4 and all(a > b for a, b in zip(after, before, strict=True))
    assert not any("cached" in r for r in records(tmp_path / "c.jsonl"))
    assert {r["cached"]["output"] for r in records(tmp_path / "d.jsonl")} == {str(tmp_path / "c.jsonl")}


def test_cache_off_by_default_and_per_job(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """No `cache:` means no cache; a job's `cache: false` wins over the spec's `cache: true`."""
    off = write_spec(tmp_path, sweep(0, 3).replace("        cache: true\n", ""), "off.yaml")
    job_off = write_spec(tmp_path, sweep(0, 3).replace("      mode: subscribe", "      mode: subscribe\n            cache: false"),
                         "job.yaml")
    with make_server(runners=2) as srv:
        for n, spec in enumerate([off, off, job_off, job_off]):
            assert run_cli(str(spec), "-o", str(tmp_path / f"{n}.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 12
    assert not (cache_dir / DB_NAME).exists()


def test_env_values_never_enter_the_cache(tmp_path: Path, cache_dir: Path, make_server: MakeServer,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Arguments with `${{ env.X }}` are not cacheable: always sent, and the value is nowhere in the cache."""
    monkeypatch.setenv("STYLE_TOKEN", "tok-very-secret-123")
    spec = write_spec(tmp_path, sweep(0, 3).replace(
        'arguments: {prompt: "${{ matrix.prompt }}"}',
        'arguments: {prompt: "${{ matrix.prompt }}", token: "${{ env.STYLE_TOKEN }}"}'))
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
        assert run_cli(str(spec), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 6
    assert entries(cache_dir) == 0
    for path in cache_dir.rglob("*"):
        if path.is_file():
            assert b"tok-very-secret-123" not in path.read_bytes()
    capsys.readouterr()
    assert main(["plan", str(spec), "--count"]) == 0
    assert "3 use ${{ env.X }} values and are never cached" in capsys.readouterr().out


def test_input_files_are_keyed_by_content(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """`$file` arguments: the same bytes under another name hit; edited bytes miss."""
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "b.txt").write_text("one")
    body = sweep(0, 1, mode="run").replace('arguments: {prompt: "${{ matrix.prompt }}"}',
                                          'arguments: {prompt: "${{ matrix.prompt }}", file: {$file: NAME}}')
    a = write_spec(tmp_path, body.replace("NAME", "a.txt"), "a.yaml")
    b = write_spec(tmp_path, body.replace("NAME", "b.txt"), "b.yaml")
    with make_server(runners=2) as srv:
        assert run_cli(str(a), "-o", str(tmp_path / "1.jsonl"), *server_urls(srv)) == 0
        assert run_cli(str(b), "-o", str(tmp_path / "2.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 1
        (tmp_path / "b.txt").write_text("two")
        assert run_cli(str(b), "-o", str(tmp_path / "3.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 2
    assert "cached" in records(tmp_path / "2.jsonl")[0]
    assert "cached" not in records(tmp_path / "3.jsonl")[0]


def test_artifacts_are_reused_by_content_hash(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """`download: true`: a hit links its files from the cache into the new output's files/ folder,
    nothing is fetched again; after `cache clear` the entry and its files are gone."""
    body = sweep(0, 2, mode="run", endpoint="local/image").replace(
        "      mode: run", "      mode: run\n            download: true")
    spec = write_spec(tmp_path, body)
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a" / "out.jsonl"), *server_urls(srv)) == 0
        fetched = stats(srv.origin)["requests"]["files"]
        assert fetched >= 2
        assert run_cli(str(spec), "-o", str(tmp_path / "b" / "out.jsonl"), *server_urls(srv)) == 0
        assert stats(srv.origin)["requests"]["files"] == fetched and sent(srv) == 2
    first = {r["id"]: r for r in records(tmp_path / "a" / "out.jsonl")}
    for r in records(tmp_path / "b" / "out.jsonl"):
        assert "cached" in r
        assert [a["sha256"] for a in r["artifacts"]] == [a["sha256"] for a in first[r["id"]]["artifacts"]]
        for artifact in r["artifacts"]:
            stored = tmp_path / "b" / artifact["path"]
            assert stored.is_file() and stored.read_bytes() == (tmp_path / "a" / artifact["path"]).read_bytes()
    assert any((cache_dir / "files").iterdir())
    assert main(["cache", "clear"]) == 0
    assert entries(cache_dir) == 0 and not (cache_dir / "files").exists()


def test_cache_command_stats_and_prune(tmp_path: Path, cache_dir: Path, make_server: MakeServer,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`batchrun cache stats` counts entries per target and endpoint; `prune --older-than` drops the
    old ones, `--max-size` the oldest beyond a size."""
    spec = write_spec(tmp_path, sweep(0, 6))
    assert main(["cache", "stats"]) == 0
    assert "no result cache at" in capsys.readouterr().err
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
    with sqlite3.connect(cache_dir / DB_NAME) as db:  # two of them are a day old
        db.execute("UPDATE results SET created = created - 86400 WHERE rowid IN (SELECT rowid FROM results LIMIT 2)")
    capsys.readouterr()
    assert main(["cache", "stats"]) == 0
    out = capsys.readouterr().out
    assert "  entries   6\n" in out and f"        6  {srv.queue_url}\n" in out and "        6  local/echo\n" in out
    assert main(["cache", "prune", "--older-than", "12h"]) == 0
    assert "pruned 2 entries; 4 left" in capsys.readouterr().out
    assert main(["cache", "prune", "--max-size", "1"]) == 0
    assert "pruned 4 entries; 0 left" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 2
    assert "needs --older-than AGE and/or --max-size SIZE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("{ttl: 5x}", "$.cache", id="bad-ttl-unit"),
        pytest.param("{scope: team}", "$.cache", id="bad-scope"),
        pytest.param("yes please", "$.cache", id="not-a-boolean"),
    ],
)
def test_bad_cache_settings_are_located_spec_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     value: str, message: str) -> None:
    """A wrong `cache:` is a located spec error (exit 2), no traceback."""
    spec = write_spec(tmp_path, sweep(0, 1, cache=value))
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:3:" in err and message in err and "Traceback" not in err


@pytest.mark.slow  # concurrent runs as subprocesses
def test_kill_9_during_a_run_leaves_the_cache_readable(tmp_path: Path, cache_dir: Path,
                                                       make_server: MakeServer) -> None:
    """SIGKILL a real `batchrun run` subprocess while it stores results: the cache passes SQLite's
    integrity check, `batchrun cache stats` reads it, and a new run is served what was committed."""
    spec = write_spec(tmp_path, sweep(0, 400, mode="run").replace(
        'arguments: {prompt: "${{ matrix.prompt }}"}', 'arguments: {prompt: "${{ matrix.prompt }}", delay: 0.01}'))
    with make_server(runners=8) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(tmp_path / "a.jsonl"),
               *server_urls(srv)]
        env = {**os.environ, "BATCHRUN_CACHE_DIR": str(cache_dir)}
        with subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) as proc:
            def stored() -> bool:
                try:
                    return (cache_dir / DB_NAME).exists() and entries(cache_dir) >= 20
                except sqlite3.OperationalError:  # the run is creating its tables
                    return False

            wait_for(stored)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=15)
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(cache_dir / DB_NAME) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            kept = int(db.execute("SELECT count(*) FROM results").fetchone()[0])
        assert 20 <= kept < 400
        assert main(["cache", "stats"]) == 0
        before = sent(srv)
        assert run_cli(str(spec), "-o", str(tmp_path / "b.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) - before == 400 - kept
    assert sum("cached" in r for r in records(tmp_path / "b.jsonl")) == kept


@pytest.mark.slow  # concurrent runs as subprocesses
def test_two_runs_at_once_share_one_cache(tmp_path: Path, cache_dir: Path, make_server: MakeServer) -> None:
    """Two `batchrun run` processes writing the same cache file at once both finish, and every
    result is stored once."""
    a = write_spec(tmp_path, sweep(0, 120, mode="run"), "a.yaml")
    b = write_spec(tmp_path, sweep(100, 220, mode="run"), "b.yaml")
    with make_server(runners=8) as srv:
        env = {**os.environ, "BATCHRUN_CACHE_DIR": str(cache_dir)}
        procs = [subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(s), "-o", str(tmp_path / f"{s.stem}.jsonl"),
                                   *server_urls(srv)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for s in (a, b)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    assert entries(cache_dir) == 220
    assert len(records(tmp_path / "a.jsonl")) == len(records(tmp_path / "b.jsonl")) == 120


def test_result_cache_store_round_trip(tmp_path: Path) -> None:
    """The store alone: a put is read back, an older entry than max_age misses, stats count it."""
    from batchrun.output.resultcache import Entry

    with ResultCache(tmp_path / "c") as cache:
        cache.put(b"k" * 32, Entry(time.time() - 100, "local", "local/echo", {"result": {"a": 1}}))
        got = cache.get(b"k" * 32)
        assert got is not None and got.data == {"result": {"a": 1}} and got.target == "local"
        assert cache.get(b"k" * 32, max_age_s=50) is None and cache.get(b"x" * 32) is None
        assert cache.stats().entries == 1 and cache.stats().by_endpoint == {"local/echo": 1}


def test_a_spec_with_gates_is_warned_about_an_unbounded_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A regression-style spec (gates) with `cache: true` validates with one located warning; with a
    ttl it is quiet."""
    gates = "        gates: {max_errors: 0}\n"
    spec = write_spec(tmp_path, sweep(0, 2, extra=gates), "a.yaml")
    assert main(["validate", str(spec)]) == 0
    err = capsys.readouterr().err
    assert f"{spec}:3:1: $.cache: warning: this spec has gates" in err and "give `cache` a ttl" in err
    bounded = write_spec(tmp_path, sweep(0, 2, cache="{ttl: 1d}", extra=gates), "b.yaml")
    assert main(["validate", str(bounded)]) == 0
    assert "gates" not in capsys.readouterr().err


def test_a_cache_that_cannot_be_opened_is_a_warning(tmp_path: Path, make_server: MakeServer,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """BATCHRUN_CACHE_DIR naming a file: one warning, and the run sends and writes everything."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("BATCHRUN_CACHE_DIR", str(blocker))
    spec = write_spec(tmp_path, sweep(0, 3))
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(tmp_path / "a.jsonl"), *server_urls(srv)) == 0
        assert sent(srv) == 3
    assert "batchrun: warning: cannot create the result cache folder" in capsys.readouterr().err
    assert len(records(tmp_path / "a.jsonl")) == 3


def _open_at(folder: str, barrier: Any, failures: Any) -> None:
    barrier.wait()
    try:
        with ResultCache(Path(folder)) as cache:
            cache.get(b"k" * 32)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        failures.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow  # concurrent runs as subprocesses
def test_runs_opening_a_new_cache_at_the_same_moment_all_get_it(tmp_path: Path) -> None:
    """Regression: two runs opening a fresh cache file at once got "database is locked" about one
    time in ten (SQLite does not wait out busy_timeout for the journal-mode change), so one ran
    without the cache. Four processes at a barrier, over forty fresh caches (before the fix 6 rounds in 80 failed)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # cheap to start; each has its own connection
    failures = context.Queue()
    for round_ in range(40):
        barrier = context.Barrier(4)
        procs = [context.Process(target=_open_at, args=(str(tmp_path / f"c{round_}"), barrier, failures))
                 for _ in range(4)]  # fmt: skip
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=30)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
