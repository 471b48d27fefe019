"""The planner: expansion order, stable content ids, lazy streaming, shards that partition the plan."""

from __future__ import annotations

import hashlib
import itertools
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.errors import UsageError
from batchrun.load import load_spec
from batchrun.plan.planner import (
    build_plan,
    count_plan,
    in_shard,
    parse_shard,
    request_id,
)
from batchrun.spec.model import Job, RateLimit, Spec, Target

DATA = Path(__file__).parent / "data" / "spec"


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make_spec(*jobs: Job) -> Spec:
    return Spec(version=1, name="t", jobs=list(jobs), source=Path("/nowhere/spec.yaml"), max_requests=10**9)


def test_expansion_order_is_matrix_then_row_then_repeat(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"p": "cat"}\n{"p": "dog"}\n')
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            arguments: {s: "${{ matrix.s }}", p: "${{ row.p }}", r: "${{ repeat }}"}
            matrix: {s: [1, 2]}
            dataset: rows.jsonl
            repeat: 2
    """))
    got = [(r.index, r.matrix, r.row, r.repeat, r.arguments) for r in build_plan(spec)]
    assert got == [
        (0, {"s": 1}, 0, 0, {"s": 1, "p": "cat", "r": 0}),
        (1, {"s": 1}, 0, 1, {"s": 1, "p": "cat", "r": 1}),
        (2, {"s": 1}, 1, 0, {"s": 1, "p": "dog", "r": 0}),
        (3, {"s": 1}, 1, 1, {"s": 1, "p": "dog", "r": 1}),
        (4, {"s": 2}, 0, 0, {"s": 2, "p": "cat", "r": 0}),
        (5, {"s": 2}, 0, 1, {"s": 2, "p": "cat", "r": 1}),
        (6, {"s": 2}, 1, 0, {"s": 2, "p": "dog", "r": 0}),
        (7, {"s": 2}, 1, 1, {"s": 2, "p": "dog", "r": 1}),
    ]
    assert count_plan(spec) == {"j": 8}


def test_plan_line_shape_and_id_value(tmp_path: Path) -> None:
    """The id is sha256 of canonical JSON of {job, endpoint, path, arguments, repeat}, 16 hex digits."""
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - {name: j, endpoint: fal-ai/flux/schnell, path: /sub, arguments: {prompt: hi, key: "${{ env.K }}"}}
    """))
    [request] = build_plan(spec)
    canonical = json.dumps(
        {"arguments": {"key": "${{ env.K }}", "prompt": "hi"}, "endpoint": "fal-ai/flux/schnell", "job": "j",
         "path": "/sub", "repeat": 0}, separators=(",", ":"))
    assert request.id == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert request.id == request_id("j", "fal-ai/flux/schnell", "/sub", {"key": "${{ env.K }}", "prompt": "hi"}, 0)
    assert request.to_json() == {
        "id": request.id, "index": 0, "job": "j", "endpoint": "fal-ai/flux/schnell", "path": "/sub",
        "mode": "subscribe", "arguments": {"prompt": "hi", "key": "${{ env.K }}"}, "matrix": {}, "row": None,
        "repeat": 0,
    }


def test_ids_survive_reformatting_key_reorder_and_unrelated_jobs(tmp_path: Path) -> None:
    a = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            arguments: {a: "${{ matrix.x }}", b: {c: 1, d: 2}}
            matrix: {x: [1, 2]}
    """, "a.yaml"))
    b = load_spec(write(tmp_path, """
        name: t
        version: 1
        jobs:
          - name: other
            endpoint: local/sleep
          - matrix:
              x: [1, 2]
            arguments:
              b: {d: 2, c: 1}
              a: "${{   matrix.x}}"
            endpoint: local/echo
            name: j
    """, "b.yaml"))
    ids_a = [r.id for r in build_plan(a)]
    ids_b = [r.id for r in build_plan(b) if r.job.name == "j"]
    assert ids_a == ids_b
    assert [r.index for r in build_plan(b) if r.job.name == "j"] == [1, 2]


def test_templated_path_hint_and_headers_are_per_request(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: fal-ai/nano-banana-2
            mode: run
            path: "/${{ matrix.v }}"
            hint: "h-${{ matrix.v }}"
            headers: {X-Fal-No-Retry: "1", Authorization: "Bearer ${{ env.TOKEN }}", X-V: "${{ matrix.v }}"}
            matrix: {v: [edit, gen]}
    """))
    got = [(r.path, r.hint, r.headers) for r in build_plan(spec)]
    assert got == [
        ("/edit", "h-edit", {"X-Fal-No-Retry": "1", "Authorization": "Bearer ${{ env.TOKEN }}", "X-V": "edit"}),
        ("/gen", "h-gen", {"X-Fal-No-Retry": "1", "Authorization": "Bearer ${{ env.TOKEN }}", "X-V": "gen"}),
    ]


