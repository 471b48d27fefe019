"""The duplicate-id check skips its plan walk only when ids are distinct by construction."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.errors import SpecError
from batchrun.load import load_spec
from batchrun.output.planids import PlanIds
from batchrun.plan.checks import distinct_by_construction
from batchrun.plan.planner import build_plan
from batchrun.spec import dataset
from batchrun.spec.checks import whole_refs
from batchrun.spec.model import Job, Spec

# Matrix values that collide in Python (1 == 1.0 == True) or only after escaping, and containers.
VALUES = st.one_of(
    st.sampled_from([0, 1, 1.0, True, False, None, "1", "a", "${{ x }}", "$${{ x }}", "a/../b", "b"]),
    st.lists(st.sampled_from([0, 1, "a"]), max_size=2),
    st.dictionaries(st.sampled_from(["k", "$file"]), st.sampled_from([0, "a", "b"]), max_size=2),
)
KEYS = ["x", "y", "z"]


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    matrix = {k: draw(st.lists(VALUES, min_size=1, max_size=4)) for k in keys}
    arguments: dict[str, Any] = {}
    for k in keys:
        use = draw(st.sampled_from(["whole", "embedded", "nested", "file", "unused"]))
        ref = f"${{{{ matrix.{k} }}}}"
        if use == "whole":
            arguments[k] = ref
        elif use == "embedded":
            arguments[k] = f"value {ref}"
        elif use == "nested":
            arguments[k] = {"inner": [ref]}
        elif use == "file":
            arguments[k] = {"$file": ref}
    exclude = draw(st.lists(st.fixed_dictionaries({keys[0]: st.sampled_from(matrix[keys[0]])}), max_size=1))
    return Job(name="j", endpoint="local/echo", arguments=arguments, matrix=matrix, exclude=exclude,
               repeat=draw(st.integers(1, 2)))


@settings(max_examples=400, deadline=None)
@given(jobs())
def test_distinct_by_construction_implies_distinct_ids(job: Job) -> None:
    """Whenever the walk is skipped, walking would have found no duplicate id."""
    spec = Spec(version=1, name="t", jobs=[job], source=Path("/nowhere/spec.yaml"), max_requests=10**9)
    ids = [r.id for r in build_plan(spec)]
    if distinct_by_construction(job):
        assert len(set(ids)) == len(ids)


@st.composite
def dataset_jobs(draw: st.DrawFn) -> tuple[Job, list[dict[str, Any]]]:
    """A job over a JSONL dataset (and maybe a matrix); row values collide as the matrix's do."""
    rows = draw(st.lists(st.fixed_dictionaries({"p": VALUES, "q": VALUES}), min_size=1, max_size=5))
    arguments: dict[str, Any] = {}
    for field in ("p", "q"):
        use = draw(st.sampled_from(["whole", "embedded", "nested", "file", "unused"]))
        ref = f"${{{{ row.{field} }}}}"
        arguments[field] = {"whole": ref, "embedded": f"value {ref}", "nested": {"inner": [ref]},
                            "file": {"$file": ref}, "unused": 0}[use]
    matrix = {"x": draw(st.lists(VALUES, min_size=1, max_size=3))} if draw(st.booleans()) else {}
    if matrix:
        arguments["x"] = "${{ matrix.x }}"
    job = Job(name="j", endpoint="local/echo", arguments=arguments, matrix=matrix, repeat=draw(st.integers(1, 2)))
    return job, rows


@settings(max_examples=300, deadline=None)
@given(dataset_jobs())
def test_distinct_rows_imply_distinct_ids(case: tuple[Job, list[dict[str, Any]]]) -> None:
    """The check's read tells whether rows differ in the whole-argument fields; whenever that lets
    validation skip the walk, walking would have found no duplicate id."""
    job, rows = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        job = dataclasses.replace(job, dataset=path)
        report = dataset.check(path, "rows.jsonl", {"p": "$", "q": "$"}, sorted(whole_refs(job.arguments, "row")))
        spec = Spec(version=1, name="t", jobs=[job], source=Path(tmp) / "spec.yaml", max_requests=10**9)
        ids = [r.id for r in build_plan(spec)]
    assert report.rows == len(rows) and report.problems == []
    if distinct_by_construction(job, report):
        assert len(set(ids)) == len(ids)


def test_distinct_rows_validate_without_a_walk_and_duplicates_are_located(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"p": "a"}\n{"p": 1}\n{"p": "1"}\n{"p": 1.0}\n')
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {p: "${{ row.p }}", s: "${{ matrix.s }}"}
          matrix: {s: [1, 2]}
          dataset: rows.jsonl
    """)
    spec = load_spec(path)
    report = dataset.check(tmp_path / "rows.jsonl", "rows.jsonl", {"p": "$"}, ["p"])
    assert report.distinct and distinct_by_construction(spec.jobs[0], report)
    assert len({r.id for r in build_plan(spec)}) == 8
    (tmp_path / "rows.jsonl").write_text('{"p": "a"}\n{"p": "b"}\n{"p": "a", "other": 1}\n')
    assert _only_problem(path).startswith("requests 0 and 2 of job 'j' are identical (id ")


def _only_problem(path: Path) -> str:
    """The message of the one problem that loading `path` must raise."""
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    [problem] = exc.value.problems
    return problem.message


def _spec(tmp_path: Path, job: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nname: t\njobs:\n" + textwrap.indent(textwrap.dedent(job), "  "))
    return path


def test_repeated_matrix_value_is_still_a_located_duplicate(tmp_path: Path) -> None:
    """Whole-value templates, but a matrix list repeats a value: the walk runs and finds it."""
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {seed: "${{ matrix.seed }}"}
          matrix: {seed: [1, 2, 1]}
    """)
    assert _only_problem(path).startswith("requests 0 and 2 of job 'j' are identical (id ")


