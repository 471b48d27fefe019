"""Large `$file` inputs through fal storage, against the embedded server's storage API over real
loopback sockets: single PUT to a signed URL, CDN multipart, once per content hash, remembered
beside the output, and the server's faults (a failed part, an expired signed URL, an expired token)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchrun.client.storage import STEP_ATTEMPTS, Uploads

PART = 64 * 1024  # small parts, so a multipart upload of a few parts is a small file


def _file(tmp_path: Path, name: str, size: int) -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


async def _fetch(url: str) -> bytes:
    async with httpx.AsyncClient() as client:
        answer = await client.get(url)
    assert answer.status_code == 200
    return answer.content


def _stats(server: Any) -> dict[str, Any]:
    return server.app.state.stats()


@pytest.mark.anyio
async def test_a_multipart_upload_survives_failed_parts_and_an_expired_token(make_server: Any, tmp_path: Path) -> None:
    path = _file(tmp_path, "video.mp4", 2 * PART + 1000)  # three parts
    with make_server(storage_faults={"fail_parts": 2, "expire_tokens": 1}) as server:
        async with Uploads(rest_url=server.origin, auth=None, part_size=PART) as uploads:
            info = await uploads.url_for(str(path))
        assert info["url"].startswith(server.origin + "/cdn/files/") and info["url"].endswith("/video.mp4")
        assert info["bytes"] == path.stat().st_size and len(info["sha256"]) == 64
        assert await _fetch(info["url"]) == path.read_bytes()
        side = _stats(server)["side"]
        assert side["storage_part"] == 3 + 2  # the two failed parts were sent again, nothing else
        assert side["storage_complete"] == 1
        # two tokens (the first came expired) and two multipart starts (the first refused with it)
        assert side["storage_initiate"] == 2 + 2


@pytest.mark.anyio
async def test_a_small_file_goes_by_initiate_and_put_and_an_expired_signed_url_is_initiated_again(
        make_server: Any, tmp_path: Path) -> None:
    path = _file(tmp_path, "face.png", PART - 1)
    with make_server(storage_faults={"expire_urls": 1}, require_key=True) as server:
        async with Uploads(rest_url=server.origin, auth="Key secret", part_size=PART) as uploads:
            info = await uploads.url_for(str(path))
        assert info["url"].startswith(server.origin + "/files/storage/")
        assert await _fetch(info["url"]) == path.read_bytes()
        side = _stats(server)["side"]
        assert side["storage_initiate"] == 2 and side["storage_put"] == 2 and side["storage_part"] == 0
        assert _stats(server)["auth_failures"] == 0  # the key went to the storage API ...


@pytest.mark.anyio
async def test_one_upload_per_content_for_concurrent_requests_and_across_runs(make_server: Any, tmp_path: Path) -> None:
    path = _file(tmp_path, "a.bin", 3 * PART)
    copy = tmp_path / "same-content.bin"
    copy.write_bytes(path.read_bytes())
    remember = tmp_path / "out.jsonl.uploads.jsonl"
    with make_server() as server:
        async with Uploads(rest_url=server.origin, auth=None, remember=remember, part_size=PART) as uploads:
            found: list[dict[str, Any]] = []

            async def one(p: Path) -> None:
                found.append(await uploads.url_for(str(p)))

            async with anyio.create_task_group() as group:
                for p in (path, path, path, copy):
                    group.start_soon(one, p)
            assert uploads.uploaded == 1
        assert len({f["url"] for f in found}) == 1
        assert _stats(server)["stored_bytes"] == path.stat().st_size
        # a resume (a new run on the same output and target) reuses the remembered URL
        async with Uploads(rest_url=server.origin, auth=None, remember=remember, part_size=PART) as again:
            assert (await again.url_for(str(path)))["url"] == found[0]["url"]
            assert again.uploaded == 0
        assert _stats(server)["stored_bytes"] == path.stat().st_size
    assert len(remember.read_text().splitlines()) == 1


@pytest.mark.anyio
async def test_a_failed_upload_is_an_input_error_record_not_a_crash(make_server: Any, tmp_path: Path) -> None:
    from batchrun.client.inputs import InputFileError, encode_files

    path = _file(tmp_path, "x.bin", 3 * PART)
    with make_server(storage_faults={"fail_parts": 100}) as server:
        # A 10 ms first retry instead of 0.2 s: the same 5 attempts of each step, without 3 s of sleeping.
        async with Uploads(rest_url=server.origin, auth=None, part_size=PART, first_retry_delay=0.01) as uploads:
            with pytest.raises(InputFileError, match=r"\$.f: uploading .* failed: could not upload part"):
                await encode_files({"f": {"$file": str(path)}}, uploads, threshold=0)
        side = _stats(server)["side"]
        # Each of the 3 parts is tried at most STEP_ATTEMPTS times, the first to give up all of them
        # (the others may be stopped sooner); nothing is completed.
        assert STEP_ATTEMPTS <= side["storage_part"] <= 3 * STEP_ATTEMPTS and side["storage_complete"] == 0, side


@pytest.mark.slow
def test_a_200_mb_input_runs_with_bounded_memory_and_is_uploaded_once_for_4_requests(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as out:  # sparse: no 200 MB of disk writes in the test
        out.truncate(200 * 1024 * 1024)
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""
        version: 1
        name: up
        target: local
        jobs:
          - name: big
            endpoint: local/echo
            mode: run
            arguments: {file: {$file: big.bin}, i: "${{ matrix.i }}"}
            matrix: {i: [1, 2, 3, 4]}
        """), encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run([sys.executable, "-m", "batchrun", "run", "spec.yaml", "--no-progress"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert done.returncode == 0, done.stderr
    assert peak_mb < 150 or before / 1024 >= 150, f"peak RSS {peak_mb:.0f} MB"
    import json

    records = [json.loads(line) for line in (tmp_path / "outputs/up.jsonl").read_text().splitlines()]
    urls = {r["result"]["echo"]["file"] for r in records}
    assert len(records) == 4 and len(urls) == 1 and next(iter(urls)).endswith("/big.bin")
    assert {r["inputs"]["$.file"]["bytes"] for r in records} == {200 * 1024 * 1024}
    assert len((tmp_path / "outputs/up.jsonl.uploads.jsonl").read_text().splitlines()) == 1


def test_upload_true_sends_even_a_small_file_by_url_and_false_keeps_a_large_one_inline(
    tmp_path: Path, make_server: Any
) -> None:
    """`upload:` overrides the 8 MiB rule both ways; unset, each file goes by its size."""
    import json

    from batchrun.cli import main
    from batchrun.client.storage import UPLOAD_THRESHOLD

    _file(tmp_path, "small.bin", 2048)
    _file(tmp_path, "large.bin", UPLOAD_THRESHOLD + 1)
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent("""
        version: 1
        name: up
        defaults: {endpoint: local/echo, mode: run}
        jobs:
          - {name: always, upload: true, arguments: {f: {$file: small.bin}}}
          - {name: never, upload: false, arguments: {f: {$file: large.bin}}}
          - {name: by-size, arguments: {small: {$file: small.bin}, large: {$file: large.bin}}}
        """), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    with make_server() as server:
        code = main(["run", str(spec), "--output", str(out), "--run-url", server.run_url,
                     "--queue-url", server.queue_url, "--no-progress"])
    assert code == 0
    records = {r["job"]: r for r in map(json.loads, out.read_text().splitlines())}
    always, never, by_size = records["always"], records["never"], records["by-size"]
    assert always["result"]["echo"]["f"].startswith(server.origin) and "url" in always["inputs"]["$.f"]
    assert never["result"]["echo"]["f"].startswith("data:") and "url" not in never["inputs"]["$.f"]
    assert by_size["result"]["echo"]["small"].startswith("data:")
    assert by_size["result"]["echo"]["large"].startswith(server.origin)
