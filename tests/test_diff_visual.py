"""`batchrun diff` by look: two runs of one spec against two deployments of an image model, the second
re-encoding one prompt's picture (other bytes, same look) and drawing another's differently. The
re-encoded id is "visually the same" (not a regression), the redrawn one a result change with its
pHash distance; `--phash-threshold` moves the line.

The two deployments are `fixtures_looks.deployment`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec
from fixtures_looks import SPEC, deployment

from batchrun.cli import main
from batchrun.report.resultdiff import PHASH_THRESHOLD
from batchrun.server import ServerThread

# A loaded machine can make the second run slower: latency regressions are not what these tests look at.
LOOKS_ONLY = ("--latency-ratio", "1000")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(base, new) outputs of the spec, each from its own deployment."""
    root = tmp_path_factory.mktemp("looks")
    spec = write_spec(root, SPEC)
    paths = []
    for name, new in (("base", False), ("new", True)):
        out = root / name / "out.jsonl"
        with ServerThread(apps={"me/draw": deployment(new=new)}) as srv:
            assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == (1 if new else 0)  # redrawn: seed 6
        paths.append(out)
    yield paths[0], paths[1]


def diff_json(base: Path, new: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["diff", str(base), str(new), "--format", "json", *LOOKS_ONLY, *extra])
    return code, json.loads(capsys.readouterr().out)


def by_prompt(out: Path) -> dict[str, str]:
    return {r["arguments"]["prompt"]: r["id"] for r in records(out)}


def test_reencoded_is_visually_same_and_redrawn_is_changed(
    outputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, new = outputs
    ids = by_prompt(base)
    assert ids == by_prompt(new)
    code, data = diff_json(base, new, capsys)
    assert code == 1  # the redrawn picture is a regression
    assert [e["id"] for e in data["visually_same"]] == [ids["reencoded"]]
    assert [e["id"] for e in data["results_changed"]] == [ids["redrawn"]]
    [same] = data["visually_same"][0]["changes"]
    changed, seed = data["results_changed"][0]["changes"]
    assert seed == {"path": "seed", "base": 5, "new": 6}
    assert same["path"] == changed["path"] == "images[0].url"
    assert same["visual"] == "same" and same["phash_distance"] <= PHASH_THRESHOLD
    assert same["base_sha256"] != same["new_sha256"]
    assert changed["visual"] == "changed" and changed["phash_distance"] > 16
    assert data["counts"]["visually_same"] == 1 and data["counts"]["results_changed"] == 1
    assert ids["kept"] not in json.dumps(data)  # identical bytes: not listed at all


def test_text_says_how_far_apart(outputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, new = outputs
    assert main(["diff", str(base), str(new), *LOOKS_ONLY]) == 1
    text = capsys.readouterr().out
    assert "visually the same (1)" in text and "results changed (1)" in text
    assert "(visually the same, pHash distance" in text and "(visually changed, pHash distance" in text
    assert "regressed: 1 result changed, 1 visually the same, 1 expectation regression" in text


def test_threshold_moves_the_line(outputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The redrawn picture, d bits away, is visually the same from `--phash-threshold d` on (its seed
    left out with --ignore; its failed check stays an expectation regression)."""
    base, new = outputs
    _, data = diff_json(base, new, capsys)
    d = data["results_changed"][0]["changes"][0]["phash_distance"]
    code, data = diff_json(base, new, capsys, "--ignore", "seed", "--phash-threshold", str(d))
    assert data["counts"]["visually_same"] == 2 and not data["results_changed"]
    assert code == 1 and data["counts"]["expectation_regressions"] == 1
    _, data = diff_json(base, new, capsys, "--ignore", "seed", "--phash-threshold", str(d - 1))
    assert data["counts"]["visually_same"] == 1 and data["counts"]["results_changed"] == 1
    assert main(["diff", str(base), str(new), "--phash-threshold", "65"]) == 2
    assert "--phash-threshold must be from 0 to 64 bits, got 65" in capsys.readouterr().err


def test_html_difference_images_need_pillow(
    outputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Pillow each changed picture gets a difference image (inline PNG); without it the page
    says what to install, and still shows base and new."""
    base, new = outputs
    page = tmp_path / "d.html"
    main(["diff", str(base), str(new), "--html", str(page), *LOOKS_ONLY])
    text = page.read_text()
    assert text.count('<div class="side difference">') == 2 and text.count('src="data:image/png;base64,') == 2
    assert 'id="no-difference"' not in text
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # `import PIL.Image` raises ImportError, as when absent
    main(["diff", str(base), str(new), "--html", str(page), *LOOKS_ONLY])
    text = page.read_text()
    assert '<div class="side difference">' not in text and text.count('<div class="side new">') == 3
    assert "install the images extra (pip install &#x27;batchrun-fal[images]&#x27;)" in text
    capsys.readouterr()