def test_defaults_apply_unless_the_job_sets_its_own(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        defaults:
          endpoint: local/echo
          mode: run
          timeout: 10
          retries: {max_attempts: 3}
          headers: {X-A: "1"}
        jobs:
          - {name: a}
          - {name: b, mode: subscribe, retries: {initial_delay: 1}, headers: {X-B: "2"}, dataset: [{p: 1}]}
    """))
    a, b = spec.jobs
    assert (a.endpoint, a.mode, a.timeout, a.retries.max_attempts, a.headers) == ("local/echo", "run", 10.0, 3, {"X-A": "1"})
    assert (b.mode, b.retries.max_attempts, b.retries.initial_delay, b.headers) == ("subscribe", 10, 1.0, {"X-B": "2"})
    assert b.dataset == [{"p": 1}]


@pytest.mark.parametrize("name", ["prompts.jsonl", "prompts.csv", "prompts.yaml"])
def test_dataset_formats_plan_rows(tmp_path: Path, name: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_bytes((DATA / name).read_bytes())
    spec = load_spec(write(tmp_path, f"""
        version: 1
        name: t
        jobs:
          - {{name: j, endpoint: local/echo, dataset: d/{name}, arguments: {{p: "${{{{ row.prompt }}}}"}}}}
    """))
    assert spec.jobs[0].dataset == tmp_path / "d" / name
    prompts = [r.arguments["p"] for r in build_plan(spec)]
    assert prompts[0] == "a cat"
    assert prompts[1] == ("a dog, running" if name.endswith(".csv") else "a dog")


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 1 / 1 ") == (1, 1)
    for bad, message in [
        ("0/4", "--shard 0/4: I must be between 1 and N (N >= 1)"),
        ("5/4", "--shard 5/4: I must be between 1 and N (N >= 1)"),
        ("x", "--shard must look like I/N (e.g. 2/4), got 'x'"),
        ("1/0", "--shard 1/0: I must be between 1 and N (N >= 1)"),
    ]:
        with pytest.raises(UsageError) as exc:
            parse_shard(bad)
        assert str(exc.value) == message


def test_plan_is_lazy() -> None:
    """A 10**12-request job yields its first requests at once: nothing is materialised."""
    job = Job(name="huge", endpoint="local/echo", arguments={"a": "${{ matrix.a }}", "b": "${{ matrix.b }}"},
              matrix={"a": list(range(10**6)), "b": list(range(10**6))})
    spec = make_spec(job)
    first = list(itertools.islice(build_plan(spec), 3))
    assert [r.arguments for r in first] == [{"a": 0, "b": 0}, {"a": 0, "b": 1}, {"a": 0, "b": 2}]
    assert count_plan(spec) == {"huge": 10**12}


JOBS = st.builds(
    lambda m, inc, rep: (m, inc, rep),
    st.dictionaries(st.sampled_from(["x", "y", "z"]), st.lists(st.integers(0, 4), min_size=1, max_size=3, unique=True), max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["x", "w"]), st.integers(0, 4), min_size=1, max_size=2), max_size=2),
    st.integers(1, 3),
)


def spec_from(cases: list[Any], reverse_keys: bool = False) -> Spec:
    jobs = []
    for i, (matrix, include, repeat) in enumerate(cases):
        keys = sorted({*matrix, *(k for e in include for k in e)})
        arguments = {k: f"${{{{ matrix.{k} }}}}" for k in keys}
        if reverse_keys:
            arguments = dict(reversed(list(arguments.items())))
        jobs.append(Job(name=f"j{i}", endpoint="local/echo", arguments=arguments, matrix=matrix, include=include, repeat=repeat))
    return make_spec(*jobs)


@settings(max_examples=150, deadline=None)
@given(st.lists(JOBS, min_size=1, max_size=3), st.integers(1, 5))
def test_counts_ids_and_shards_properties(cases: list[Any], n: int) -> None:
    """count = plan length; ids unique and independent of argument key order; shards partition."""
    spec = spec_from(cases)
    plan = list(build_plan(spec))
    assert sum(count_plan(spec).values()) == len(plan)
    assert [r.index for r in plan] == list(range(len(plan)))
    ids = [r.id for r in plan]
    # unique unless an include appended a combination equal to an existing one (then the spec is invalid)
    distinct = {(r.job.name, json.dumps(r.arguments, sort_keys=True), r.repeat) for r in plan}
    assert len(set(ids)) == len(distinct)
    assert [r.id for r in build_plan(spec_from(cases, reverse_keys=True))] == ids
    shards = [list(build_plan(spec, shard=(i, n))) for i in range(1, n + 1)]
    merged = sorted((r for shard in shards for r in shard), key=lambda r: r.index)
    assert [(r.index, r.id) for r in merged] == [(r.index, r.id) for r in plan]
    for i, shard in enumerate(shards, start=1):
        assert all(in_shard(r.id, (i, n)) for r in shard)


def test_shards_are_stable_as_the_plan_grows() -> None:
    small = spec_from([({"x": [1, 2, 3]}, [], 1)])
    big = spec_from([({"x": [1, 2, 3, 4, 5, 6]}, [], 1), ({"y": [1, 2]}, [], 2)])
    for i in (1, 2, 3):
        small_ids = {r.id for r in build_plan(small, shard=(i, 3))}
        big_ids = {r.id for r in build_plan(big, shard=(i, 3))}
        assert small_ids <= big_ids


def test_file_objects_are_absolute_in_the_plan(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"\x89PNG")
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            arguments: {static: !file img/a.png, templated: {$file: "img/${{ row.f }}"}}
            dataset: [{f: a.png}]
    """))
    [request] = build_plan(spec)
    assert request.arguments == {"static": {"$file": str(tmp_path / "img/a.png")}, "templated": {"$file": str(tmp_path / "img/a.png")}}


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("", Target("fal")),
        ("target: local\n", Target("local")),
        ("target: {run_url: 'http://127.0.0.1:1', queue_url: 'http://127.0.0.1:2'}\n",
         Target("custom", "http://127.0.0.1:1", "http://127.0.0.1:2")),
    ],
)
def test_top_level_fields(tmp_path: Path, target: str, expected: Target) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nname: t\n" + target + "output: out/x.jsonl\nconcurrency: 3\nrate_limit: {per_second: 2}\n"
                    "gates: {max_errors: 1}\nbudget: {max_usd: 2}\npricing: {local/echo: {per_request: 0.5}}\n"
                    "jobs: [{name: a, endpoint: local/echo, rate_limit: {per_second: 1}}]\n")
    spec = load_spec(path)
    assert spec.target == expected
    assert (spec.output, spec.output_path(), spec.concurrency, spec.max_requests) == (Path("out/x.jsonl"), Path("out/x.jsonl"), 3, 10_000)
    assert (spec.rate_limit, spec.jobs[0].rate_limit) == (RateLimit(2.0), RateLimit(1.0))
    assert (spec.gates, spec.budget, spec.pricing) == ({"max_errors": 1}, {"max_usd": 2}, {"local/echo": {"per_request": 0.5}})
    assert spec.source == path


