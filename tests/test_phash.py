"""Perceptual hashes of downloaded images: a run with `download: true` stores each image's pHash in
its artifact entry, a re-encoded picture (the server's `reencode`) hashes within a few bits of the
original and another seed's picture far from it; without the images extra the run warns once and
records no hash."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec

from batchrun.report.resultdiff import phash_distance
from batchrun.server import ServerThread
from batchrun.toolkit.phash import MISSING_EXTRA, PHASH_BITS, PerceptualHasher, is_image

SPEC = """\
    version: 1
    name: ph
    defaults: {download: true, mode: run}
    jobs:
      - name: img
        endpoint: local/image
        arguments: {prompt: a fox, seed: "${{ matrix.seed }}", reencode: "${{ matrix.reencode }}",
                    image_size: {width: 256, height: 192}}
        matrix: {seed: [1, 2], reencode: [0, 4]}
      - name: echo
        endpoint: local/echo
        arguments: {message: no media here}
"""


def phashes(out: Path) -> dict[tuple[int, int], str]:
    found = {}
    for record in records(out):
        if record["job"] == "img":
            [artifact] = record["artifacts"]
            found[(record["matrix"]["seed"], record["matrix"]["reencode"])] = artifact["phash"]
    return found


def test_downloaded_images_carry_a_phash(tmp_path: Path, loopback_server: ServerThread) -> None:
    """Re-encoded: other sha256, pHash within 4 bits; another seed: more than 16 bits away."""
    out = tmp_path / "out.jsonl"
    assert run_cli(str(write_spec(tmp_path, SPEC)), "-o", str(out), *server_urls(loopback_server)) == 0
    found = phashes(out)
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in found.values()), found
    shas = {r["artifacts"][0]["sha256"] for r in records(out) if r["job"] == "img"}
    assert len(shas) == 4  # four different files
    for seed in (1, 2):
        assert phash_distance(found[(seed, 0)], found[(seed, 4)]) <= 4
    assert phash_distance(found[(1, 0)], found[(2, 0)]) > 16
    assert next(r for r in records(out) if r["job"] == "echo")["artifacts"] == []  # no media, nothing hashed


def test_hasher_on_bytes() -> None:
    """Bytes that are no picture hash to None; the distance counts differing bits."""
    hasher = PerceptualHasher()
    assert hasher.available and hasher.message == ""
    assert hasher.phash(b"not a picture") is None
    assert hasher.phash(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) is None  # truncated PNG
    assert phash_distance("0" * 16, "f" * 16) == PHASH_BITS
    assert phash_distance("8b59d535e4f78290", "8b59d535e4f78291") == 1
    assert is_image("image/png; charset=binary", None) and not is_image("video/mp4", "a.png")
    assert is_image(None, "files/x.JPG") and not is_image(None, None)


def test_without_the_extra_the_run_warns_and_records_no_phash(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A machine without Pillow/imagehash still downloads; one warning names the extra to install."""
    monkeypatch.setitem(sys.modules, "imagehash", None)  # `import imagehash` raises ImportError, as when absent
    assert not PerceptualHasher().available
    out = tmp_path / "out.jsonl"
    assert run_cli(str(write_spec(tmp_path, SPEC)), "-o", str(out), *server_urls(loopback_server)) == 0
    err = capsys.readouterr().err
    assert err.count(MISSING_EXTRA) == 1 and "pip install 'batchrun-fal[images]'" in err
    artifacts = [r["artifacts"][0] for r in records(out) if r["job"] == "img"]
    assert len(artifacts) == 4 and all("phash" not in a and a["sha256"] for a in artifacts)


def test_a_cache_hit_keeps_its_phash_and_one_cached_without_the_extra_gets_one(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result cache replays artifacts: hashed ones keep their pHash; ones first obtained
    without the images extra are hashed on the hit, so `diff` by look works on cached outputs."""
    monkeypatch.setenv("BATCHRUN_CACHE_DIR", str(tmp_path / "cache"))
    spec = str(write_spec(tmp_path, SPEC.replace("name: ph\n", "name: ph\n    cache: true\n")))
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "imagehash", None)
        first = tmp_path / "first.jsonl"
        assert run_cli(spec, "-o", str(first), *server_urls(loopback_server)) == 0
    assert all("phash" not in r["artifacts"][0] for r in records(first) if r["job"] == "img")
    second = tmp_path / "second.jsonl"
    assert run_cli(spec, "-o", str(second), *server_urls(loopback_server)) == 0
    third = tmp_path / "third.jsonl"
    assert run_cli(spec, "-o", str(third), *server_urls(loopback_server)) == 0
    fresh = tmp_path / "fresh.jsonl"
    assert run_cli(spec, "-o", str(fresh), "--no-cache", *server_urls(loopback_server)) == 0
    for out in (second, third):
        img = [r for r in records(out) if r["job"] == "img"]
        assert len(img) == 4 and all("cached" in r for r in img)
        assert phashes(out) == phashes(fresh)  # the same pictures, the same hashes as a fresh download
    assert all(len(h) == 16 for h in phashes(fresh).values())
