"""Covering designs (`strategy:`), `constraints:` and seeded samples (`sample:`, `--sample`): the
coverage each design promises, checked against the full product; constraints in every request;
samples reproducible across processes, their ids the full plan's."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.cli import main
from batchrun.load import load_spec, validate_spec
from batchrun.plan.covering import covering_rows
from batchrun.plan.planner import PlannedRequest, build_plan, count_plan

KEYS = ["a", "b", "c", "d", "e", "f"]
ARGUMENTS = "{" + ", ".join(f'{k}: "${{{{ matrix.{k} }}}}"' for k in KEYS) + "}"
MATRIX_6x4 = "{" + ", ".join(f"{k}: [1, 2, 3, 4]" for k in KEYS) + "}"


def spec_file(tmp_path: Path, job: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text("version: 1\nname: d\ntarget: local\njobs:\n" + textwrap.indent(textwrap.dedent(job), "  "))
    return path


def job_6x4(extra: str = "") -> str:
    return textwrap.dedent(f"""\
        - name: sweep
          endpoint: local/echo
          arguments: {ARGUMENTS}
          matrix: {MATRIX_6x4}
        """) + textwrap.indent(textwrap.dedent(extra), "  ")


def plan(path: Path) -> list[PlannedRequest]:
    return list(build_plan(load_spec(path)))


def tuples_of(combo: dict[str, Any], t: int) -> set[tuple[tuple[str, Any], ...]]:
    return {tuple((k, combo[k]) for k in keys) for keys in itertools.combinations(KEYS, t)}


def feasible_tuples(full: list[PlannedRequest], t: int) -> set[tuple[tuple[str, Any], ...]]:
    """Every t-tuple of values that some allowed combination (one of the full plan's) has."""
    return set().union(*(tuples_of(r.matrix, t) for r in full))


def test_pairwise_6_keys_of_4_values_covers_every_pair_in_at_most_30_requests(tmp_path: Path) -> None:
    requests = plan(spec_file(tmp_path, job_6x4("strategy: pairwise")))
    assert len(requests) <= 30
    covered = set().union(*(tuples_of(r.matrix, 2) for r in requests))
    every_pair = {((k1, v1), (k2, v2)) for k1, k2 in itertools.combinations(KEYS, 2)
                  for v1 in range(1, 5) for v2 in range(1, 5)}
    assert len(every_pair) == 15 * 16
    assert covered == every_pair
    assert [r.index for r in requests] == list(range(len(requests)))


def test_3way_covers_every_triple_and_ids_are_the_full_plans(tmp_path: Path) -> None:
    requests = plan(spec_file(tmp_path, job_6x4("strategy: {tway: 3}"), "tway.yaml"))
    full = plan(spec_file(tmp_path, job_6x4(), "full.yaml"))
    assert len(full) == 4096 and len(requests) < 200
    assert set().union(*(tuples_of(r.matrix, 3) for r in requests)) == feasible_tuples(full, 3)
    assert len(feasible_tuples(full, 3)) == 20 * 64
    assert {r.id for r in requests} <= {r.id for r in full}


CONSTRAINED = """\
    strategy: STRATEGY
    constraints:
      - if: {a: 1}
        then: {b: {max: 2}}
      - if: {c: [3, 4]}
        then: {d: {not: [1, 2]}}
      - then: {e: {not: 4}}
    exclude: [{f: 1, a: 2}]
    """


def allowed(m: dict[str, Any]) -> bool:
    """CONSTRAINED's rules, written out."""
    return ((m["a"] != 1 or m["b"] <= 2) and (m["c"] not in (3, 4) or m["d"] not in (1, 2)) and m["e"] != 4
            and (m["f"], m["a"]) != (1, 2))


@pytest.mark.parametrize("strategy", ["full", "pairwise", "{tway: 3}"])
def test_constraints_hold_in_every_request_and_designs_cover_what_they_allow(tmp_path: Path,
                                                                             strategy: str) -> None:
    rules = CONSTRAINED.replace("STRATEGY", strategy)
    requests = plan(spec_file(tmp_path, job_6x4(rules), "c.yaml"))
    assert requests and all(allowed(r.matrix) for r in requests)
    full = plan(spec_file(tmp_path, job_6x4(CONSTRAINED.replace("STRATEGY", "full")), "f.yaml"))
    product = [dict(zip(KEYS, values, strict=True)) for values in itertools.product(range(1, 5), repeat=6)]
    assert [r.matrix for r in full] == [m for m in product if allowed(m)]
    t = {"full": 6, "pairwise": 2, "{tway: 3}": 3}[strategy]
    if t < 6:
        assert set().union(*(tuples_of(r.matrix, t) for r in requests)) == feasible_tuples(full, t)
        assert {r.id for r in requests} <= {r.id for r in full}
    else:
        assert requests == full


def test_designs_do_not_depend_on_the_order_the_matrix_is_written(tmp_path: Path) -> None:
    written = plan(spec_file(tmp_path, job_6x4("strategy: pairwise"), "a.yaml"))
    shuffled = "{" + ", ".join(f"{k}: [3, 1, 4, 2]" for k in reversed(KEYS)) + "}"
    other = plan(spec_file(tmp_path, job_6x4("strategy: pairwise").replace(MATRIX_6x4, shuffled), "b.yaml"))
    assert sorted(r.id for r in written) == sorted(r.id for r in other)


def test_include_keeps_its_meaning_on_a_design(tmp_path: Path) -> None:
    requests = plan(spec_file(tmp_path, job_6x4("""\
        strategy: pairwise
        include: [{a: 1, label: one}, {a: 9, label: extra}]
        """)))
    assert all(r.matrix.get("label") == "one" for r in requests if r.matrix.get("a") == 1)
    assert requests[-1].matrix == {"a": 9, "label": "extra"}
    assert count_plan(load_spec(tmp_path / "spec.yaml"))["sweep"] == len(requests)


# ---- the greedy itself, on random matrices and rules ----------------------------------------

@st.composite
def problems_st(draw: st.DrawFn) -> tuple[list[int], int, list[tuple[tuple[int, ...], frozenset[tuple[int, ...]]]]]:
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=6))
    t = draw(st.integers(1, 4))
    n = len(sizes)
    rules = []
    for _ in range(draw(st.integers(0, 3))):  # each rule forbids some value tuples of 1-3 keys
        keys = tuple(sorted(draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=min(3, n)))))
        space = list(itertools.product(*(range(sizes[k]) for k in keys)))
        banned = draw(st.sets(st.sampled_from(space), max_size=max(1, len(space) // 2)))
        rules.append((keys, frozenset(banned)))
    return sizes, t, rules


@settings(max_examples=200, deadline=None)
@given(problems_st())
def test_covering_rows_are_valid_and_cover_every_feasible_tuple(
        problem: tuple[list[int], int, list[tuple[tuple[int, ...], frozenset[tuple[int, ...]]]]]) -> None:
    sizes, t, banned = problem
    rules = [(keys, lambda picked, out=out: picked not in out) for keys, out in banned]
    rows = covering_rows(sizes, t, rules)

    def valid(row: tuple[int, ...]) -> bool:
        return all(tuple(row[k] for k in keys) not in out for keys, out in banned)

    allowed = [row for row in itertools.product(*(range(s) for s in sizes)) if valid(row)]
    tt = min(t, len(sizes))

    def tuples(row: tuple[int, ...]) -> set[tuple[tuple[int, int], ...]]:
        return {tuple((k, row[k]) for k in keys) for keys in itertools.combinations(range(len(sizes)), tt)}

    assert all(len(row) == len(sizes) and valid(row) for row in rows)
    feasible = set().union(*(tuples(row) for row in allowed)) if allowed else set()
    assert (set().union(*(tuples(row) for row in rows)) if rows else set()) == feasible
    assert rows == [] if not allowed else len(rows) <= len(allowed)
    assert len(set(rows)) == len(rows)
    assert covering_rows(sizes, t, rules) == rows  # deterministic


# ---- determinism across processes ------------------------------------------------------------

_DIGEST = """
import hashlib, json, sys
from batchrun.load import load_spec
from batchrun.plan.planner import build_plan, with_sample
counts = {}
spec = load_spec(sys.argv[1], None, counts)
if len(sys.argv) > 2:
    spec = with_sample(spec, counts, int(sys.argv[2]), int(sys.argv[3]))
ids = [r.id for r in build_plan(spec)]
print(json.dumps(ids))
"""


def in_process(*args: str, hashseed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    done = subprocess.run([sys.executable, "-c", _DIGEST, *args], capture_output=True, text=True, env=env,
                          check=True)
    ids: list[str] = json.loads(done.stdout)
    return ids


def test_designs_and_samples_are_the_same_in_two_processes(tmp_path: Path) -> None:
    pairwise = spec_file(tmp_path, job_6x4(CONSTRAINED.replace("STRATEGY", "pairwise")), "p.yaml")
    full = spec_file(tmp_path, job_6x4(), "full.yaml")
    first, second = in_process(str(pairwise), hashseed="1"), in_process(str(pairwise), hashseed="2")
    assert first == second and len(first) > 20
    sample_1 = in_process(str(full), "40", "7", hashseed="3")
    sample_2 = in_process(str(full), "40", "7", hashseed="4")
    assert sample_1 == sample_2 and len(sample_1) == 40
    full_ids = [r.id for r in plan(full)]
    assert set(sample_1) <= set(full_ids)
    assert sample_1 == [i for i in full_ids if i in set(sample_1)]  # in plan order
    assert in_process(str(full), "40", "8", hashseed="3") != sample_1  # the seed matters


def test_the_pairwise_design_is_pinned(tmp_path: Path) -> None:
    """A changed algorithm changes every pairwise spec's plan (and what a resume re-sends): if this
    fails on purpose, say so in docs/spec.md and the changelog, then update the digest."""
    rows = covering_rows([4] * 6, 2)
    assert len(rows) == 24
    digest = hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]
    assert digest == PINNED_PAIRWISE_6x4


PINNED_PAIRWISE_6x4 = "e95708523256896b"


# ---- samples ---------------------------------------------------------------------------------

def test_a_job_sample_is_a_stable_subset_and_grows_by_one(tmp_path: Path) -> None:
    full = plan(spec_file(tmp_path, job_6x4(), "full.yaml"))
    ids = {r.id: r for r in full}
    samples = {}
    for n in (10, 11):
        requests = plan(spec_file(tmp_path, job_6x4(f"sample: {{n: {n}, seed: 5}}"), f"s{n}.yaml"))
        assert len(requests) == n and [r.index for r in requests] == list(range(n))
        assert all(ids[r.id].arguments == r.arguments for r in requests)
        samples[n] = [r.id for r in requests]
    assert set(samples[10]) < set(samples[11])
    bigger = plan(spec_file(tmp_path, job_6x4("sample: {n: 5000}"), "all.yaml"))
    assert [r.id for r in bigger] == [r.id for r in full]


def test_sample_cli_count_and_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = spec_file(tmp_path, job_6x4("strategy: pairwise"))
    assert main(["plan", str(path), "--count"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["job", "endpoint", "design", "requests", "full"]
    design_size = len(plan(path))
    assert out[1].split() == ["sweep", "local/echo", "pairwise", str(design_size), "4096"]
    assert main(["plan", str(path), "--count", "--sample", "7", "--seed", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["sweep", "local/echo", "pairwise,", "sample", "7", "(seed", "2)", "7", "4096"]
    assert main(["plan", str(path), "--sample", "7", "--seed", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 7 and {x["id"] for x in lines} <= {r.id for r in plan(path)}
    assert main(["plan", str(path), "--seed", "2"]) == 2
    assert "--seed S goes with --sample N" in capsys.readouterr().err


def test_plain_specs_keep_the_three_column_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(spec_file(tmp_path, job_6x4())), "--count"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["job", "endpoint", "requests"]


# ---- validation ------------------------------------------------------------------------------

def problems(tmp_path: Path, extra: str) -> list[str]:
    spec, found = validate_spec(spec_file(tmp_path, job_6x4(extra)))
    assert spec is None
    return [str(p).replace(str(tmp_path) + "/", "") for p in found]


def test_constraints_name_real_keys_and_values_located(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        constraints:
          - if: {aa: 1}
            then: {b: {max: 2, min: 3}}
          - if: {c: 7}
            then: {d: [1, 5]}
        """) == [
        "spec.yaml:10:14: $.jobs[0].constraints[0].if.aa: constraint key 'aa' is not in the matrix; "
        "did you mean 'a'?",
        "spec.yaml:11:28: $.jobs[0].constraints[0].then.b.min: min (3) is greater than max (2): no value can hold",
        "spec.yaml:12:17: $.jobs[0].constraints[1].if.c: 7 is not a value of matrix key 'c' (its values: 1, 2, 3, 4)",
        "spec.yaml:13:23: $.jobs[0].constraints[1].then.d[1]: 5 is not a value of matrix key 'd' "
        "(its values: 1, 2, 3, 4)",
    ]


def test_schema_checks_the_shapes(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        strategy: triplewise
        sample: {n: 0}
        constraints: [{if: {a: 1}}]
        """)
    assert found == [
        "spec.yaml:9:15: $.jobs[0].strategy: must be full, pairwise or {tway: T}, got \"triplewise\"",
        "spec.yaml:10:17: $.jobs[0].sample.n: must be at least 1, got 0",
        "spec.yaml:11:19: $.jobs[0].constraints[0]: missing required key 'then'",
    ]


def test_an_empty_design_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        strategy: pairwise
        constraints:
          - then: {a: 1}
          - then: {a: 2}
        """) == ["spec.yaml:10:5: $.jobs[0].constraints: job 'sweep' plans no request: "
                 "its constraints rule out every combination of its matrix"]


def test_a_design_too_big_to_compute_is_refused(tmp_path: Path) -> None:
    keys = [f"k{i}" for i in range(40)]
    matrix = "{" + ", ".join(f"{k}: [{', '.join(str(v) for v in range(10))}]" for k in keys) + "}"
    arguments = "{" + ", ".join(f'{k}: "${{{{ matrix.{k} }}}}"' for k in keys) + "}"
    spec, found = validate_spec(spec_file(tmp_path, f"""\
        - name: huge
          endpoint: local/echo
          arguments: {arguments}
          matrix: {matrix}
          strategy: pairwise
        """))
    assert spec is None and len(found) == 1
    assert "$.jobs[0].strategy: a pairwise design over this matrix has 78000 value combinations" in str(found[0])


def test_a_sample_draws_from_dataset_rows_and_repeats_too(tmp_path: Path) -> None:
    rows = ", ".join(f"{{p: prompt {i}}}" for i in range(30))
    job = f"""\
        - name: rows
          endpoint: local/echo
          arguments: {{p: "${{{{ row.p }}}}", s: "${{{{ matrix.s }}}}", r: "${{{{ repeat }}}}"}}
          matrix: {{s: [1, 2]}}
          dataset: [{rows}]
          repeat: 2
        """
    full = plan(spec_file(tmp_path, job, "full.yaml"))
    sampled = plan(spec_file(tmp_path, job + "  sample: {n: 12, seed: 3}\n", "s.yaml"))
    assert len(full) == 120 and len(sampled) == 12
    by_id = {r.id: r for r in full}
    assert all((by_id[r.id].row, by_id[r.id].repeat, by_id[r.id].matrix) == (r.row, r.repeat, r.matrix)
               for r in sampled)
    assert len({r.row for r in sampled}) > 1 and len({r.repeat for r in sampled}) == 2


def test_strategy_and_constraints_under_defaults_apply_to_every_job(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: d
        defaults:
          strategy: pairwise
          constraints: [{{then: {{a: {{not: 4}}}}}}]
          matrix: {MATRIX_6x4}
          arguments: {ARGUMENTS}
        jobs:
          - {{name: one, endpoint: local/echo}}
          - {{name: two, endpoint: local/echo}}
        """))
    requests = plan(path)
    for name in ("one", "two"):
        mine = [r for r in requests if r.job.name == name]
        assert 16 <= len(mine) <= 30 and all(r.matrix["a"] != 4 for r in mine)
