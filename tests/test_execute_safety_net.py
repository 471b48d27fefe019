"""The per-request safety net: an unexpected exception while handling one request becomes that
request's `internal_error` record and the run goes on.

The trigger is a fault injected at a library boundary: the standard library's
`mimetypes.guess_extension`, which the downloader asks for a stored file's suffix, raises for one
content type. (The first trigger, a media URL with a NUL that httpx refused to build, is now an
ordinary artifact error: every exchange goes through the one HTTP stack, which records a URL it
will not send to. Before the net, such a surprise stopped the whole run with a traceback and exit 3.)
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import pytest
from fixtures_execute import records, write_spec

from batchrun.cli import main
from batchrun.output.journal import journal_path
from batchrun.server import ServerThread

SECRET = "netsecret-6f1c0e9a2b7d"
BOOM = "text/x-boom"  # the content type whose suffix lookup fails
FAULT = "injected fault: no suffix lookup for text/x-boom"
DETAIL = f"batchrun failed while handling this request: RuntimeError: {FAULT}"


def _inject(monkeypatch: pytest.MonkeyPatch) -> None:
    real = mimetypes.guess_extension

    def guess_extension(type: str, strict: bool = True) -> str | None:  # noqa: A002 - the stdlib's name
        if type == BOOM:
            raise RuntimeError(FAULT)
        return real(type, strict)

    monkeypatch.setattr(mimetypes, "guess_extension", guess_extension)


def _spec(tmp_path: Path, mode: str) -> Path:
    # `secret` is echoed back in the result: the record and stderr must show it redacted.
    return write_spec(tmp_path, f"""\
        version: 1
        name: net
        concurrency: 2
        jobs:
          - name: media
            endpoint: local/echo
            mode: {mode}
            download: true
            matrix: {{ct: ["{BOOM}", "text/plain"]}}
            arguments: {{image: {{url: "data:text/plain,hello", content_type: "${{{{ matrix.ct }}}}"}},
                         secret: "${{{{ env.BR_NET_SECRET }}}}"}}
          - {{name: plain, endpoint: local/echo, mode: run, matrix: {{n: [1, 2]}}, arguments: {{n: "${{{{ matrix.n }}}}"}}}}
    """)


def _argv(tmp_path: Path, mode: str, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`batchrun run` of the spec above, with the secret in the environment and no BATCHRUN_DEBUG."""
    monkeypatch.setenv("BR_NET_SECRET", SECRET)
    monkeypatch.delenv("BATCHRUN_DEBUG", raising=False)
    _inject(monkeypatch)
    return ["run", str(_spec(tmp_path, mode)), "-o", str(tmp_path / "out.jsonl"), "--run-url", server.run_url,
            "--queue-url", server.queue_url, "--no-progress"]


@pytest.mark.parametrize("mode", ["run", "subscribe"])
def test_an_unexpected_exception_in_one_request_is_its_record_and_the_run_goes_on(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], mode: str,
) -> None:
    out = tmp_path / "out.jsonl"
    code = main(_argv(tmp_path, mode, loopback_server, monkeypatch))
    err = capsys.readouterr().err
    assert code == 1  # one request failed; not 3 (a crash)
    by_type = {r["arguments"]["image"]["content_type"]: r for r in records(out) if r["job"] == "media"}
    bad = by_type[BOOM]
    assert bad["status"] == "error" and bad["result"] is None
    assert bad["error"] == {"type": "internal_error", "status_code": None, "detail": DETAIL, "retryable": False}
    assert (bad["attempts"], bad["mode"]) == (0, mode)
    assert (bad["request_id"] is not None) == (mode == "subscribe")  # the submitted request can be found
    good = by_type["text/plain"]
    assert good["status"] == "ok" and good["artifacts"][0]["bytes"] == 5
    assert good["result"]["echo"]["secret"] == "[REDACTED]"
    assert sorted(r["status"] for r in records(out) if r["job"] == "plain") == ["ok", "ok"]
    assert not journal_path(out).exists()  # the submitted request is settled by its record
    assert (f"batchrun: internal error on request {bad['id']} (job media): RuntimeError: {FAULT}; recorded as its error (internal_error) and the run "
            "goes on. This is a bug in batchrun: please report it (--debug or BATCHRUN_DEBUG=1 shows the "
            "traceback)") in err.splitlines()
    assert "errors by type: internal_error=1" in err
    assert "Traceback" not in err
    assert SECRET not in err and SECRET not in out.read_text()


@pytest.mark.parametrize("switch", ["--debug", "BATCHRUN_DEBUG"])
def test_the_traceback_is_shown_only_when_asked_and_redacted(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], switch: str,
) -> None:
    argv = _argv(tmp_path, "run", loopback_server, monkeypatch)
    if switch == "--debug":
        argv.insert(0, "--debug")
    else:
        monkeypatch.setenv("BATCHRUN_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("batchrun: internal error on request ") == 1
    assert "Traceback (most recent call last):" in err
    assert f"RuntimeError: {FAULT}" in err
    assert "in _enrich" in err  # batchrun's own frames (the executor's toolkit step), for the bug report
    assert "This is a bug in batchrun: please report it\n" in err  # no "--debug shows" hint: it is on
    assert SECRET not in err
    assert json.dumps(SECRET) not in (tmp_path / "out.jsonl").read_text()
