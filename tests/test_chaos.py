"""The soak test: thousands of requests, injected faults and three SIGKILLs, and nothing lost or paid twice.

The embedded server runs in its own process (`batchrun serve --port 0`), so it outlives every
killed `batchrun run` and its counters prove what reached it. About 20% of the planned requests
carry a fault (local/fail, see batchrun/server/faults.py): ingress 503s, 429s (on direct runs and
on queue submits), runner errors the queue retries server-side, connections dropped
mid-response, answers slower than the client's timeout, malformed JSON. Most are transient
(`times`/`key`: the first attempts fail, a retry succeeds); a small known set is permanent and must
end as error records, and only those.

The output is also deleted once mid-run (the run re-creates it and writes on), and a second run
on the same output under another name (a symlink) is refused while the first one writes.

The run is killed with SIGKILL at three seeded random points (each once the output has grown by
some lines), resumed each time, and a final resume finishes the plan. Afterwards: one final
record per planned id, at most one ok line per id, every line valid JSON and schema-valid, and
every queue request submitted once (the server's duplicate_submits counter).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_execute import VALIDATOR, records, run_cli, stats

from batchrun.cli import main
from batchrun.load import load_spec
from batchrun.output.journal import journal_path
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SEED = 20240607
KILLS = 3
RUNNERS = 8

# Per fault kind: (job mode, the local/fail arguments, transient rows, permanent rows). Transient
# rows fail the first 1-2 attempts (a retry succeeds); permanent rows always fail. Permanent kinds
# the client never retries (bad_json, a 422) have no transient rows.
RUN_KINDS: dict[str, tuple[dict[str, Any], int, int]] = {
    "run-ingress-503": ({"ingress": True, "status": 503}, 70, 3),
    "run-429": ({"status": 429}, 70, 3),
    "run-dropped": ({"reset": True}, 70, 0),
    "run-slow": ({"slow": 1.0}, 24, 0),
    "run-bad-json": ({"bad_json": True}, 0, 4),
    # 200 answers holding lone surrogates ("\ud800" escapes): valid JSON, not Unicode; recorded ok.
    "run-surrogates": ({"surrogates": True}, 20, 0),
}
QUEUE_KINDS: dict[str, tuple[dict[str, Any], int, int]] = {
    "submit-ingress-503": ({"ingress": True, "status": 503}, 60, 3),
    "submit-429": ({"submit": "429"}, 60, 0),
    "runner-error-server-retried": ({"error_type": "runner_server_error"}, 70, 0),
    "runner-dropped-server-retried": ({"reset": True}, 50, 0),
    "queue-model-error-422": ({"status": 422}, 0, 3),
    "queue-internal-error": ({"error_type": "internal_error"}, 0, 3),
    "queue-bad-json": ({"bad_json": True}, 0, 3),
    "queue-surrogates-422": ({"surrogates": True, "status": 422}, 0, 3),
    # Accepted, but the answer is lost: never submitted again (outcome_unknown, the server saw one).
    "submit-answer-lost": ({"submit": "reset"}, 0, 3),
}
HEALTHY_RUN = 980
HEALTHY_QUEUE = 980
PERMANENT_TIMES = 1_000_000  # "fail the first million attempts": always


def _rows(kind: str, fault: dict[str, Any], transient: int, permanent: int, rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for n in range(transient + permanent):
        perm = n >= transient
        times = PERMANENT_TIMES if perm else rng.choice((1, 1, 2))
        rows.append({"n": n, "kind": kind, "expect": "error" if perm else "ok",
                     "args": {**fault, "times": times, "key": f"{kind}-{n}"}})
    return rows


def _write_spec(tmp: Path) -> tuple[Path, dict[str, int]]:
    """The soak spec and its datasets; returns the spec path and the fault count by kind."""
    rng = random.Random(SEED)
    jobs = []
    faults: dict[str, int] = {}
    for kinds, mode in ((RUN_KINDS, "run"), (QUEUE_KINDS, "subscribe")):
        for kind, (fault, transient, permanent) in kinds.items():
            rows = _rows(kind, fault, transient, permanent, rng)
            faults[kind] = len(rows)
            data = tmp / f"{kind}.jsonl"
            data.write_text("".join(json.dumps({"n": r["n"], "expect": r["expect"], **r["args"]}) + "\n" for r in rows))
            fields = ["n", "expect", *rows[0]["args"]]
            arguments = ", ".join(f'{f}: "${{{{ row.{f} }}}}"' for f in fields)
            jobs.append(f"  - {{name: {kind}, endpoint: local/fail, mode: {mode}, dataset: {data.name}, "
                        f"arguments: {{{arguments}}}}}")
    jobs.append(f"  - {{name: healthy-run, endpoint: local/echo, mode: run, matrix: {{n: {list(range(HEALTHY_RUN))}}}, "
                'arguments: {n: "${{ matrix.n }}", expect: ok}}')
    jobs.append(f"  - {{name: healthy-queue, endpoint: local/echo, mode: subscribe, "
                f"matrix: {{n: {list(range(HEALTHY_QUEUE))}}}, "
                'arguments: {n: "${{ matrix.n }}", expect: ok}}')
    spec = tmp / "soak.yaml"
    spec.write_text(
        "version: 1\nname: soak\nconcurrency: 24\n"
        "defaults:\n  timeout: 0.4\n  retries: {max_attempts: 4, initial_delay: 0, max_delay: 0}\n"
        "jobs:\n" + "\n".join(jobs) + "\n"
    )
    return spec, faults


class _Server:
    """`batchrun serve` in its own process, so it outlives every killed run."""

    def __init__(self) -> None:
        cmd = [sys.executable, "-m", "batchrun", "serve", "--port", "0", "--runners", str(RUNNERS)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        urls = {}
        for _ in range(2):
            name, _, url = self.proc.stdout.readline().strip().partition(": ")
            urls[name] = url
        assert set(urls) == {"run_url", "queue_url"}, urls
        self.run_url, self.queue_url = urls["run_url"], urls["queue_url"]
        self.origin = self.run_url.rsplit("/run", 1)[0]

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.origin + "/_emulator/stats", timeout=10).json()
        return result

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    try:
        yield srv
    finally:
        srv.stop()


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def _start(spec: Path, out: Path, srv: _Server, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--run-url", srv.run_url,
           "--queue-url", srv.queue_url, "--no-progress"]
    with open(log, "ab") as err:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=spec.parent)


@pytest.mark.slow
def test_soak_with_faults_and_three_sigkills_loses_nothing_and_submits_once(
    tmp_path: Path, server: _Server, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, faults = _write_spec(tmp_path)
    plan = list(build_plan(load_spec(spec)))
    planned = {p.id: p for p in plan}
    assert len(planned) == len(plan) >= 2000
    expected_errors = {p.id for p in plan if p.arguments.get("expect") == "error"}
    out = tmp_path / "out.jsonl"
    log = tmp_path / "stderr.log"
    rng = random.Random(SEED)
    t0 = time.monotonic()

    kills = 0
    torn_line_planted = False
    second_name_tried = unlinked = False
    while kills < KILLS:
        before = _lines(out)
        target = before + rng.randint(150, 450)
        proc = _start(spec, out, server, log)
        deadline = time.monotonic() + 60
        while _lines(out) < target and proc.poll() is None:
            assert time.monotonic() < deadline, "the run stopped making progress"
            time.sleep(rng.uniform(0.001, 0.02))
            if kills == 0 and not second_name_tried and _lines(out) > before + 50:
                # The same output under another name (a symlink): refused, never a second writer.
                link = tmp_path / "link.jsonl"
                link.symlink_to(out)
                other = subprocess.run([sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(link),
                                        "--run-url", server.run_url, "--queue-url", server.queue_url,
                                        "--no-progress"], capture_output=True, text=True, timeout=60)
                assert other.returncode == 2 and "is in use by another batchrun process" in other.stderr, other
                second_name_tried = True
            if kills == 1 and not unlinked and _lines(out) > before + 50:
                # Deleted mid-run: the run re-creates it with every record and writes on.
                out.unlink()
                unlinked = True
                while "was deleted while the run wrote it" not in log.read_text() and proc.poll() is None:
                    assert time.monotonic() < deadline, "the deleted output was not restored"
                    time.sleep(0.005)
        if proc.poll() is not None:
            break  # finished before the kill point: nothing left to kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        if kills == 2 and not torn_line_planted:
            # A kill that lands inside a write leaves a partial last line; plant one for certain.
            with open(out, "ab") as f:
                f.write(b'{"id":"torn-by-a-kill","status":"ok","res')
            torn_line_planted = True

    final = _start(spec, out, server, log)
    assert final.wait(timeout=90) == 1  # some requests failed: the permanent faults
    elapsed = time.monotonic() - t0
    stats = server.stats()

    # Every line is complete, valid JSON and a schema-valid record (the torn line was repaired).
    raw = out.read_bytes()
    assert raw.endswith(b"\n")
    records = []
    for line in raw.splitlines():
        record = json.loads(line)
        VALIDATOR.validate(record)
        records.append(record)
    newest: dict[str, dict[str, Any]] = {}
    ok_lines: Counter[str] = Counter()
    for record in records:
        newest[record["id"]] = record
        ok_lines[record["id"]] += record["status"] == "ok"
    assert set(newest) == set(planned), "a planned id has no record, or a record is not planned"
    raw.decode("utf-8")  # strictly: no answer's lone surrogate reached the file
    for record in records:
        if record["job"].endswith(("surrogates", "surrogates-422")):
            json.dumps(record, ensure_ascii=False).encode("utf-8")  # nor a record, even escaped
    assert max(ok_lines.values()) == 1, "an id was completed twice"
    errors = {rid for rid, r in newest.items() if r["status"] == "error"}
    # A kill that lands while a queue submit is on the wire leaves its outcome unknown: the server
    # may have accepted it. Those are recorded as outcome_unknown, never submitted a second time.
    unknown = {rid for rid in errors - expected_errors if newest[rid]["error"]["type"] == "outcome_unknown"}
    assert all(planned[rid].mode == "subscribe" for rid in unknown)
    lost = {p.id for p in plan if p.job.name == "submit-answer-lost"}
    assert {newest[rid]["error"]["type"] for rid in lost} == {"outcome_unknown"}
    assert stats["apps"]["local/fail"]["submit"] >= len(lost)
    assert errors - unknown == expected_errors, {
        planned[r].job.name: newest[r]["error"] for r in (errors - unknown) ^ expected_errors}
    assert len(unknown) <= 10 * KILLS
    # Every queue request was submitted once, whatever the kills interrupted.
    assert stats["duplicate_submits"] == 0, stats["duplicates"]
    subscribes = sum(1 for p in plan if p.mode == "subscribe")
    healthy_unknown = sum(1 for rid in unknown if planned[rid].job.name == "healthy-queue")
    assert HEALTHY_QUEUE - healthy_unknown <= stats["apps"]["local/echo"]["submit"] <= HEALTHY_QUEUE

    assert not journal_path(out).exists()  # every journaled request and intent was settled

    err_text = log.read_text()
    assert "Traceback" not in err_text
    assert "removed a truncated last line" in err_text
    assert second_name_tried and unlinked
    assert "was deleted while the run wrote it; re-created it" in err_text
    total_faults = sum(faults.values())
    permanent = len(expected_errors)
    figures = {
        "requests planned": len(plan),
        "run / subscribe": f"{len(plan) - subscribes} / {subscribes}",
        "faults injected": f"{total_faults} ({total_faults / len(plan):.0%}; {permanent} permanent)",
        "faults by kind": faults,
        "HTTP requests the server saw": {k: v for k, v in stats["requests"].items() if v},
        "server-side retries": stats["retries"],
        "client-side retries (final records)": sum(r["attempts"] - 1 for r in newest.values() if r["attempts"]),
        "kills survived": kills,
        "records lost": len(set(planned) - set(newest)),
        "submits cut by a kill (outcome_unknown, not resubmitted)": len(unknown),
        "ids completed twice": sum(1 for v in ok_lines.values() if v > 1),
        "duplicate submissions": stats["duplicate_submits"],
        "tracebacks": err_text.count("Traceback"),
        "record lines written": len(records),
        "wall time (s)": round(elapsed, 1),
    }
    with capsys.disabled():
        print("\nsoak figures:", json.dumps(figures, indent=1))
    assert kills == KILLS
    assert elapsed < 100


# ---- the write-ahead submit intent that makes "submitted once" hold across kills ------------------

INTENT_SPEC = """\
version: 1
name: intent
jobs:
  - {name: q, endpoint: local/echo, matrix: {n: [1, 2]}, arguments: {n: "${{ matrix.n }}"}}
  - {name: optin, endpoint: local/echo, arguments: {n: 3}, retries: {unknown_outcome: true}}
