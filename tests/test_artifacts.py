"""batchrun.toolkit.artifacts on its own: media discovery, the size cap, retries, odd URLs (loopback server)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import httpx
import pytest

from batchrun.server import ServerThread
from batchrun.toolkit.artifacts import RETRIES, Downloader, files_dir, media_objects


def test_media_objects_are_objects_with_a_url_and_a_type_or_name() -> None:
    result = {
        "images": [{"url": "http://h/a.png", "content_type": "image/png"}, {"url": "http://h/b", "file_name": "b.jpg"}],
        "video": {"file": {"url": "http://h/v.mp4", "content_type": "video/mp4", "thumb": {"url": "x", "file_name": "t"}}},
        "link": {"url": "http://h/page"},
        "urls": ["http://h/c.png"],
    }
    assert [m["url"] for m in media_objects(result)] == ["http://h/a.png", "http://h/b", "http://h/v.mp4"]
    assert files_dir(Path("outputs/nightly.jsonl")) == Path("outputs/nightly/files")


@pytest.mark.anyio
async def test_size_cap_bad_urls_and_retries(tmp_path: Path, loopback_server: ServerThread) -> None:
    url = loopback_server.origin + "/files/images/0123456789abcdef/1/0/32x24.png"
    body = httpx.get(url).content
    refused = "http://127.0.0.1:1/x.png"  # nothing listens on port 1: a connection error, retried
    result = {"a": {"url": url, "content_type": "image/png"},
              "b": {"url": "ftp://h/x.png", "file_name": "x.png"},
              "c": {"url": "data:image/png;base64", "file_name": "x.png"},
              "d": {"url": refused, "file_name": "x.png"}}
    small = Downloader(tmp_path / "o.jsonl", max_bytes=len(body) - 1, backoff_s=0.01)
    try:
        started = time.monotonic()
        entries = await small.fetch(result)
        elapsed = time.monotonic() - started
    finally:
        await small.aclose()
    errors = [e.get("error") for e in entries]
    assert errors[0] == f"{url} is {len(body)} bytes, over the {len(body) - 1}-byte cap"
    assert errors[1] == "not an http(s) or data URL: ftp://h/x.png"
    assert errors[2] == "malformed data URL (no comma)"
    assert errors[3] is not None and errors[3].startswith(f"connection error fetching {refused}: ClientConnectorError")
    assert elapsed < 2.0  # RETRIES retries with a 10 ms doubling backoff
    assert RETRIES == 3 and small.failed == 4 and small.downloaded == 0
    assert all(e["path"] is None and e["sha256"] is None for e in entries)
    assert list((tmp_path / "o" / "files").iterdir()) == []  # no temporary file left behind
    # Under the cap the same URL is stored by its hash; a second fetch reuses the file.
    big = Downloader(tmp_path / "o.jsonl")
    try:
        first = await big.fetch({"x": result["a"]})
        again = await big.fetch([result["a"]])
    finally:
        await big.aclose()
    sha = hashlib.sha256(body).hexdigest()
    assert first == again == [{"url": url, "path": f"o/files/{sha}.png", "sha256": sha, "bytes": len(body),
                               "content_type": "image/png"}]
    assert big.downloaded == 1


def test_a_full_disk_is_an_artifact_error_naming_the_folder_not_a_retried_connection_error(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 64 KiB fail with EFBIG, as a full disk fails with ENOSPC
    (CPython ignores SIGXFSZ, so the write raises). The record is small and gets written; the
    1024x1024 PNG does not, and its entry says where batchrun could not write."""
    import resource
    import subprocess
    import sys

    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nname: full\ntarget: local\njobs:\n"
                    "  - {name: img, endpoint: local/image, download: true,"
                    " arguments: {prompt: a lighthouse, image_size: square_hd, seed: 1}}\n")
    out = tmp_path / "out.jsonl"
    limit = 64 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    child = subprocess.run([sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), "--no-progress"],
                           preexec_fn=small_files, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert child.returncode == 0, child.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    (entry,) = record["artifacts"]
    assert entry["path"] is None and entry["sha256"] is None
    assert entry["error"] == f"cannot write into {out.parent / 'out' / 'files'}: File too large"
    assert "Traceback" not in child.stderr
    assert not list((out.parent / "out" / "files").glob(".download-*"))  # no partial file left
