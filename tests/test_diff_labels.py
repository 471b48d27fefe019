"""`batchrun diff` names requests by what they are (dataset row, matrix values), shows a JSON-only
result as text in the HTML page, prints whole-run deltas and warns when two files share no id.
Real runs on the embedded server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, write_spec
from test_report_html import parse

from batchrun.cli import main
from batchrun.server import ServerThread

ROWS = """\
    version: 1
    name: rows
    jobs:
      - name: label
        endpoint: local/echo
        mode: run
        arguments: {prompt: "${{ row.prompt }}", steps: 4}
        dataset:
          - {prompt: "a lighthouse at dusk, long exposure, golden hour"}
          - {prompt: "a fox in the snow"}
"""


def run(spec: Path, out: Path, srv: ServerThread) -> int:
    return run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url, "--no-progress")


@pytest.fixture
def changed_pair(tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A real dataset run (base) and a copy whose row 1 answered another prompt (new)."""
    base = tmp_path / "base.jsonl"
    assert run(write_spec(tmp_path, ROWS), base, loopback_server) == 0
    lines = base.read_text().splitlines()
    edited = [json.loads(line) for line in lines]
    for record in edited:
        if record["row"] == 1:
            record["result"]["echo"]["prompt"] = "a fox in the rain"
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps(r) + "\n" for r in edited))
    capsys.readouterr()
    return base, new


def test_a_changed_dataset_row_is_named_by_row_and_arguments(changed_pair: tuple[Path, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base, new = changed_pair
    fox = next(r for r in records(base) if r["row"] == 1)
    assert main(["diff", str(base), str(new)]) == 1
    text = capsys.readouterr().out
    assert (
        "results changed (1)\n"
        f"  {fox['id']}  label  row 1 prompt=a fox in the snow steps=4\n"
        '      echo.prompt: "a fox in the snow" -> "a fox in the rain"\n'
    ) in text
    assert main(["diff", str(base), str(new), "--format", "markdown"]) == 1
    assert (f"| `{fox['id']}` | label | row 1 prompt=a fox in the snow steps=4 | "
            'echo.prompt: "a fox in the snow" -> "a fox in the rain" |') in capsys.readouterr().out


def test_a_json_only_result_is_shown_as_text_in_the_html_diff(changed_pair: tuple[Path, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    base, new = changed_pair
    html = tmp_path / "diff.html"
    assert main(["diff", str(base), str(new), "--html", str(html)]) == 1
    assert capsys.readouterr().err == f"wrote {html}\n"
    page = parse(html.read_text())
    card = page.all("section", "card")[1]
    assert card.all("h3")[0].text().endswith("label row 1 prompt=a fox in the snow steps=4")
    sides = [div.text() for div in card.all("div", "err")]
    assert sides == ['{"echo": {"prompt": "a fox in the snow", "steps": 4}, "path": ""}',
                     '{"echo": {"prompt": "a fox in the rain", "steps": 4}, "path": ""}']
    assert "no image in the result" not in html.read_text()


def test_files_without_a_shared_id_get_a_warning(tmp_path: Path, loopback_server: ServerThread,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Two outputs of different specs: every id is missing or added; the diff says so (stderr and
    output), with the whole-run numbers base -> new."""
    base, new = tmp_path / "base.jsonl", tmp_path / "new.jsonl"
    assert run(write_spec(tmp_path, ROWS), base, loopback_server) == 0
    assert run(write_spec(tmp_path, ROWS.replace("steps: 4", "steps: 8"), "other.yaml"), new, loopback_server) == 0
    capsys.readouterr()
    assert main(["diff", str(base), str(new)]) == 1
    captured = capsys.readouterr()
    warning = f"warning: {base} and {new} share no request id: are they outputs of the same spec? " \
              "(every id is missing or added)"
    assert captured.err == f"batchrun: {warning}\n"
    lines = captured.out.splitlines()
    assert lines[1].startswith("ok 100.0% (2/2) -> 100.0% (2/2) · latency of ok requests p50 ")
    assert lines[2] == warning
    assert lines[-1] == "regressed: 2 missing, 2 added"
    assert main(["diff", str(base), str(new), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["shared_ids"], data["warning"]) == (0, warning)
