"""Output problems: paths that cannot be written (even by root, which CI runs as), a disk that
fills up mid-run, a read-only file system, and two runs racing for one output.

Each gives a clear one-line error naming the path and the reason, keeps every complete record
already written (no partial line), and a resume finishes the plan once the problem is gone.
The disk cases mount a tiny tmpfs, which needs root; without it they are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_disk import tmpfs
from fixtures_execute import records, run_cli, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.errors import UsageError
from batchrun.load import load_spec
from batchrun.output.checks import check_output
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


@pytest.mark.slow  # concurrent runs as subprocesses
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
        # The run's check of its output: an output (a record in it) or a refusal, never a crash.
        spec = write_spec(Path(tmp), "version: 1\nname: d\njobs:\n  - {name: j, endpoint: local/echo}\n")
        try:
            check_output(out, load_spec(spec))
        except UsageError as exc:
            assert "holds no batchrun record" in str(exc)
            assert json.dumps(GOOD_RECORD).encode() not in lines  # an output with a record is never refused


# ---- the output is one of the run's inputs, or not a file at all (issue 14, case 10) ----------------

INPUTS_SPEC = """\
    version: 1
    name: inputs
    jobs:
      - {name: rows, endpoint: local/echo, mode: run, dataset: rows.csv, arguments: {p: "${{ row.p }}"}}
      - {name: file, endpoint: local/echo, mode: run, arguments: {image: {$file: pic.png}}}
