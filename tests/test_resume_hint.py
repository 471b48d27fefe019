"""A resume over records that failed an expectation says how to re-check them after a spec fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_execute import run_cli, server_urls, write_spec

from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: hint
    jobs:
      - name: e
        endpoint: local/echo
        mode: run
        matrix: {t: [hi, ho]}
        arguments: {text: "${{ matrix.t }}"}
        expect: [{path: echo.text, equals: hi}]
"""


def test_resume_names_batchrun_check_when_settled_records_failed_an_expectation(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    urls = server_urls(loopback_server)
    assert run_cli(str(spec), "-o", str(out), *urls) == 1  # "ho" fails its expectation
    capsys.readouterr()
    assert run_cli(str(spec), "-o", str(out), *urls) == 1
    err = capsys.readouterr().err
    assert (f"batchrun: resuming {out}: 2 of 2 planned requests are already done (2 ok, 0 error); 1 of them "
            "failed an expectation (they are not sent again: if the spec's expect was wrong, fix it and "
            f"`batchrun check {spec} {out} --write` re-checks them); 0 journaled queue requests to re-attach\n") in err
    # Without failed expectations the hint is not there.
    write_spec(tmp_path, SPEC.replace("equals: hi}", "exists: true}"))
    assert run_cli(str(spec), "-o", str(out), *urls) == 1  # the stored records still say failed
    assert "batchrun check" in capsys.readouterr().err
    assert run_cli(str(spec), "-o", str(tmp_path / "fresh.jsonl"), *urls) == 0
    assert run_cli(str(spec), "-o", str(tmp_path / "fresh.jsonl"), *urls) == 0
    assert "batchrun check" not in capsys.readouterr().err
