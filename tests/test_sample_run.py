"""`batchrun run --sample N --seed S`: a seeded part of the plan whose ids are the full plan's, so
the full run on the same output resumes it and sends only the rest, nothing twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, write_spec

from batchrun.load import load_spec
from batchrun.output.manifest import manifest_path
from batchrun.output.planids import plan_ids_path
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]

SPEC = """\
    version: 1
    name: sampled
    jobs:
      - name: grid
        endpoint: local/echo
        mode: run
        arguments: {x: "${{ matrix.x }}", y: "${{ matrix.y }}"}
        matrix: {x: [1, 2, 3, 4], y: [a, b, c]}
        constraints:
          - if: {x: 4}
            then: {y: [a]}
"""


def test_a_sampled_run_then_the_full_run_resumes_it(tmp_path: Path, make_server: MakeServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    full = {r.id: r for r in build_plan(load_spec(spec))}
    assert len(full) == 10  # 12 minus (4, b) and (4, c)
    with make_server(runners=2) as srv:
        assert run_cli(str(spec), "-o", str(out), "--sample", "4", "--seed", "9", *server_urls(srv)) == 0
        sampled = records(out)
        assert len(sampled) == 4 and {r["id"] for r in sampled} <= set(full)
        assert all(r["arguments"] == full[r["id"]].arguments for r in sampled)
        assert not plan_ids_path(out).exists()  # a part of the plan is not recorded as the plan
        m = json.loads(manifest_path(out).read_text())
        assert m["plan"]["selection"] == "--sample 4 --seed 9"
        assert run_cli(str(spec), "-o", str(out), *server_urls(srv)) == 0
        sent = stats(srv.origin)["requests"]["run"]
    err = capsys.readouterr().err
    assert "4 of 10 planned requests are already done (4 ok, 0 error)" in err
    assert sent == 10  # 4 + 6: nothing twice
    assert sorted(r["id"] for r in records(out)) == sorted(full)
    assert all(r["arguments"]["x"] != 4 or r["arguments"]["y"] == "a" for r in records(out))
