"""`batchrun diff` by look: two runs of one spec against two deployments of an image model, the second
re-encoding one prompt's picture (other bytes, same look) and drawing another's differently. The
re-encoded id is "visually the same" (not a regression), the redrawn one a result change with its
pHash distance; `--phash-threshold` moves the line.

The two deployments are the embedded server with a user app (`apps=`) that draws with the server's own
`local/image` renderer and answers `data:` URLs (which downloads decode), so the request ids are the
same in both runs while the pictures differ."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_execute import records, run_cli, server_urls, write_spec

from batchrun.cli import main
from batchrun.report.resultdiff import PHASH_THRESHOLD
from batchrun.server import ServerThread
from batchrun.server.image import prompt_digest, render_png

SPEC = """\
    version: 1
    name: looks
    defaults: {download: true, mode: run}
    jobs:
      - name: draw
        endpoint: me/draw
        arguments: {prompt: "${{ matrix.prompt }}", seed: 5}
        matrix: {prompt: [kept, reencoded, redrawn]}
"""

SIZE = (160, 120)


def deployment(*, new: bool) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The model as deployed at base time (`new=False`) or after an update: `reencoded`'s picture in
    other bytes, `redrawn`'s drawn from another seed."""

    def draw(arguments: dict[str, Any]) -> dict[str, Any]:
        prompt, seed = arguments["prompt"], arguments["seed"]
        reencode = 4 if new and prompt == "reencoded" else 0
        if new and prompt == "redrawn":
            seed += 1
        png = render_png(prompt_digest(prompt), seed, 0, *SIZE, reencode)
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        return {"images": [{"url": url, "width": SIZE[0], "height": SIZE[1], "content_type": "image/png"}],
                "seed": arguments["seed"], "prompt": prompt}

    return draw


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(base, new) outputs of the spec, each from its own deployment."""
    root = tmp_path_factory.mktemp("looks")
    spec = write_spec(root, SPEC)
    paths = []
    for name, new in (("base", False), ("new", True)):
        out = root / name / "out.jsonl"
        with ServerThread(apps={"me/draw": deployment(new=new)}) as srv:
            assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == 0
        paths.append(out)
    yield paths[0], paths[1]


def diff_json(base: Path, new: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = main(["diff", str(base), str(new), "--format", "json", *extra])
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
    [changed] = data["results_changed"][0]["changes"]
    assert same["path"] == changed["path"] == "images[0].url"
    assert same["visual"] == "same" and same["phash_distance"] <= PHASH_THRESHOLD
    assert same["base_sha256"] != same["new_sha256"]
    assert changed["visual"] == "changed" and changed["phash_distance"] > 16
    assert data["counts"]["visually_same"] == 1 and data["counts"]["results_changed"] == 1
    assert ids["kept"] not in json.dumps(data)  # identical bytes: not listed at all


def test_text_says_how_far_apart(outputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base, new = outputs
    assert main(["diff", str(base), str(new)]) == 1
    text = capsys.readouterr().out
    assert "visually the same (1)" in text and "results changed (1)" in text
    assert "(visually the same, pHash distance" in text and "(visually changed, pHash distance" in text
    assert "regressed: 1 result changed, 1 visually the same" in text


def test_threshold_moves_the_line(outputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The redrawn picture, d bits away, is visually the same from `--phash-threshold d` on."""
    base, new = outputs
    _, data = diff_json(base, new, capsys)
    d = data["results_changed"][0]["changes"][0]["phash_distance"]
    code, data = diff_json(base, new, capsys, "--phash-threshold", str(d))
    assert code == 0 and data["counts"]["visually_same"] == 2 and not data["results_changed"]
    code, data = diff_json(base, new, capsys, "--phash-threshold", str(d - 1))
    assert code == 1 and data["counts"]["visually_same"] == 1 and data["counts"]["results_changed"] == 1
    assert main(["diff", str(base), str(new), "--phash-threshold", "65"]) == 2
    assert "--phash-threshold must be from 0 to 64 bits, got 65" in capsys.readouterr().err