"""


def _journal_intent(out: Path, ids: list[str]) -> None:
    """The journal a run leaves when it is killed while these ids' submits are on the wire."""
    with open(journal_path(out), "w") as f:
        for rid in ids:
            f.write(json.dumps({"event": "sending", "id": rid, "job": "q", "at": "2026-01-02T03:04:05.000Z"}) + "\n")


def test_a_submit_cut_by_a_kill_is_recorded_as_outcome_unknown_not_resubmitted(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: a kill between a queue submit reaching the server and its journal entry made
    the resume submit the request again (the soak saw duplicate_submits == 1: paid twice). Now
    the journal holds a write-ahead "sending" intent; an open intent on resume becomes an
    outcome_unknown record, unless the job opts in with retries.unknown_outcome."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(INTENT_SPEC)
    plan = {p.arguments["n"]: p for p in build_plan(load_spec(spec))}
    out = tmp_path / "out.jsonl"
    _journal_intent(out, [plan[1].id, plan[3].id])
    with make_server() as srv:
        code = run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                       "--no-progress")
        counters = stats(srv.origin)
    assert code == 1
    by_n = {r["arguments"]["n"]: r for r in records(out)}
    assert by_n[1]["status"] == "error" and by_n[1]["attempts"] == 1 and by_n[1]["request_id"] is None
    assert by_n[1]["error"]["type"] == "outcome_unknown" and by_n[1]["error"]["retryable"] is True
    assert by_n[1]["error"]["detail"].startswith("an earlier run stopped (killed or crashed) at 2026-01-02T03:04:05.000Z")
    assert by_n[2]["status"] == "ok" and by_n[3]["status"] == "ok"  # optin: submitted (its policy allows it)
    assert counters["requests"]["submit"] == 2 and counters["duplicate_submits"] == 0
    assert not journal_path(out).exists()  # every intent settled
    err = capsys.readouterr().err
    assert "2 queue submits were on the wire when the previous run stopped" in err


