"""Output problems: paths that cannot be written (even by root, which CI runs as), a disk that
fills up mid-run, a read-only file system, and two runs racing for one output.

Each gives a clear one-line error naming the path and the reason, keeps every complete record
already written (no partial line), and a resume finishes the plan once the problem is gone.
The disk cases mount a tiny tmpfs, which needs root; without it they are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_disk import tmpfs
from fixtures_execute import records, run_cli, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: faults
    concurrency: 4
    jobs:
      - name: direct
        endpoint: local/echo
        mode: run
        matrix: {n: [%s]}
        arguments: {n: "${{ matrix.n }}", pad: "%s"}
      - name: queued
        endpoint: local/echo
        matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
        arguments: {n: "${{ matrix.n }}"}
"""
N = 200


def _spec(tmp_path: Path, n: int = N, pad: int = 400) -> Path:
    return write_spec(tmp_path, SPEC % (", ".join(map(str, range(n))), "p" * pad))


def _urls(srv: ServerThread) -> list[str]:
    return ["--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress"]


def _complete_lines(path: Path) -> list[dict[str, object]]:
    raw = path.read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "a partial last line was left behind"
    return [json.loads(line) for line in raw.splitlines()]


@pytest.mark.parametrize(
    ("make_out", "reason"),
    [
        pytest.param(lambda tmp: (tmp / "file").write_text("x") and tmp / "file" / "out.jsonl", "/file is not a directory",
                     id="parent-is-a-file"),
        pytest.param(lambda tmp: (tmp / "dir.jsonl").mkdir() or tmp / "dir.jsonl", "Is a directory",
                     id="output-is-a-directory"),
        pytest.param(lambda tmp: Path("/proc/self/batchrun-out.jsonl"), "", id="under-proc"),
        pytest.param(lambda tmp: Path("/proc/version"), "", id="a-proc-file"),
    ],
)
def test_unwritable_outputs_fail_clearly_before_any_request(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str], make_out, reason: str
) -> None:
    """Paths no one can write, root included: exit 1 with one `batchrun: error:` line naming the
    path, and no request is sent."""
    out = make_out(tmp_path)
    spec = _spec(tmp_path, n=3)
    before = loopback_server.app.state.stats()["requests"]["run"]
    code = run_cli(str(spec), "-o", str(out), *_urls(loopback_server))
    err = capsys.readouterr().err
    assert code == 1, err
    [line] = [line for line in err.splitlines() if line]
    assert line.startswith("batchrun: error: cannot ") and str(out) in line and reason in line, line
    assert "File exists" not in line  # regression: mkdir's message when a parent is a regular file
    assert "Traceback" not in err
    assert loopback_server.app.state.stats()["requests"]["run"] == before


