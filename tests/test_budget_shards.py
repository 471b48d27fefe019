"""A budget is the whole plan's: N shards run side by side spend at most `max_usd` together
(each gets 1/N), unless the user asks for per-shard budgets with --budget-per-shard."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from batchrun.cli import main

SPEC = """
    version: 1
    name: b
    target: local
    pricing:
      local/echo: {per_request: 0.01}
    budget: {max_usd: 0.04}
    jobs:
      - name: e
        endpoint: local/echo
        mode: run
        arguments: {i: "${{ matrix.i }}"}
        matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}
    """


def _spent(paths: list[Path]) -> float:
    total = 0.0
    for path in paths:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            total += record.get("cost_usd") or 0.0
    return total


@pytest.mark.parametrize("per_shard", [False, True])
def test_shards_share_the_budget_unless_asked_otherwise(tmp_path: Path, per_shard: bool,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(textwrap.dedent(SPEC).lstrip(), encoding="utf-8")
    outs = []
    for i in (1, 2):
        out = tmp_path / f"s{i}.jsonl"
        args = ["run", str(spec), "--shard", f"{i}/2", "-o", str(out), "--no-progress"]
        main([*args, "--budget-per-shard"] if per_shard else args)
        outs.append(out)
    spent = _spent(outs)
    if per_shard:
        assert spent > 0.04 + 1e-9  # each shard spent up to the whole budget: the user's choice
        assert all(_spent([o]) <= 0.04 + 1e-9 for o in outs)
    else:
        assert 0 < spent <= 0.04 + 1e-9
        assert all(_spent([o]) <= 0.02 + 1e-9 for o in outs)
