"""No secret leaks: plant unique values, run everything that could echo them, grep every file and
every stream for them.

Planted: FAL_KEY (and, in a second run, FAL_KEY_ID + FAL_KEY_SECRET), an environment value
interpolated into a header, and one interpolated into an argument. The server demands the key
(`require_key`), so Authorization really travels. Jobs where the secrets come back: local/echo
results, runner logs (a user app that logs its arguments) with `with_logs` and `--show-logs`,
error bodies that echo the request's headers and arguments (local/fail echo_request, in run and
queue mode), a 422 whose detail quotes the input, an app that raises with the secret in its
message. A Ctrl-C'd run leaves a journal and a lock; `report`, `diff` (text, json, HTML), `merge`,
`plan` and `validate` write their reports. Every byte of every file under the test's directory
and every stdout/stderr must be free of each planted value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, stats, write_spec

from batchrun.output.journal import journal_path, read_in_flight
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

KEY_ID = f"kid{uuid.uuid4().hex}"
KEY_SECRET = f"ksec{uuid.uuid4().hex}"
FAL_KEY = f"{KEY_ID}:{KEY_SECRET}"
HDR_SECRET = f"hdr{uuid.uuid4().hex}"
ARG_SECRET = f"arg{uuid.uuid4().hex}"
PLANTED = (FAL_KEY, KEY_ID, KEY_SECRET, HDR_SECRET, ARG_SECRET)


def leaky(arguments: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """A careless user app: logs and returns what it got."""
    log(f"received {arguments}")
    return {"seen": arguments, "note": f"key was {arguments.get('key')}"}


def crashy(arguments: dict[str, Any]) -> dict[str, Any]:
    raise ValueError(f"refusing key {arguments.get('key')}")


def truncating(arguments: dict[str, Any]) -> dict[str, Any]:
    """A server that quotes what it got cut to length: only a piece of each secret comes back."""
    key = str(arguments.get("key"))
    if arguments.get("fail"):
        raise ValueError(f"bad key ...{key[-15:]}")
    return {"preview": f"{key[:20]}...", "middle": key[4:14], "tail": key[-9:]}


SPEC = """\
    version: 1
    name: secrets
    concurrency: 8
    defaults:
      with_logs: true
      headers: {X-Team-Token: "${{ env.BR_HDR }}", X-Trace: "t-${{ env.BR_HDR }}-x"}
      retries: {max_attempts: 2, initial_delay: 0}
    jobs:
      - name: echo
        endpoint: local/echo
        mode: subscribe
        arguments: {key: "${{ env.BR_ARG }}", text: "a ${{ env.BR_ARG }} b", fal: "${{ env.FAL_KEY }}"}
      - {name: echo-run, endpoint: local/echo, mode: run, arguments: {key: "${{ env.BR_ARG }}"}}
      - {name: logs, endpoint: me/leaky, arguments: {key: "${{ env.BR_ARG }}", n: 1}}
      - {name: logs-run, endpoint: me/leaky, mode: run, arguments: {key: "${{ env.BR_ARG }}", n: 2}}
      - {name: echoed-error-run, endpoint: local/fail, mode: run,
         arguments: {echo_request: true, key: "${{ env.BR_ARG }}"}}
      - {name: echoed-error-queue, endpoint: local/fail, arguments: {echo_request: true, key: "${{ env.BR_ARG }}"}}
      - {name: echoed-server-error, endpoint: local/fail, mode: run,
         arguments: {echo_request: true, status: 503, key: "${{ env.BR_ARG }}"}}
      - name: model-error
        endpoint: local/fail
        mode: run
        arguments: {status: 422, detail: [{loc: [body, key], msg: "bad ${{ env.BR_ARG }}", type: value_error,
                                           input: "${{ env.BR_ARG }}"}]}
      - {name: crash, endpoint: me/crash, mode: run, arguments: {key: "${{ env.BR_ARG }}"}}
      - {name: crash-queue, endpoint: me/crash, arguments: {key: "${{ env.BR_ARG }}", n: 3}}
      - {name: truncated, endpoint: me/truncating, mode: run, arguments: {key: "${{ env.BR_ARG }}"}}
      - {name: truncated-error, endpoint: me/truncating, arguments: {key: "${{ env.BR_ARG }}", fail: true}}
      - {name: key-in-id, endpoint: local/fail, arguments: {key_in_id: true, times: 0, key: id}}