def test_full_disk_mid_run_keeps_what_was_written_and_the_resume_finishes(
    tmp_path: Path, make_server, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 64 KB tmpfs fills up after ~100 records: a clear 'no space left on device' error, exit 1,
    only complete lines in the output; once there is room, the resume completes the plan with one
    record per id."""
    spec = _spec(tmp_path)
    with tmpfs(tmp_path / "disk", "64k") as disk, make_server(runners=4) as srv:
        out = disk / "out.jsonl"
        code = run_cli(str(spec), "-o", str(out), *_urls(srv))
        err = capsys.readouterr().err
        assert code == 1, err
        assert "no space left on device" in err.lower() and str(disk) in err
        assert "Traceback" not in err
        kept = _complete_lines(out)
        assert 20 < len(kept) < N
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        assert run_cli(str(spec), "-o", str(out), *_urls(srv)) == 0
        final = records(out)
        stats = srv.app.state.stats()
    assert final[: len(kept)] == kept  # what was written stayed as it was
    assert len({r["id"] for r in final}) == len(final) == N + 10
    assert stats["duplicate_submits"] == 0


def test_read_only_file_system_is_a_clear_error(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(tmp_path, n=3)
    with tmpfs(tmp_path / "ro", "64k", "ro") as ro:
        code = run_cli(str(spec), "-o", str(ro / "out.jsonl"), *_urls(loopback_server))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"batchrun: error: cannot create the output lock {ro / 'out.jsonl.lock'}: read-only file system")


def test_two_runs_on_one_output_one_is_refused_nothing_interleaves(tmp_path: Path, make_server) -> None:
    """Two processes started together on the same output: exactly one runs, the other exits 1
    at once saying the output is in use; the output holds each planned record exactly once."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: race
        concurrency: 4
        jobs:
          - {name: slow, endpoint: local/echo, mode: run, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8]},
             arguments: {n: "${{ matrix.n }}", delay: 1.0}}
    """)  # the winner runs >= 2 s: the loser's start-up, slow on a loaded machine, still finds the lock held
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *_urls(srv)]
        procs = [subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = sorted((p.wait(timeout=60), p.communicate()[1]) for p in procs)
    (ok_code, _), (refused_code, refused_err) = results
    assert (ok_code, refused_code) == (0, 2), results
    assert refused_err.strip() == (
        f"batchrun: error: {out} is in use by another batchrun process (lock {out}.lock is held); "
        "wait for it to finish or choose another output with -o"
    )
    final = records(out)
    assert sorted(r["arguments"]["n"] for r in final) == [1, 2, 3, 4, 5, 6, 7, 8]


# ---- damaged outputs fed to report, diff and merge --------------------------------------------------

GOOD_RECORD = {
    "id": "a1", "index": 0, "job": "j", "endpoint": "local/echo", "path": "", "mode": "run", "arguments": {},
    "matrix": {}, "status": "ok", "result": {"x": 1}, "error": None, "request_id": None, "attempts": 1,
    "logs": None, "metrics": None,
    "timing": {"started_at": "2026-01-01T00:00:00.000Z", "finished_at": "2026-01-01T00:00:01.000Z",
               "latency_s": 1.0, "queue_s": None},
}  # fmt: skip


def _readers(path: Path, other: Path) -> list[tuple[list[str], int, str]]:
    """(command, exit code, stderr) of every command that reads an output, on `path`."""
    import io

    from batchrun.cli import main

    results = []
    for argv in (["report", str(path)], ["report", str(path), "--format", "json"],
                 ["diff", str(path), str(other)], ["merge", str(path), "-o", str(path.with_suffix(".merged"))]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
        results.append((argv, code, err.getvalue()))
    return results


def test_a_deeply_nested_line_is_a_located_error_not_a_crash(tmp_path: Path) -> None:
    """Regression: a damaged line nesting 100k arrays made report/diff/merge die with a
    RecursionError traceback (exit 3). Now it is `FILE:LINE: invalid JSON (nested too deeply)`."""
    out = tmp_path / "out.jsonl"
    out.write_bytes(b'{"id": "d", "result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
                    + json.dumps(GOOD_RECORD).encode() + b"\n")
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD_RECORD) + "\n")
    for argv, code, err in _readers(out, good):
        assert code == 2, (argv, err)
        assert err.strip().endswith(f"{out}:1: invalid JSON (nested too deeply)"), (argv, err)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(st.lists(st.one_of(
    st.just(json.dumps(GOOD_RECORD).encode()),
    st.binary(max_size=60),
    st.builds(lambda cut: json.dumps(GOOD_RECORD).encode()[:cut], st.integers(0, 200)),
    st.builds(lambda k, v: json.dumps({**GOOD_RECORD, k: v}).encode(),
              st.sampled_from(["id", "index", "job", "status", "timing", "result", "error", "attempts", "matrix"]),
              st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))),
), max_size=6))
def test_damaged_outputs_never_crash_the_readers(lines: list[bytes]) -> None:
    """Random damage (garbage bytes, cut lines, fields of the wrong type) in an output: report,
    diff and merge exit 0, 1 or 2 with a message, never a traceback."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out, good = Path(tmp) / "out.jsonl", Path(tmp) / "good.jsonl"
        out.write_bytes(b"\n".join(lines) + b"\n")
        good.write_text(json.dumps(GOOD_RECORD) + "\n")
        for argv, code, err in _readers(out, good):
            assert code in (0, 1, 2), (argv, err)
            assert "Traceback" not in err
