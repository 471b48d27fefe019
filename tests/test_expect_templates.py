"""Templates in `expect:`: rendered per request by the argument templates' rules, validated (located)
like argument templates, and `${{ env.X }}` refused."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.load import load_spec, validate_spec
from batchrun.plan.planner import build_plan
from batchrun.spec.expect import check_problems
from batchrun.spec.template import is_template, mentions_template, resolve_env, unescape
from batchrun.toolkit.expectations import Expectations


def write(text: str, name: str = "spec.yaml") -> str:
    Path(name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return name


def rendered(text: str) -> list[list[Any]]:
    """Each planned request's rendered checks, in plan order."""
    spec = load_spec(write(text))
    expectations = Expectations()
    return [expectations.checks(request) for request in build_plan(spec)]


def test_matrix_row_and_repeat_render_with_their_types(here: Path) -> None:
    got = rendered("""
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            matrix: {seed: [7]}
            dataset: [{want: positive, box: {w: 2}, n: 3}]
            repeat: 2
            arguments: {}
            expect:
              - {path: seed, equals: "${{ matrix.seed }}"}
              - {path: label, equals: "${{ row.want }}"}
              - {path: box, equals: "${{ row.box }}"}
              - {path: n, min: "${{ row.n }}", max: 10}
              - {path: tag, equals: "s${{ matrix.seed }}-r${{ repeat }}"}
              - {path: "out.${{ row.want }}", exists: true}
    """)
    assert got == [
        [{"path": "seed", "equals": 7}, {"path": "label", "equals": "positive"},
         {"path": "box", "equals": {"w": 2}}, {"path": "n", "min": 3, "max": 10},
         {"path": "tag", "equals": f"s7-r{repeat}"}, {"path": "out.positive", "exists": True}]
        for repeat in (0, 1)
    ]


def test_escapes_are_literal_and_row_values_are_never_templates(here: Path) -> None:
    got = rendered("""
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            dataset: [{want: "${{ env.HOME }}"}]
            expect:
              - {path: a, equals: "${{ row.want }}"}
              - {path: b, equals: "costs $${{ x }}"}
              - {path: c, equals: "${{ row.want }} and $${{ row.want }}"}
    """)
    assert got == [[
        {"path": "a", "equals": "${{ env.HOME }}"},
        {"path": "b", "equals": "costs ${{ x }}"},
        {"path": "c", "equals": "${{ env.HOME }} and ${{ row.want }}"},
    ]]


def test_a_job_without_templates_uses_its_checks_as_written(here: Path) -> None:
    spec = load_spec(write("""
        version: 1
        name: t
        jobs:
          - {name: j, endpoint: local/echo, expect: [{path: a, equals: 1}]}
    """))
    [request] = build_plan(spec)
    assert Expectations().checks(request) is spec.jobs[0].expect


def test_a_rendered_check_that_is_malformed_fails_with_its_reason(here: Path) -> None:
    spec = load_spec(write("""
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            dataset: [{low: "ten", p: "a[", ok: "yes"}]
            expect:
              - {path: n, min: "${{ row.low }}"}
              - {path: s, matches: "${{ row.p }}"}
              - {path: n, exists: "${{ row.ok }}"}
    """))
    [request] = build_plan(spec)
    got = Expectations().evaluate(request, {"n": 3, "s": "a"}, 0.1)
    assert [(o["passed"], o["message"]) for o in got] == [
        (False, 'invalid check: min must be a number, got "ten"'),
        (False, 'invalid check: invalid regular expression "a[": unterminated character set at position 1'),
        (False, 'invalid check: exists must be true or false, got "yes"'),
    ]


@pytest.mark.parametrize(
    ("check", "problems"),
    [
        pytest.param({"path": "${{ matrix.f }}", "exists": True}, [], id="path"),
        pytest.param({"path": "a", "exists": "${{ row.x }}"}, [], id="exists"),
        pytest.param({"path": "a", "matches": "^${{ row.x }}["}, [], id="matches"),
        pytest.param({"path": "a", "min": "${{ row.lo }}", "max": "${{ row.hi }}"}, [], id="bounds"),
        pytest.param({"latency_s": {"max": "${{ matrix.slo }}"}}, [], id="latency"),
        pytest.param({"schema": {"type": "${{ row.type }}"}}, [], id="schema"),
        pytest.param({"path": "a", "min": "low"}, ['min must be a number, got "low"'], id="not-a-template"),
        pytest.param({"path": "a", "exists": "${{ env.X }}"}, ['exists must be true or false, got "${{ env.X }}"'],
                     id="env-is-no-value"),
        pytest.param({"path": "a", "min": 5, "max": "${{ row.hi }}"}, [], id="one-bound-templated"),
        pytest.param({"path": "a", "min": 5, "max": 1}, ["min 5 is greater than max 1"], id="still-checked"),
    ],
)
def test_validate_time_shape_checks_wait_for_templated_values(check: dict[str, Any], problems: list[str]) -> None:
    assert check_problems(check, templates=True) == problems


