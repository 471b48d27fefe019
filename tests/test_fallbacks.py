"""Model fallbacks (docs/fal-protocol.md §9.4): the embedded server reroutes a queued request that
keeps failing to an "equivalent alternative" endpoint, as fal does by default; `fallbacks: false`
turns it off; the record says which endpoint served a rerouted request and `diff` reports it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec
from fixtures_server import ServerFactory, queue_attempts

from batchrun.cli import main
from batchrun.server import create_app

BASE = "http://testserver"
# Fails its first 7 attempts (503, a condition fal retries on the queue), then succeeds.
FLAKY = {"status": 503, "times": 7}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runners=1, retry_backoff=0.001, fallbacks={"local/fail": "local/echo"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


async def _outcome(client: httpx.AsyncClient, arguments: dict[str, Any],
                   headers: dict[str, str] | None = None) -> tuple[int, httpx.Response]:  # fmt: skip
    """Submit to local/fail, wait for it: (attempts it took, the result response)."""
    end = await queue_attempts(client, "local/fail", arguments, headers)
    return end.attempts, end.result


@pytest.mark.anyio
async def test_a_request_failing_six_times_is_rerouted_and_the_answer_says_where(client: httpx.AsyncClient) -> None:
    attempts, result = await _outcome(client, {**FLAKY, "key": "rerouted", "n": 1})
    # six attempts on local/fail (the first and five retries), then the alternative answers
    assert (attempts, result.status_code, result.headers["x-fal-fallback-endpoint"]) == (7, 200, "local/echo")
    assert result.json() == {"echo": {**FLAKY, "key": "rerouted", "n": 1}, "path": ""}
    assert (await client.get("/_emulator/stats")).json()["rerouted"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["x-fal-disable-fallbacks", "x-app-fal-disable-fallback"])
async def test_either_documented_header_keeps_the_request_on_its_endpoint(client: httpx.AsyncClient,
                                                                          header: str) -> None:  # fmt: skip
    attempts, result = await _outcome(client, {**FLAKY, "key": header}, {header: "true"})
    # all eight attempts on local/fail: it fails seven times, then succeeds there
    assert (attempts, result.status_code, "x-fal-fallback-endpoint" in result.headers) == (8, 200, False)
    assert (await client.get("/_emulator/stats")).json()["rerouted"] == 0


@pytest.mark.anyio
async def test_no_reroute_without_an_alternative_or_before_the_sixth_failure(client: httpx.AsyncClient) -> None:
    attempts, result = await _outcome(client, {"status": 503, "times": 3, "key": "early"})
    assert (attempts, "x-fal-fallback-endpoint" in result.headers) == (4, False)
    app = create_app(runners=1, retry_backoff=0.001)  # no fallbacks configured: fal's unsupported models
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as plain:
        attempts, result = await _outcome(plain, {**FLAKY, "key": "plain"})
    assert (attempts, result.status_code, "x-fal-fallback-endpoint" in result.headers) == (8, 200, False)


def test_an_alternative_must_be_served_here() -> None:
    with pytest.raises(ValueError, match="no app local/nope"):
        create_app(fallbacks={"local/fail": "local/nope"})


SPEC = """\
    version: 1
    name: fallbacks
    defaults:
      retries: {{max_attempts: 1}}
      {option}
    jobs:
      - name: flaky
        endpoint: local/fail
        arguments: {{status: 503, times: 7, key: "${{{{ matrix.key }}}}-{tag}"}}
        matrix: {{key: [a, b]}}
      - name: direct
        endpoint: local/echo
        mode: run
        arguments: {{prompt: hi}}