def test_path_hint_and_headers_are_strings_and_path_escapes_are_undone(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, """
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            path: "${{ matrix.n }}"
            hint: "${{ matrix.n }}"
            headers: {X-N: "${{ matrix.n }}", X-L: "$${{ lit }}"}
            matrix: {n: [1]}
          - {name: k, endpoint: local/echo, path: "/a$${{b"}
    """))
    first, second = build_plan(spec)
    assert (first.path, first.hint, first.headers) == ("1", "1", {"X-N": "1", "X-L": "$${{ lit }}"})
    assert second.path == "/a${{b"  # the escape is undone: path is the final string sent


# ---- `$file` inputs: ids from the spec-relative path and the content (issue 14, case 11) -----------

FILE_SPEC = """\
    version: 1
    name: files
    jobs:
      - name: static
        endpoint: local/echo
        arguments: {image: {$file: images/cat.png}, more: [!file images/dog.png]}
      - name: templated
        endpoint: local/echo
        matrix: {pet: [cat, dog]}
        arguments: {image: {$file: "images/${{ matrix.pet }}.png"}}
"""


def _checkout(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "cat.png").write_bytes(b"cat pixels")
    (root / "images" / "dog.png").write_bytes(b"dog pixels")
    spec = root / "spec.yaml"
    spec.write_text(textwrap.dedent(FILE_SPEC))
    return spec


def _ids(spec: Path) -> list[str]:
    return [r.id for r in build_plan(load_spec(spec))]


def test_file_input_ids_are_the_same_in_every_checkout_and_follow_the_content(tmp_path: Path) -> None:
    """Regression: `$file` ids came from the absolute path, so another checkout (a laptop, CI, a
    pod) planned other ids and resume, diff and merge across them failed; and new content under the
    same name kept the id, so a resume skipped the changed input. Now: spec-relative path + content."""
    here, there = _checkout(tmp_path / "laptop"), _checkout(tmp_path / "ci" / "deep" / "checkout")
    assert _ids(here) == _ids(there)
    assert len(set(_ids(here))) == 3
    # The plan still sends the file from where it is on this machine.
    assert next(build_plan(load_spec(here))).arguments["image"] == {"$file": str(tmp_path / "laptop/images/cat.png")}
    before = _ids(here)
    (tmp_path / "laptop" / "images" / "dog.png").write_bytes(b"a new dog")
    after = _ids(here)
    assert after[0] != before[0]  # static: dog.png is in its `more` list
    assert after[1] == before[1] and after[2] != before[2]  # templated: only the dog's request changes
    assert _ids(there) == before  # the other checkout is unchanged


def test_a_resume_in_another_checkout_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from batchrun.cli import main

    here, there = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    out = tmp_path / "out.jsonl"
    assert main(["run", str(here), "-o", str(out), "--target", "local", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(there), "-o", str(out), "--target", "local", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "3 of 3 planned requests are already done" in err
    assert len(out.read_text().splitlines()) == 3
