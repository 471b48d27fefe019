"""`batchrun merge -o other/dir/all.jsonl` keeps the downloaded images reachable: relative artifact
paths are rewritten for the merged file's folder; `report --html` says when artifact files are
missing (stderr and the page) instead of silently using result URLs. Real sharded runs on the
embedded server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, write_spec
from test_report_html import parse

from batchrun.cli import main
from batchrun.output.merge import _rebase
from batchrun.output.reading import RecordsError
from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: art
    defaults: {download: true}
    jobs:
      - name: img
        endpoint: local/image
        mode: run
        arguments: {prompt: a fox, seed: "${{ matrix.seed }}", image_size: {width: 32, height: 24}}
        matrix: {seed: [1, 2, 3, 4, 5, 6]}
"""


@pytest.fixture
def shards(tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]) -> list[Path]:
    spec = write_spec(tmp_path, SPEC)
    outs = []
    for shard in (1, 2):
        out = tmp_path / "shards" / f"s{shard}.jsonl"
        assert run_cli(str(spec), "-o", str(out), "--shard", f"{shard}/2", "--run-url", loopback_server.run_url,
                       "--queue-url", loopback_server.queue_url, "--no-progress") == 0
        outs.append(out)
    capsys.readouterr()
    return outs


def test_merged_elsewhere_the_artifacts_still_resolve(shards: list[Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    merged = tmp_path / "ci" / "all.jsonl"
    merged.parent.mkdir()
    assert main(["merge", *map(str, shards), "-o", str(merged)]) == 0
    assert capsys.readouterr().out == (
        f"merged 2 files: 6 records -> 6 requests in {merged}\n"
        f"artifact paths of 6 records rewritten relative to the folder of {merged} (the files stay where they are)\n"
    )
    by_id = {r["id"]: (shard, r) for shard in shards for r in records(shard)}
    for record in records(merged):
        shard, original = by_id[record["id"]]
        [artifact] = record["artifacts"]
        [before] = original["artifacts"]
        assert artifact == {**before, "path": f"../shards/{before['path']}"}
        assert (merged.parent / artifact["path"]).read_bytes() == (shard.parent / before["path"]).read_bytes()
        # Nothing else changed.
        assert {k: v for k, v in record.items() if k != "artifacts"} == {
            k: v for k, v in original.items() if k != "artifacts"}

    html = tmp_path / "ci" / "report.html"
    assert main(["report", str(merged), "--html", str(html)]) == 0
    assert capsys.readouterr().err == f"wrote {html}\n"
    sources = [img.attrs["src"] for img in parse(html.read_text()).all("img")]
    assert len(sources) == 6 and all(src.startswith("../shards/s") for src in sources), sources
    assert all((html.parent / src).is_file() for src in sources)


def test_missing_artifact_files_are_a_warning_and_a_note(shards: list[Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The second shard's files/ folder is gone: its 3 images use the (dead) result URLs, and the
    report says so on stderr and in the page."""
    shutil.rmtree(shards[1].parent / "s2")
    html = tmp_path / "report.html"
    assert main(["report", str(shards[1]), "--html", str(html)]) == 0
    first = records(shards[1])[0]["artifacts"][0]["path"]
    message = (f"3 artifact files are missing beside {shards[1]} (e.g. {first}, "
               f"{records(shards[1])[1]['artifacts'][0]['path']}, {records(shards[1])[2]['artifacts'][0]['path']}): "
               "the page uses the result URLs instead, which may no longer be served; keep the output's files/ "
               "folder with it")
    assert capsys.readouterr().err == f"batchrun: warning: {message}\nwrote {html}\n"
    page = parse(html.read_text())
    assert [p.text() for p in page.all("p") if p.attrs.get("id") == "missing-files"] == [message]
    assert all(img.attrs["src"].startswith("http://127.0.0.1:") for img in page.all("img"))

    assert main(["report", str(shards[0]), "--html", str(html)]) == 0
    assert capsys.readouterr().err == f"wrote {html}\n"  # the first shard's files are all there


def test_a_line_that_changed_between_the_passes_is_a_located_error(tmp_path: Path) -> None:
    """merge reads the chosen lines again to copy them; one that is no longer a record (the file
    changed in between) is a RecordsError naming the file and offset, never a traceback."""
    with pytest.raises(RecordsError, match=r"^shard\.jsonl at byte 42: changed while being read"):
        _rebase(b'{"artifacts": [ torn', (tmp_path / "a", tmp_path), "shard.jsonl at byte 42")
    line = b'{"id":"x","artifacts":[{"path":"files/p.png"}]}'
    assert _rebase(line, (tmp_path / "a", tmp_path), "x") == b'{"id":"x","artifacts":[{"path":"a/files/p.png"}]}'
