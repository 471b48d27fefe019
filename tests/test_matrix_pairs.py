"""Paired values ("zip" sweeps) need no mode of their own: include-only jobs and dataset rows, as
docs/spec.md's *Paired values* shows."""

from __future__ import annotations

import textwrap
from pathlib import Path

from batchrun.load import load_spec
from batchrun.plan.planner import build_plan

PAIRS = "[{prompt: a red fox, seed: 1}, {prompt: a blue whale, seed: 7}]"


def plan(tmp_path: Path, job: str) -> list[dict]:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nname: z\njobs:\n" + textwrap.indent(textwrap.dedent(job), "  "))
    return [r.arguments for r in build_plan(load_spec(path))]


def test_include_only_sends_each_pair_once(tmp_path: Path) -> None:
    assert plan(tmp_path, f"""\
        - name: pairs
          endpoint: local/echo
          arguments: {{prompt: "${{{{ matrix.prompt }}}}", seed: "${{{{ matrix.seed }}}}"}}
          include: {PAIRS}
    """) == [{"prompt": "a red fox", "seed": 1}, {"prompt": "a blue whale", "seed": 7}]


def test_dataset_rows_cross_the_pairs_with_a_matrix(tmp_path: Path) -> None:
    assert plan(tmp_path, f"""\
        - name: crossed
          endpoint: local/echo
          arguments: {{style: "${{{{ matrix.style }}}}", prompt: "${{{{ row.prompt }}}}", seed: "${{{{ row.seed }}}}"}}
          matrix: {{style: [photo, watercolor]}}
          dataset: {PAIRS}
    """) == [
        {"style": "photo", "prompt": "a red fox", "seed": 1},
        {"style": "photo", "prompt": "a blue whale", "seed": 7},
        {"style": "watercolor", "prompt": "a red fox", "seed": 1},
        {"style": "watercolor", "prompt": "a blue whale", "seed": 7},
    ]


def test_include_on_a_matrix_is_not_a_zip(tmp_path: Path) -> None:
    """Why the docs point at datasets: each entry merges into every combination, the last one wins."""
    assert plan(tmp_path, f"""\
        - name: wrong
          endpoint: local/echo
          arguments: {{style: "${{{{ matrix.style }}}}", prompt: "${{{{ matrix.prompt }}}}"}}
          matrix: {{style: [photo, watercolor]}}
          include: {PAIRS}
    """) == [{"style": "photo", "prompt": "a blue whale"}, {"style": "watercolor", "prompt": "a blue whale"}]