"""


def _run(tmp_path: Path, srv: Any, tag: str, option: str, output: str = "") -> tuple[int, Path]:
    spec = write_spec(tmp_path, SPEC.format(option=option, tag=tag), name=f"{tag}.yaml")
    out = tmp_path / (output or f"{tag}.jsonl")
    return run_cli(str(spec), "--output", str(out), *server_urls(srv)), out


def test_records_and_diff_show_a_fallback_served_request(tmp_path: Path, make_server: ServerFactory,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with make_server(runners=2, retry_backoff=0.001, fallbacks={"local/fail": "local/echo"}) as srv:
        code, pinned = _run(tmp_path, srv, "pinned", "fallbacks: false")
        assert code == 0
        assert "rerouted" not in capsys.readouterr().err
        code, rerouted = _run(tmp_path, srv, "rerouted", "")
        assert code == 0
        assert ("  rerouted: 2 requests served by a fallback endpoint (flaky=2; records' rerouted_to; "
                "`fallbacks: false` turns fallbacks off)") in capsys.readouterr().err.splitlines()
    by_job = {(r["job"], r["matrix"].get("key")): r for r in records(pinned)}
    flaky = by_job[("flaky", "a")]
    assert flaky["status"] == "ok" and "rerouted_to" not in flaky
    assert flaky["asked"]["fallbacks"] is False
    assert {"x-fal-disable-fallbacks", "x-app-fal-disable-fallback"} <= set(flaky["asked"]["headers"])
    assert by_job[("direct", None)]["asked"]["fallbacks"] is False
    for record in records(rerouted):
        assert "fallbacks" not in record["asked"]  # fal's default: nothing sent, nothing claimed
        assert record.get("rerouted_to") == ("local/echo" if record["job"] == "flaky" else None)

    # The same requests (the key differs by tag, so the ids do too): line them up by renaming.
    base = tmp_path / "base.jsonl"
    new_lines = {json.loads(line)["matrix"].get("key"): line for line in rerouted.read_text().splitlines()}
    rewritten = []
    for line in pinned.read_text().splitlines():
        record = json.loads(line)
        twin = json.loads(new_lines[record["matrix"].get("key")]) if record["job"] == "flaky" else None
        if twin is not None:
            record["id"] = twin["id"]
        rewritten.append(json.dumps(record))
    base.write_text("\n".join(rewritten) + "\n")
    capsys.readouterr()
    assert main(["diff", str(base), str(rerouted), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    changed = report["served_by_changed"]
    assert [(e["job"], e["detail"], e["base_rerouted_to"], e["new_rerouted_to"]) for e in changed] == [
        ("flaky", "local/fail -> local/echo", None, "local/echo")] * 2
    assert report["counts"]["served_by_changed"] == 2 and report["regressed"] is True
    assert main(["diff", str(base), str(rerouted)]) == 1
    text = capsys.readouterr().out
    assert "served by another endpoint (2)" in text and "local/fail -> local/echo" in text
    main(["report", str(rerouted), "--format", "json"])
    assert json.loads(capsys.readouterr().out)["overall"]["rerouted"] == 2
    main(["report", str(rerouted)])
    assert "rerouted                 2 requests served by a fallback endpoint" in capsys.readouterr().out


def test_serve_command_fallback_option_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", "--fallback", "local/fail"]) == 2
    assert "expected ENDPOINT=ALTERNATIVE" in capsys.readouterr().err
    assert main(["serve", "--port", "0", "--fallback", "local/fail=fal-ai/flux"]) == 2
    assert "no app fal-ai/flux here" in capsys.readouterr().err


def test_a_rerouted_result_is_not_cached(tmp_path: Path, make_server: ServerFactory,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A rerouted answer is another endpoint's: serving it from the cache to the next run would
    hide the reroute (that run's record would have no `rerouted_to`)."""
    monkeypatch.chdir(tmp_path)  # the project cache lives under the working directory
    with make_server(runners=2, retry_backoff=0.001, fallbacks={"local/fail": "local/echo"}) as srv:
        assert _run(tmp_path, srv, "first", "cache: true")[0] == 0
        code, again = _run(tmp_path, srv, "first", "cache: true", output="again.jsonl")
        assert code == 0
    second = {r["job"]: r for r in records(again)}
    assert "cached" in second["direct"]  # the cache works here...
    assert "cached" not in second["flaky"] and "rerouted_to" not in second["flaky"]  # ...and was not used
