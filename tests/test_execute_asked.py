"""Records say what was asked (issue 13): the `asked` field keeps the options that shaped each call
(hint, priority, timeouts, the start_timeout sent, header names, queue positions seen), never a
header's value nor the key. Real runs against the embedded server over loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec

import batchrun.api
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

KEY = "k3y-id:s3cret-asked-value"
HEADER_SECRET = "hdr-s3cret-9f1c"

SPEC = """\
    version: 1
    name: asked
    concurrency: 8
    jobs:
      - name: ran
        endpoint: local/echo
        mode: run
        timeout: 40
        start_timeout: 12
        hint: runner-a
        headers: {X-Trace: plain-trace-value, X-Token: '${{ env.ASKED_TOKEN }}'}
        arguments: {prompt: hi}
      - name: queued
        endpoint: local/echo
        mode: subscribe
        priority: low
        hint: 'h-${{ matrix.n }}'
        client_timeout: 30
        matrix: {n: [1, 2, 3, 4, 5]}
        arguments: {n: '${{ matrix.n }}', delay: 0.3}
"""


def _run_both(tmp_path: Path, srv: ServerThread) -> tuple[list[dict], list[dict]]:
    spec = write_spec(tmp_path, SPEC)
    cli_out, api_out = tmp_path / "cli.jsonl", tmp_path / "api.jsonl"
    assert run_cli(str(spec), "-o", str(cli_out), *server_urls(srv)) == 0
    batchrun.api.run(spec, api_out, run_url=srv.run_url, queue_url=srv.queue_url, progress=False)
    return records(cli_out), records(api_out)


def test_records_keep_what_was_asked_and_no_secret(
    tmp_path: Path, make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("ASKED_TOKEN", HEADER_SECRET)
    with make_server(runners=1, require_key=True) as srv:
        cli, api = _run_both(tmp_path, srv)
    for got in (cli, api):
        assert len(got) == 6 and all(r["status"] == "ok" for r in got)
        ran = next(r for r in got if r["job"] == "ran")
        assert ran["asked"] == {
            "hint": "runner-a", "timeout": 40.0, "start_timeout": 12.0,
            "headers": ["Content-Type", "X-Fal-Request-Timeout", "X-Fal-Runner-Hint", "X-Token", "X-Trace"],
        }
        queued = sorted((r for r in got if r["job"] == "queued"), key=lambda r: r["matrix"]["n"])
        for r in queued:
            asked = r["asked"]
            # client_timeout implies the start_timeout sent (fal-client's rule)
            assert {k: asked[k] for k in ("hint", "priority", "client_timeout", "start_timeout")} == {
                "hint": f"h-{r['matrix']['n']}", "priority": "low", "client_timeout": 30.0, "start_timeout": 30.0}
            assert asked["headers"] == ["Content-Type", "X-Fal-Queue-Priority", "X-Fal-Request-Timeout",
                                        "X-Fal-Runner-Hint"]
            assert "timeout" not in asked  # the run timeout does not apply to a queue request
            assert asked["queue"]["updates"] >= 2  # at least IN_QUEUE/IN_PROGRESS, then COMPLETED
        # One runner, five jobs of 0.3 s submitted together: some wait behind others.
        positions = [r["asked"]["queue"]["first_position"] for r in queued]
        assert all(isinstance(p, int) and p >= 0 for p in positions)
        assert max(positions) >= 2, positions
        waited = [r for r in queued if r["asked"]["queue"]["first_position"] > 0]
        assert all(r["asked"]["queue"]["updates"] >= 3 for r in waited)  # queued at p, ..., in progress, completed
    for name in ("cli.jsonl", "api.jsonl"):
        text = (tmp_path / name).read_text()
        assert "asked" in text
        for secret in (KEY, "s3cret-asked-value", HEADER_SECRET, "plain-trace-value"):
            assert secret not in text, (name, secret)


def test_cli_and_api_give_the_same_asked_field(
    tmp_path: Path, make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`batchrun run` and `batchrun.api.run` record the same options (queue positions depend on
    timing, so they are compared by shape)."""
    monkeypatch.setenv("ASKED_TOKEN", HEADER_SECRET)
    with make_server(runners=4) as srv:
        cli, api = _run_both(tmp_path, srv)

    def shape(got: list[dict]) -> dict[str, str]:
        out = {}
        for r in got:
            asked = dict(r["asked"])
            if "queue" in asked:
                asked["queue"] = sorted(asked["queue"])
            out[r["id"]] = json.dumps(asked, sort_keys=True)
        return out

    assert shape(cli) == shape(api) and len(shape(cli)) == 6