def test_run_time_shape_checks_take_template_text_literally() -> None:
    # Rendered checks have no templates left: text that looks like one (from a row) is a value.
    assert check_problems({"path": "a", "min": "${{ row.lo }}"}) == ['min must be a number, got "${{ row.lo }}"']


def test_template_helpers() -> None:
    assert unescape({"a": ["x $${{ y", "${{ env.K }}", "${{ bad"], "b": 1}) == {"a": ["x ${{ y", "${{ env.K }}", "${{ bad"], "b": 1}
    assert mentions_template({"a": [1, "$${{"]}) and not mentions_template({"a": [1, "${ {"]})
    assert is_template("x ${{ row.a }}") and is_template("${{ repeat }}")
    assert not is_template("${{ env.A }}") and not is_template("$${{ row.a }}") and not is_template("${{ nope }}")


BAD = """
    version: 1
    name: t
    target: local
    jobs:
      - name: j
        endpoint: local/echo
        matrix: {seed: [1]}
        dataset: rows.jsonl
        arguments: {text: "${{ row.text }}"}
        expect:
          - {path: label, equals: "${{ row.wnat }}"}
          - {path: seed, equals: "${{ matrix.sed }}"}
          - {path: seed, equals: "${{ env.HOME }}"}
          - {path: seed, min: "abc"}
          - {path: seed, equals: "${{ matrix.seed"}
      - name: k
        endpoint: local/echo
        expect: [{path: a, equals: "${{ row.a }}"}]
"""


def test_bad_references_in_expect_are_located_spec_errors(here: Path) -> None:
    Path("rows.jsonl").write_text('{"text": "a"}\n{"text": "b", "wnat": "x"}\n')
    spec, problems = validate_spec(write(BAD))
    assert spec is None
    assert [str(p) for p in problems] == [
        "spec.yaml:12:30: $.jobs[0].expect[1].equals: unknown matrix key 'sed' in ${{ matrix.sed }}; did you mean 'seed'?",
        "spec.yaml:13:30: $.jobs[0].expect[2].equals: ${{ env.HOME }}: env templates are not allowed in expect: "
        "an expected value is shown in failure messages and stored in records, so a secret would leak",
        'spec.yaml:14:27: $.jobs[0].expect[3].min: min must be a number, got "abc"',
        "spec.yaml:15:30: $.jobs[0].expect[4].equals: unterminated '${{' (no closing '}}'); write '$${{' for a literal '${{'",
        "spec.yaml:18:32: $.jobs[1].expect[0].equals: ${{ row.a }} needs a dataset, but job 'k' has none",
        "rows.jsonl:1:1: $[0]: row 0 has no field 'wnat' (used by $.jobs[0].expect[0].equals)",
    ]


def test_defaults_expect_is_checked_per_job(here: Path) -> None:
    _, problems = validate_spec(write("""
        version: 1
        name: t
        defaults:
          expect: [{path: seed, equals: "${{ matrix.seed }}"}]
        jobs:
          - {name: a, endpoint: local/echo, matrix: {seed: [1]}}
          - {name: b, endpoint: local/echo}
    """))
    assert [str(p) for p in problems] == [
        "spec.yaml:4:33: $.defaults.expect[0].equals: unknown matrix key 'seed' in ${{ matrix.seed }}: "
        "job 'b' has no matrix (job 'b')",
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(alphabet="ab${} .", max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet="ab", max_size=2), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_JSON)
def test_a_check_renders_to_exactly_what_the_same_argument_template_sends(here: Path, value: Any) -> None:
    templates = ["${{ row.v }}", "x ${{ row.v }} $${{ y", "${{ repeat }}-${{ row.v }}"]
    spec = load_spec(write(f"""
        version: 1
        name: t
        jobs:
          - name: j
            endpoint: local/echo
            dataset: [{json.dumps({"v": value})}]
            arguments: {json.dumps({f"a{i}": t for i, t in enumerate(templates)})}
            expect: {json.dumps([{"path": f"a{i}", "equals": t} for i, t in enumerate(templates)])}
    """))
    [request] = build_plan(spec)
    sent = resolve_env(request.arguments, {})
    assert [c["equals"] for c in Expectations().checks(request)] == [sent[f"a{i}"] for i in range(3)]
