"""`batchrun report` on an output a run is still writing says RUNNING and how far it got (not
"FAIL: 3/3 ok (run not finished)"); once the run ends it says PASS; an output whose run died
without finishing (its lock no longer held) still says "run not finished"."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_execute import server_urls, wait_for, write_spec

from batchrun.cli import main
from batchrun.output.manifest import manifest_path
from batchrun.output.sink import OutputLock, output_in_use
from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: slow
    concurrency: 1
    jobs:
      - name: echo
        endpoint: local/echo
        mode: run
        matrix: {n: [1, 2, 3, 4, 5, 6]}
        arguments: {delay: 0.5, n: "${{ matrix.n }}"}
"""


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.slow  # concurrent runs as subprocesses
def test_report_of_a_run_in_progress_says_running(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out, page = write_spec(tmp_path, SPEC), tmp_path / "out.jsonl", tmp_path / "report.html"
    cmd = [sys.executable, "-m", "batchrun", "run", str(spec), "-o", str(out), *server_urls(loopback_server)]
    with subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
        wait_for(lambda: lines(out) >= 1)
        assert output_in_use(out)
        assert main(["report", str(out), "--html", str(page)]) == 0
        text = capsys.readouterr().out
        verdict = re.search(r'<p class="running" id="verdict">(RUNNING: [^<]*)</p>', page.read_text())
        assert verdict is not None, page.read_text()[:2000]
        assert re.fullmatch(r"RUNNING: [1-5]/6 finished so far, [1-5] ok", verdict[1]), verdict[1]
        assert text.splitlines()[1].startswith("RUNNING: ")
        assert main(["report", str(out), "--format", "json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["run"]["running"] is True and data["verdict"].startswith("RUNNING: ")
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    assert not output_in_use(out)
    assert main(["report", str(out), "--html", str(page)]) == 0
    assert '<p class="good" id="verdict">PASS: 6/6 ok</p>' in page.read_text()
    # A run killed before it could finish: the manifest says unfinished, nobody holds the lock.
    manifest = json.loads(manifest_path(out).read_text())
    manifest_path(out).write_text(json.dumps({**manifest, "finished_at": None}))
    assert main(["report", str(out)]) == 0
    assert "FAIL: 6/6 ok (run not finished)" in capsys.readouterr().out


def test_output_in_use_follows_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    assert not output_in_use(out)  # no lock file: nobody writes it
    with OutputLock(out):
        assert output_in_use(out)
    assert not output_in_use(out) and (tmp_path / "o.jsonl.lock").exists()
