"""`batchrun run` and `batchrun cancel` on the command line: usage errors, exit codes, no tracebacks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from fixtures_execute import run_cli, stats, write_spec

from batchrun.cli import main
from batchrun.output.journal import Journal, journal_path, read_in_flight
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: cli
    jobs:
      - {name: echo, endpoint: local/echo, mode: run, arguments: {prompt: hi}}
"""


def test_invalid_spec_exits_2_with_located_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A spec error is exit 2 with file:line:col, and nothing is created."""
    spec = write_spec(tmp_path, "version: 1\nname: bad\njobs: 3\n")
    assert run_cli(str(spec), "-o", str(tmp_path / "out.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:3:")
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.lock").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--fresh", "--retry-errors"], "--fresh starts over, so --retry-errors has nothing to retry",
                     id="fresh-and-retry-errors"),
        pytest.param(["--shard", "3/2"], "--shard 3/2: I must be between 1 and N", id="bad-shard"),
        pytest.param(["--run-url", "http://127.0.0.1:1/run"], "--run-url and --queue-url go together",
                     id="run-url-alone"),
        pytest.param(["--target", "local", "--run-url", "http://127.0.0.1:1/run", "--queue-url",
                      "http://127.0.0.1:1/queue"], "cannot be combined with --target local", id="local-with-urls"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Contradictory flags are usage errors (exit 2) with a message saying what to do."""
    spec = write_spec(tmp_path, SPEC)
    assert run_cli(str(spec), "-o", str(tmp_path / "out.jsonl"), *args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--concurrency", "--limit"])
def test_counts_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    """--concurrency 0 or --limit 0 is rejected by argparse (exit 2)."""
    spec = write_spec(tmp_path, SPEC)
    with pytest.raises(SystemExit) as exc:
        run_cli(str(spec), flag, "0")
    assert exc.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_target_fal_without_a_key_fails_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No FAL_KEY with target fal: a usage problem (exit 2), a clear message, and no output, lock or journal file."""
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), "--target", "fal") == 2
    assert "target 'fal' needs an API key: set FAL_KEY" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [spec]


def test_default_output_and_shard_suffix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         loopback_server: ServerThread) -> None:
    """Without -o the output is outputs/<name>.jsonl; a shard gets .shard-I-of-N before the suffix."""
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, SPEC)
    urls = ["--run-url", loopback_server.run_url, "--queue-url", loopback_server.queue_url, "--no-progress"]
    assert run_cli(str(spec), *urls) == 0
    assert run_cli(str(spec), "--shard", "1/1", *urls) == 0
    assert sorted(p.name for p in (tmp_path / "outputs").glob("*.jsonl")) == ["cli.jsonl", "cli.shard-1-of-1.jsonl"]


def test_cancel_cancels_journaled_requests(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """`batchrun cancel OUT` cancels every journaled in-flight request; a completed one stays
    journaled so the next run collects its result."""
    out = tmp_path / "out.jsonl"
    with make_server(runners=3) as srv:  # two hang forever; the third runner serves the echo
        answers = [httpx.post(f"{srv.queue_url}/local/fail", json={"hang": True, "n": n}).json() for n in range(2)]
        done = httpx.post(f"{srv.queue_url}/local/echo", json={"prompt": "x"}).json()
        httpx.get(done["status_url"] + "/stream", timeout=10).raise_for_status()  # waits for COMPLETED
        journal = Journal(journal_path(out))
        journal.open()
        for i, a in enumerate([*answers, done]):
            journal.submitted(id=f"id{i}", job="j", request_id=a["request_id"], status_url=a["status_url"],
                              response_url=a["response_url"], cancel_url=a["cancel_url"])
        journal.close()
        assert main(["cancel", str(out)]) == 0
        counters = stats(srv.origin)
    assert counters["cancelled"] == 2
    assert set(read_in_flight(journal_path(out))) == {"id2"}
    err = capsys.readouterr().err
    assert f"batchrun: cancelled 2 of 3 queue requests in flight for {out}" in err
    assert "1 could not be cancelled (already completed, unknown, or unreachable)" in err


def test_cancel_without_a_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing journaled: exit 0 and say so; a missing output is a usage error."""
    out = tmp_path / "out.jsonl"
    assert main(["cancel", str(out)]) == 2
    assert "no such output" in capsys.readouterr().err
    out.write_text("")
    assert main(["cancel", str(out)]) == 0
    assert "nothing to cancel" in capsys.readouterr().err
