"""Templates: typed single expressions, interpolation, escaping, env left for send time."""

from __future__ import annotations

from typing import Any

import pytest

from batchrun.spec.template import (
    Context,
    Ref,
    TemplateError,
    compile_value,
    env_names,
    parse,
    resolve_env,
)


def render(value: Any, matrix: dict[str, Any] | None = None, row: dict[str, Any] | None = None, repeat: int = 0) -> Any:
    compiled, _, errors = compile_value(value)
    assert errors == []
    return compiled.render(Context(matrix or {}, row, repeat))


def test_exactly_one_expression_keeps_the_type() -> None:
    assert render({"seed": "${{ matrix.seed }}", "obj": "${{row.o}}"}, {"seed": 7}, {"o": {"k": [1]}}) == {
        "seed": 7,
        "obj": {"k": [1]},
    }


def test_interpolation_uses_str_for_numbers_and_json_for_the_rest() -> None:
    out = render("s=${{ matrix.s }} n=${{ matrix.n }} b=${{ matrix.b }} l=${{ matrix.l }} r=${{ repeat }}",
                 {"s": "x", "n": 1.5, "b": True, "l": [1, "a"]}, repeat=2)
    assert out == 's=x n=1.5 b=true l=[1, "a"] r=2'


def test_escape_produces_a_literal_and_stays_escaped_in_plan_text() -> None:
    """`$${{` is a literal `${{`; plan text keeps it escaped, resolve_env undoes it."""
    planned = render("cost $${{ not a template }} for ${{ matrix.x }}", {"x": 3})
    assert planned == "cost $${{ not a template }} for 3"
    assert resolve_env(planned, {}) == "cost ${{ not a template }} for 3"


def test_env_is_left_for_send_time_and_resolved_by_resolve_env() -> None:
    planned = render({"auth": "Bearer ${{ env.TOKEN }}", "k": "${{ env.TOKEN }}", "m": "${{ matrix.a }}-${{ env.TOKEN }}"}, {"a": 1})
    assert planned == {"auth": "Bearer ${{ env.TOKEN }}", "k": "${{ env.TOKEN }}", "m": "1-${{ env.TOKEN }}"}
    assert env_names(planned) == {"TOKEN"}
    assert resolve_env(planned, {"TOKEN": "s3cret"}) == {"auth": "Bearer s3cret", "k": "s3cret", "m": "1-s3cret"}


def test_resolve_env_names_the_missing_variable() -> None:
    with pytest.raises(TemplateError) as exc:
        resolve_env(["${{ env.NOPE_VAR }}"], {})
    assert str(exc.value) == "environment variable NOPE_VAR is not set (the spec uses ${{ env.NOPE_VAR }})"


def test_data_cannot_smuggle_an_env_reference() -> None:
    """A dataset value that looks like an env template stays literal text after resolve_env."""
    planned = render({"p": "${{ row.p }}", "q": "x ${{ row.p }}"}, row={"p": "${{ env.FAL_KEY }}"})
    assert planned == {"p": "$${{ env.FAL_KEY }}", "q": "x $${{ env.FAL_KEY }}"}
    assert env_names(planned) == set()
    assert resolve_env(planned, {"FAL_KEY": "secret"}) == {"p": "${{ env.FAL_KEY }}", "q": "x ${{ env.FAL_KEY }}"}


def test_missing_include_key_renders_null_or_empty() -> None:
    """GitHub renders a key that an include added to other combinations only as empty."""
    assert render({"a": "${{ matrix.color }}", "b": "c=${{ matrix.color }}"}, {"x": 1}) == {"a": None, "b": "c=null"}


def test_file_objects_resolve_against_the_spec_folder() -> None:
    compiled, _, _ = compile_value({"img": {"$file": "imgs/${{ row.f }}"}, "s": {"$file": "../a.png"}}, file_base="/specs/x")
    assert compiled.render(Context({}, {"f": "cat.png"}, 0)) == {
        "img": {"$file": "/specs/x/imgs/cat.png"},
        "s": {"$file": "/specs/a.png"},
    }


def test_parse_reports_refs_and_errors_with_relative_paths() -> None:
    _, refs, errors = compile_value({"a": ["${{ matrix.x }}", "${{ bogus }}"], "b": "${{ row.f"})
    assert refs == [(("a", 0), Ref("matrix", "x"))]
    assert errors == [
        (("a", 1), "invalid template expression '${{ bogus }}'; expected matrix.NAME, row.FIELD, env.NAME or repeat"),
        (("b",), "unterminated '${{' (no closing '}}'); write '$${{' for a literal '${{'"),
    ]


def test_parse_splits_literals_and_refs() -> None:
    assert parse("a ${{matrix.x}} $${{ b") == ("a ", Ref("matrix", "x"), " ${{ b")