"""


def _inputs_dir(tmp_path: Path) -> Path:
    (tmp_path / "rows.csv").write_text("p\na\nb\n")
    (tmp_path / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (tmp_path / "README.md").write_text("# notes\n\nnot records\n")
    (tmp_path / "spec-link.yaml").symlink_to(tmp_path / "spec.yaml")
    os.mkfifo(tmp_path / "fifo")
    # A node of /dev/null's device of our own: a regression must not move or litter the real /dev.
    with contextlib.suppress(PermissionError):
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return write_spec(tmp_path, INPUTS_SPEC)


@pytest.mark.parametrize(("name", "says"), [
    ("spec.yaml", "is the spec"),
    ("spec-link.yaml", "is the spec"),
    ("rows.csv", "is the dataset of job 'rows'"),
    ("pic.png", "is a $file input of job 'file'"),
    ("README.md", "exists and holds no batchrun record"),
    ("fifo", "is a FIFO (pipe), not a file"),
    ("null", "is a character device, not a file"),
])
@pytest.mark.parametrize("fresh", [False, True], ids=["resume", "fresh"])
def test_an_output_that_is_an_input_or_no_file_is_refused_touching_nothing(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str], name: str, says: str,
    fresh: bool
) -> None:
    """Regression: `-o` naming the spec, a dataset or a `$file` (by any name), or a file holding no
    records, appended JSON lines into it with a warning per line (and `--fresh` moved the spec
    aside); `-o /dev/null` kept nothing to resume from and put the sidecars in /dev (here a node of
    the same device in tmp_path, which a regression cannot hurt). Each is now
    refused before anything is touched: exit 2, one line saying why, every file as it was, no
    sidecar anywhere, no request sent."""
    spec = _inputs_dir(tmp_path)
    out = tmp_path / name
    if not out.exists():
        pytest.skip("cannot create a device node (needs root)")
    before = {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    sent = loopback_server.app.state.stats()["requests"]["run"]
    code = run_cli(str(spec), "-o", str(out), *_urls(loopback_server), *(["--fresh"] if fresh else []))
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = err.splitlines()
    assert line.startswith(f"batchrun: error: the output {out} {says}"), line
    assert {p: (p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()} == before
    assert loopback_server.app.state.stats()["requests"]["run"] == sent


@pytest.mark.parametrize("content", [b"", b"\n\n", b'{"id": "a1", "sta'], ids=["empty", "blank", "torn-first-record"])
def test_an_empty_or_torn_output_is_still_an_output(tmp_path: Path, loopback_server: ServerThread,
                                                    content: bytes) -> None:
    """What a run leaves when killed before (or during) its first record is not refused."""
    spec = _spec(tmp_path, n=3)
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    assert run_cli(str(spec), "-o", str(out), *_urls(loopback_server)) == 0
    assert len([json.loads(line) for line in out.read_text().splitlines() if line.strip()]) == 3 + 10


@pytest.mark.slow  # concurrent runs as subprocesses
@pytest.mark.parametrize("exists", [True, False], ids=["existing-output", "dangling-symlink"])
def test_two_runs_on_one_file_under_two_names_one_is_refused(tmp_path: Path, make_server, exists: bool) -> None:
    """Regression (issue 14, case 7): the lock was per name, so a run on a symlink to the output
    wrote it at once with a run on the output itself (two ok records per id, every queue request
    submitted twice). The file is locked too: exactly one runs, the other exits 2."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: names
        concurrency: 4
        jobs:
          - {name: slow, endpoint: local/echo, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8]},
             arguments: {n: "${{ matrix.n }}", delay: 1.0}}
    """)
    out = tmp_path / "out.jsonl"
    if exists:
        out.write_bytes(b"")
    link = tmp_path / "link.jsonl"
    link.symlink_to(out)
    with make_server(runners=8) as srv:
        procs = [subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(o), *_urls(srv)],
                                  cwd=tmp_path, stderr=subprocess.PIPE, text=True) for o in (out, link)]
        results = sorted((p.wait(timeout=60), p.communicate()[1]) for p in procs)
        counters = srv.app.state.stats()
    (ok_code, _), (refused_code, refused_err) = results
    assert (ok_code, refused_code) == (0, 2), results
    assert "is in use by another batchrun process" in refused_err
    final = records(out)
    assert sorted(r["arguments"]["n"] for r in final) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert counters["apps"]["local/echo"]["submit"] == 8


@pytest.mark.slow  # concurrent runs as subprocesses
def test_an_output_deleted_mid_run_is_restored_and_the_rerun_sends_nothing(tmp_path: Path, make_server) -> None:
    """Regression (issue 14, case 6): the run wrote on into the unlinked file, exited 0 without a
    word, deleted its journal, and the rerun submitted every queue request again (billed twice).
    The sink notices that the path no longer names its file, re-creates the output with every
    record already written, says so, and writes on: the rerun finds everything done."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: unlinked
        concurrency: 4
        jobs:
          - {name: q, endpoint: local/echo, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]},
             arguments: {n: "${{ matrix.n }}", delay: 0.2}}
          - {name: d, endpoint: local/echo, mode: run, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]},
             arguments: {n: "${{ matrix.n }}", delay: 0.2}}
    """)
    out = tmp_path / "out.jsonl"
    with make_server(runners=8) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *_urls(srv)]
        with subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + 30
            while not (out.exists() and out.read_bytes().count(b"\n") >= 4):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            out.unlink()
            err = proc.communicate(timeout=60)[1]
        assert proc.returncode == 0, err
        assert f"batchrun: warning: {out} was deleted while the run wrote it; re-created it" in err
        final = records(out)
        assert len(final) == len({r["id"] for r in final}) == 24
        before = srv.app.state.stats()
        rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        after = srv.app.state.stats()
    assert rerun.returncode == 0, rerun.stderr
    assert "24 of 24 planned requests are already done" in rerun.stderr
    assert after["requests"] == before["requests"]
    assert after["duplicate_submits"] == 0


def test_an_output_replaced_mid_run_is_left_alone_and_the_journal_is_kept(tmp_path: Path, make_server) -> None:
    """The path names another file now: that file is not touched, this run's records are saved
    beside it, the run stops (exit 1), and the journal stays (its queue requests are not lost)."""
    spec = write_spec(tmp_path, """\
        version: 1
        name: replaced
        concurrency: 2
        jobs:
          - {name: q, endpoint: local/echo, matrix: {n: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]},
             arguments: {n: "${{ matrix.n }}", delay: 0.3}}
    """)
    out = tmp_path / "out.jsonl"
    other = tmp_path / "other.jsonl"
    other.write_bytes(b"someone else's file\n")
    with make_server(runners=4) as srv:
        cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *_urls(srv)]
        with subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + 30
            while not (out.exists() and out.read_bytes().count(b"\n") >= 2):
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.01)
            os.replace(other, out)
            err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 1, err
    assert out.read_bytes() == b"someone else's file\n"
    [saved] = tmp_path.glob("out.jsonl.*.recovered")
    assert f"was replaced by another file while the run wrote it; it was left as it is, and the records " \
           f"written to the replaced file are in {saved}" in err
    assert len(records(saved)) >= 2
    assert (tmp_path / "out.jsonl.journal.jsonl").exists()