def test_a_matrix_key_reaching_only_the_hint_or_headers_is_named(tmp_path: Path) -> None:
    """Hint and headers shape how a request is sent, not which request it is: a sweep over them
    alone collides, and the message says which key and what to do instead."""
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {prompt: hi, seed: "${{ matrix.seed }}"}
          hint: "runner-${{ matrix.h }}"
          headers: {X-Variant: "${{ matrix.v }}"}
          matrix: {seed: [1, 2], h: [a, b], v: [x]}
    """)
    message = _only_problem(path)
    assert message.startswith("requests 0 and 1 of job 'j' are identical (id ")
    assert message.endswith("; matrix key 'h' differs between them but only in the hint or headers, which are not "
                            "part of a request's id: give each variant its own job (the job name is part of the id)")
    repeated = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {seed: "${{ matrix.seed }}"}
          matrix: {seed: [1, 2, 1]}
    """)
    assert "hint or headers" not in _only_problem(repeated)  # a repeated value is the plain duplicate


def test_normalised_file_paths_are_still_a_located_duplicate(tmp_path: Path) -> None:
    """A $file path made from the matrix is normalised (d/../a is a): not proof, so the walk runs."""
    (tmp_path / "a").write_text("x")
    (tmp_path / "d").mkdir()
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {image: {$file: "${{ matrix.f }}"}}
          matrix: {f: [a, d/../a]}
    """)
    assert _only_problem(path).startswith("requests 0 and 1 of job 'j' are identical (id ")


def test_sweep_of_whole_value_templates_validates_without_a_walk(tmp_path: Path) -> None:
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {prompt: "style ${{ matrix.s }}", seed: "${{ matrix.seed }}", s: "${{ matrix.s }}"}
          matrix: {seed: [1, 2, 3], s: [a, b]}
          exclude: [{seed: 2}]
    """)
    spec = load_spec(path)
    assert distinct_by_construction(spec.jobs[0])
    assert len({r.id for r in build_plan(spec)}) == 4


# ---- build_plan(only=...): the resume's second walk renders only what is left to do ----------

ONLY_JOBS = st.builds(
    lambda m, inc, exc, rep: (m, inc, exc, rep),
    st.dictionaries(st.sampled_from(["x", "y", "z"]), st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True),
                    max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["x", "w"]), st.integers(0, 4), min_size=1, max_size=2), max_size=2),
    st.lists(st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 4), min_size=1, max_size=1), max_size=1),
    st.integers(1, 3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(ONLY_JOBS, min_size=1, max_size=3), st.integers(1, 3), st.data())
def test_only_yields_exactly_the_wanted_requests(cases: list[Any], n: int, data: st.DataObject) -> None:
    """Any subset of a (sharded) plan's indices: the same requests, equal in every field, in order."""
    jobs = []
    for i, (matrix, include, exclude, repeat) in enumerate(cases):
        keys = sorted({*matrix, *(k for e in include for k in e)})
        jobs.append(Job(name=f"j{i}", endpoint="local/echo", arguments={k: f"${{{{ matrix.{k} }}}}" for k in keys},
                        matrix=matrix, include=include, exclude=[e for e in exclude if set(e) <= set(matrix)],
                        repeat=repeat, path=f"p/${{{{ matrix.{keys[0]} }}}}" if keys else ""))
    spec = Spec(version=1, name="t", jobs=jobs, source=Path("/nowhere/spec.yaml"), max_requests=10**9)
    shard = (data.draw(st.integers(1, n)), n)
    full = list(build_plan(spec, shard=shard))
    chosen = sorted(data.draw(st.sets(st.sampled_from([r.index for r in full]))) if full else set())
    by_index = {r.index: r for r in full}
    assert list(build_plan(spec, shard=shard, only=chosen)) == [by_index[i] for i in chosen]


def test_only_steps_over_dataset_rows(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"p": "r{i}"}}\n' for i in range(5)))
    path = _spec(tmp_path, """\
        - name: j
          endpoint: local/echo
          arguments: {p: "${{ row.p }}", s: "${{ matrix.s }}", r: "${{ repeat }}"}
          matrix: {s: [1, 2, 3]}
          dataset: rows.jsonl
          repeat: 2
    """)
    spec = load_spec(path)
    full = list(build_plan(spec))
    assert len(full) == 30
    chosen = [0, 9, 10, 11, 29]
    assert [r.arguments for r in build_plan(spec, only=chosen)] == [full[i].arguments for i in chosen]
    assert list(build_plan(spec, only=[])) == []


# ---- the plan-ids sidecar sorts a million ids without a million Python ints -------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.sampled_from([0, 2**56 - 1, 2**56, 2**63, 2**64 - 1]), max_size=300))
def test_plan_ids_sort_bucketwise_like_sorted(values: list[int]) -> None:
    ids = PlanIds()
    for v in values:
        ids.add(f"{v:016x}")
    assert list(ids.sorted_ids()) == sorted(values)
