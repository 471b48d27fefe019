"""Media lifetime (docs/fal-protocol.md §9.5): `media_lifetime` sends fal's per-request object
lifecycle preference, the embedded server deletes the media it made when it runs out, and
`validate` warns when that would happen before batchrun fetches them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec
from fixtures_server import ServerFactory, queue_attempts

from batchrun.cli import main
from batchrun.server import create_app
from batchrun.spec.model import MediaLifetime

BASE = "http://testserver"
PREFERENCE = "X-Fal-Object-Lifecycle-Preference"


@pytest.mark.anyio
async def test_media_made_with_a_lifetime_are_gone_after_it() -> None:
    app = create_app(runners=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        kept = (await client.post("/run/local/image", json={"prompt": "a fox"})).json()["images"][0]["url"]
        short = await client.post("/run/local/image", json={"prompt": "a fox"},
                                  headers={PREFERENCE: json.dumps({"expiration_duration_seconds": 1})})
        url = short.json()["images"][0]["url"]
        end = await queue_attempts(client, "local/image", {"prompt": "a fox"},
                                   headers={PREFERENCE: '{"expiration_duration_seconds": 3600}'})
        queued = end.result.json()["images"][0]["url"]
        assert "expires=" not in kept and "expires=" in url and "expires=" in queued
        deadline = int(url.rpartition("expires=")[2]) / 1000
        assert time.time() < deadline <= time.time() + 1.01
        assert time.time() + 3590 < int(queued.rpartition("expires=")[2]) / 1000 <= time.time() + 3600.01
        assert (await client.get(url)).status_code == 200  # still there
        await asyncio.sleep(max(0.0, deadline - time.time()) + 0.02)
        gone = await client.get(url)
        assert (gone.status_code, gone.json()["detail"].endswith("(expired)")) == (404, True)
        assert (await client.get(kept)).status_code == 200 and (await client.get(queued)).status_code == 200
        assert (await client.get("/_emulator/stats")).json()["expired_fetches"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["null", "{}", "not json", '{"expiration_duration_seconds": 0}', "[1]",
                                   '{"expiration_duration_seconds": true}'])
async def test_no_or_a_meaningless_preference_keeps_the_media(value: str) -> None:
    app = create_app(runners=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        answer = await client.post("/run/local/image", json={"prompt": "a fox"}, headers={PREFERENCE: value})
    assert answer.status_code == 200 and "expires=" not in answer.json()["images"][0]["url"]


@pytest.mark.parametrize(("value", "seconds", "text"), [
    (90, 90, "90s"), (0.2, 1, "1s"), ("30m", 1800, "30m"), ("1.5h", 5400, "90m"), ("7d", 604800, "1w"),
    ("2w", 1209600, "2w"), ("never", None, "never"), ("3x", None, None), (0, None, None), (True, None, None),
])  # fmt: skip
def test_lifetime_values(value: Any, seconds: int | None, text: str | None) -> None:
    lifetime = MediaLifetime.of(value)
    if text is None:
        assert lifetime is None
    else:
        assert lifetime is not None and (lifetime.seconds, str(lifetime)) == (seconds, text)
        assert json.loads(lifetime.header()) == {"expiration_duration_seconds": seconds}


SPEC = """\
    version: 1
    name: lifetimes
    jobs:
      - name: hour
        endpoint: local/image
        arguments: {prompt: a lighthouse}
        media_lifetime: 1h
        download: true
      - name: forever
        endpoint: local/image
        mode: run
        arguments: {prompt: a lighthouse}
        media_lifetime: never
        download: true
      - name: default
        endpoint: local/image
        arguments: {prompt: a lighthouse}
"""


def test_a_run_sends_the_lifetime_and_records_it(tmp_path: Path, make_server: ServerFactory) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    with make_server() as srv:
        before = time.time()
        assert run_cli(str(spec), "--output", str(out), *server_urls(srv)) == 0
    by_job = {r["job"]: r for r in records(out)}
    hour, forever, default = by_job["hour"], by_job["forever"], by_job["default"]
    assert hour["asked"]["media_lifetime_s"] == 3600 and PREFERENCE in hour["asked"]["headers"]
    expires = int(hour["result"]["images"][0]["url"].rpartition("expires=")[2]) / 1000
    assert before + 3600 <= expires <= time.time() + 3600
    assert hour["artifacts"][0]["bytes"] > 0  # downloaded well within its hour
    assert forever["asked"]["media_lifetime_s"] is None and PREFERENCE in forever["asked"]["headers"]
    assert "expires=" not in forever["result"]["images"][0]["url"]
    assert "media_lifetime_s" not in default["asked"] and PREFERENCE not in default["asked"]["headers"]


def test_validate_warns_when_media_would_expire_before_they_are_fetched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: expiring
        target: local
        jobs:
          - name: kept
            endpoint: local/image
            arguments: {prompt: a}
            media_lifetime: 30d
            download: true
          - name: undownloaded
            endpoint: local/image
            arguments: {prompt: a}
            media_lifetime: 1h
          - name: hurried
            endpoint: local/image
            arguments: {prompt: a}
            media_lifetime: 90
            download: true
          - name: never
            endpoint: local/image
            arguments: {prompt: a}
            media_lifetime: never
    """)
    assert main(["validate", str(spec)]) == 0  # warnings do not fail validation
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if "warning" in line]
    assert len(warned) == 2, err
    assert warned[0].startswith(f"{spec}:13:21: $.jobs[1].media_lifetime: warning: job 'undownloaded' keeps its "
                                "media only 1h and does not download them")
    assert "add `download: true`" in warned[0]
    assert warned[1].startswith(f"{spec}:17:21: $.jobs[2].media_lifetime: warning: job 'hurried' downloads its "
                                "media, but fal deletes them 90s after they are made")


def test_a_bad_lifetime_is_a_located_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: bad
        defaults: {media_lifetime: 3 days}
        jobs:
          - {name: a, endpoint: local/image, arguments: {prompt: a}}
    """)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"{spec}:3:28: $.defaults.media_lifetime: must be seconds or a number with s, m, h, d or w" in err
    assert "Traceback" not in err


def test_the_result_cache_does_not_serve_a_result_whose_media_are_gone(
    tmp_path: Path, make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached image result is its URLs: once fal has deleted the media (and nothing downloaded
    them), a hit would hand out dead links, so it is a miss and the request is sent again."""
    monkeypatch.setenv("BATCHRUN_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_spec(tmp_path, """\
        version: 1
        name: cached
        cache: true
        jobs:
          - {name: brief, endpoint: local/image, mode: run, arguments: {prompt: a}, media_lifetime: 1}
          - {name: kept, endpoint: local/image, mode: run, arguments: {prompt: b}, media_lifetime: 1h}
    """)

    def run(name: str) -> dict[str, dict[str, Any]]:
        out = tmp_path / f"{name}.jsonl"
        assert run_cli(str(spec), "--output", str(out), *server_urls(srv)) == 0
        return {r["job"]: r for r in records(out)}

    with make_server() as srv:
        first = run("first")
        again = run("again")  # within the second: both hit
        assert "cached" in again["brief"] and "cached" in again["kept"]
        time.sleep(max(0.0, int(first["brief"]["result"]["images"][0]["url"].rpartition("=")[2]) / 1000
                       - time.time()) + 0.05)
        later = run("later")
        assert httpx.get(later["brief"]["result"]["images"][0]["url"]).status_code == 200  # a fresh, live one
    assert "cached" not in later["brief"] and "cached" in later["kept"]