def test_intents_settle_in_a_normal_run_and_by_records(tmp_path: Path, make_server: MakeServer) -> None:
    """A clean run leaves no journal (each intent is settled by its submit or its record); an
    intent whose record was written before the kill is settled, not turned into an error."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nname: refused\njobs:\n"
        "  - {name: q, endpoint: local/fail, matrix: {n: [1, 2]}, retries: {max_attempts: 2, initial_delay: 0},\n"
        '     arguments: {n: "${{ matrix.n }}", ingress: true}}\n'
    )
    out = tmp_path / "out.jsonl"
    with make_server() as srv:
        urls = ["--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress"]
        assert run_cli(str(spec), "-o", str(out), *urls) == 1  # permanent ingress 503s on the submits
        assert not journal_path(out).exists()
        first = records(out)
        assert sorted(r["error"]["type"] for r in first if r["status"] == "error") == ["http_error", "http_error"]
        _journal_intent(out, [first[0]["id"]])
        assert run_cli(str(spec), "-o", str(out), *urls) == 1
        assert records(out) == first  # nothing new: the intent's id already had its record
        assert not journal_path(out).exists()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(b'{"event":"submitted","id":"x","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", id="nested-deep"),
        pytest.param(b'{"event":"submitted","id":"x","request_id":"r","status_url":"ftp://x","response_url":"::",'
                     b'"cancel_url":"http://[::1"}\n', id="bad-urls"),
        pytest.param(bytes(range(256)) + b"\n", id="binary"),
    ],
)
def test_a_damaged_journal_is_no_crash(tmp_path: Path, make_server: MakeServer, damage: bytes) -> None:
    """Regression: a journal line nested 100k deep crashed `run` and `cancel` with a RecursionError,
    and a cancel_url that is not a URL crashed `cancel` with a ValueError (both exit 3 with a
    traceback). Damaged entries are now skipped (or fail as that request's error)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(INTENT_SPEC)
    out = tmp_path / "out.jsonl"
    out.write_text("")
    journal_path(out).write_bytes(damage)
    assert main(["cancel", str(out)]) == 0
    with make_server() as srv:
        assert run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                       "--no-progress") == 0
    assert sorted(r["arguments"]["n"] for r in records(out)) == [1, 2, 3]