"""

SLOW_SPEC = """\
    version: 1
    name: slow
    jobs:
      - {name: q, endpoint: local/sleep, headers: {X-Team-Token: "${{ env.BR_HDR }}"},
         arguments: {seconds: 30, key: "${{ env.BR_ARG }}"}}
      - {name: qk, endpoint: local/fail, arguments: {hang: true, key_in_id: true}}
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    env.update(BR_HDR=HDR_SECRET, BR_ARG=ARG_SECRET, **extra)
    return env


class Streams:
    """Every stdout and stderr of every command, for the final grep."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def cli(self, cwd: Path, *args: str, env: dict[str, str] | None = None, expect: int | None = 0) -> str:
        proc = subprocess.run([sys.executable, "-m", "batchrun", *args], cwd=cwd, env=env or _env(FAL_KEY=FAL_KEY),
                              capture_output=True, text=True, timeout=60)
        self.texts += [(f"{args[0]} stdout", proc.stdout), (f"{args[0]} stderr", proc.stderr)]
        if expect is not None:
            assert proc.returncode == expect, proc.stderr
        return proc.stderr


# Any 8 characters of a secret's random part count as a leak: a detail cut to length can keep
# half a secret, which a whole-value grep would miss (batchrun.redact.MIN_FRAGMENT).
FRAGMENT = 8
FRAGMENTS = {s: {s[i : i + FRAGMENT] for i in range(3, len(s) - FRAGMENT + 1)} for s in (KEY_ID, KEY_SECRET, HDR_SECRET, ARG_SECRET)}


def _leaks(text: str) -> list[str]:
    return [s for s, parts in FRAGMENTS.items() if any(part in text for part in parts)]


def _all_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


@pytest.fixture
def server(make_server: MakeServer) -> Iterator[ServerThread]:
    with make_server(runners=4, require_key=True, apps={"me/leaky": leaky, "me/crash": crashy,
                                                           "me/truncating": truncating}) as srv:
        yield srv


@pytest.mark.slow  # many subprocess runs; ~7 s on a quiet machine
def test_planted_secrets_reach_no_file_and_no_stream(tmp_path: Path, server: ServerThread) -> None:
    streams = Streams()
    spec = write_spec(tmp_path, SPEC)
    urls = ["--run-url", server.run_url, "--queue-url", server.queue_url]
    out = tmp_path / "out.jsonl"
    # Progress on (plain lines: stderr is not a terminal) and logs streamed to stderr.
    err = streams.cli(tmp_path, "run", str(spec), "-o", str(out), *urls, "--show-logs", expect=1)
    assert "received {" in err  # the runner logs really were streamed
    by_job = {r["job"]: r for r in records(out)}
    assert by_job["echo-run"]["status"] == "ok" and by_job["logs"]["logs"]  # the secrets did come back...
    assert by_job["echoed-error-run"]["error"]["status_code"] == 400
    assert "[REDACTED]" in str(by_job["echoed-error-run"]["error"]["detail"])  # ...and were redacted
    # Pieces of a secret (a 20-character preview, a middle, a tail) are redacted like the whole.
    assert by_job["truncated"]["result"] == {"preview": "[REDACTED]...", "middle": "[REDACTED]", "tail": "[REDACTED]"}
    assert "...[REDACTED]" in str(by_job["truncated-error"]["error"]["detail"])
    # A queue request id (and so its URLs) built from the key: the record keeps it redacted.
    assert by_job["key-in-id"]["status"] == "ok"
    assert by_job["key-in-id"]["request_id"].startswith("[REDACTED]-")
    # FAL_KEY_ID + FAL_KEY_SECRET instead of FAL_KEY, into a second output. Job echo uses
    # ${{ env.FAL_KEY }}, unset now: the run would stop before sending anything, so it is left out.
    out2 = tmp_path / "out2.jsonl"
    others = ",".join(name for name in by_job if name != "echo")
    streams.cli(tmp_path, "run", str(spec), "-o", str(out2), *urls, "--no-progress", "--only", others,
                env=_env(FAL_KEY_ID=KEY_ID, FAL_KEY_SECRET=KEY_SECRET), expect=1)
    assert len(records(out2)) == len(records(out)) - 1

    # A run interrupted with its queue request in flight leaves a journal (and the lock file).
    slow = write_spec(tmp_path, SLOW_SPEC, "slow.yaml")
    out3 = tmp_path / "out3.jsonl"
    cmd = [sys.executable, "-m", "batchrun", "run", str(slow), "-o", str(out3), *urls]
    with subprocess.Popen(cmd, cwd=tmp_path, env=_env(FAL_KEY=FAL_KEY), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 20
        while len(read_in_flight(journal_path(out3))) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130
    streams.texts += [("interrupted stdout", stdout), ("interrupted stderr", stderr)]
    journal_text = journal_path(out3).read_text()
    assert _leaks(journal_text) == []
    assert '"request_id":"[REDACTED]-' in journal_text  # the key-in-id request, journaled redacted
    streams.cli(tmp_path, "cancel", str(out3))
    # The redacted one cannot be followed (nor cancelled): a resume records it, submitting nothing.
    submits = stats(server.origin)["requests"]["submit"]
    streams.cli(tmp_path, "run", str(slow), "-o", str(out3), *urls, "--no-progress", "--only", "qk", expect=1)
    (settled,) = records(out3)
    assert settled["error"]["type"] == "outcome_unknown" and settled["request_id"].startswith("[REDACTED]-")
    assert stats(server.origin)["requests"]["submit"] == submits

    # Everything that reads outputs and writes reports.
    streams.cli(tmp_path, "report", str(out), "--html", str(tmp_path / "report.html"), expect=None)
    streams.cli(tmp_path, "report", str(out), "--format", "json", expect=None)
    streams.cli(tmp_path, "report", str(out), "--format", "markdown", expect=None)
    streams.cli(tmp_path, "report", str(out), "--format", "junit", expect=None)
    streams.cli(tmp_path, "report", str(out), expect=None)
    streams.cli(tmp_path, "diff", str(out), str(out2), expect=None)
    streams.cli(tmp_path, "diff", str(out), str(out2), "--html", str(tmp_path / "diff.html"), expect=None)
    streams.cli(tmp_path, "diff", str(out), str(out2), "--format", "json", expect=None)
    streams.cli(tmp_path, "merge", str(out), str(out2), "-o", str(tmp_path / "merged.jsonl"), expect=None)
    streams.cli(tmp_path, "plan", str(spec))
    streams.cli(tmp_path, "validate", str(spec))

    produced = [p for p in _all_files(tmp_path) if p.suffix != ".yaml"]
    names = {p.name for p in produced}
    assert {"out.jsonl", "out2.jsonl", "out3.jsonl", "out.jsonl.lock", "report.html", "diff.html",
            "out3.jsonl.journal.jsonl", "out.jsonl.manifest.json"} <= names, names
    leaks = {str(p.relative_to(tmp_path)): _leaks(p.read_bytes().decode("utf-8", "replace")) for p in produced}
    leaks.update({name: _leaks(text) for name, text in streams.texts})
    assert {where: found for where, found in leaks.items() if found} == {}
    assert len(streams.texts) >= 20


@pytest.mark.parametrize("bad", ["\nInjected: 1", "\r", "\x7f", "\x01"])
def test_a_header_value_with_a_line_break_is_an_input_error_not_a_crash(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], bad: str,
) -> None:
    """Regression: an env-interpolated header value holding CR/LF (or another control character)
    made aiohttp raise at send time, which took the whole run down with a traceback (exit 3).
    Now each such request is an input_error record that names the header, not its value."""
    from fixtures_execute import run_cli

    monkeypatch.setenv("BR_HDR", HDR_SECRET + bad)
    spec = write_spec(tmp_path, """\
        version: 1
        name: hdr
        jobs:
          - {name: r, endpoint: local/echo, mode: run, headers: {X-Tok: "${{ env.BR_HDR }}"}, arguments: {n: 1}}
          - {name: q, endpoint: local/echo, headers: {X-Tok: "${{ env.BR_HDR }}"}, arguments: {n: 2}}
          - {name: fine, endpoint: local/echo, mode: run, arguments: {n: 3}}
    """)
    out = tmp_path / "out.jsonl"
    code = run_cli(str(spec), "-o", str(out), "--run-url", loopback_server.run_url, "--queue-url",
                   loopback_server.queue_url, "--no-progress")
    err = capsys.readouterr().err
    assert code == 1, err
    by_job = {r["job"]: r for r in records(out)}
    for job in ("r", "q"):
        assert by_job[job]["error"] == {
            "type": "input_error", "status_code": None, "retryable": False,
            "detail": "header X-Tok: its value contains a line break or another control character, "
                      "which HTTP does not allow",
        }  # fmt: skip
    assert by_job["fine"]["status"] == "ok"
    assert _leaks(out.read_text() + err) == []
