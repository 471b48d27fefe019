"""Matrix expansion follows GitHub Actions' documented include/exclude semantics exactly."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from batchrun.plan.matrix import count, expand


def test_github_docs_fruit_animal_include_example() -> None:
    """The include example from GitHub's docs yields exactly the six documented combinations."""
    matrix = {"fruit": ["apple", "pear"], "animal": ["cat", "dog"]}
    include = [
        {"color": "green"},
        {"color": "pink", "animal": "cat"},
        {"fruit": "apple", "shape": "circle"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert list(expand(matrix, include)) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]
    assert count(matrix, include) == 6


def test_github_docs_exclude_example_is_a_partial_match() -> None:
    """GitHub's exclude example: 12 combinations minus 1 full and 2 partial matches = 9."""
    matrix = {"os": ["macos-latest", "windows-latest"], "version": [12, 14, 16], "environment": ["staging", "production"]}
    exclude = [
        {"os": "macos-latest", "version": 12, "environment": "production"},
        {"os": "windows-latest", "version": 16},
    ]
    combos = list(expand(matrix, exclude=exclude))
    assert len(combos) == 9 == count(matrix, exclude=exclude)
    assert {"os": "macos-latest", "version": 12, "environment": "production"} not in combos
    assert [c for c in combos if c["os"] == "windows-latest" and c["version"] == 16] == []


def test_github_docs_expanding_example_adds_a_key_to_one_combination() -> None:
    """include {os: windows-latest, node: 16, npm: 6} adds npm to that one combination only."""
    combos = list(expand({"os": ["windows-latest", "ubuntu-latest"], "node": [14, 16]},
                         [{"os": "windows-latest", "node": 16, "npm": 6}]))
    assert combos == [
        {"os": "windows-latest", "node": 14},
        {"os": "windows-latest", "node": 16, "npm": 6},
        {"os": "ubuntu-latest", "node": 14},
        {"os": "ubuntu-latest", "node": 16},
    ]


def test_include_only_matrix_yields_each_entry() -> None:
    """GitHub: a matrix with only include runs one job per entry."""
    include = [{"site": "production", "datacenter": "site-a"}, {"site": "staging", "datacenter": "site-b"}]
    assert list(expand({}, include)) == include
    assert count({}, include) == 2


def test_no_matrix_is_one_empty_combination() -> None:
    assert list(expand({})) == [{}]
    assert count({}) == 1


def test_include_never_overwrites_original_values_and_can_re_add_excluded() -> None:
    """Exclude runs first, so an include matching only excluded combinations appends a new one."""
    combos = list(expand({"a": [1, 2]}, include=[{"a": 1, "b": "x"}], exclude=[{"a": 1}]))
    assert combos == [{"a": 2}, {"a": 1, "b": "x"}]


def test_product_order_is_written_order_last_key_fastest() -> None:
    assert list(expand({"x": [1, 2], "y": ["a", "b"]})) == [
        {"x": 1, "y": "a"}, {"x": 1, "y": "b"}, {"x": 2, "y": "a"}, {"x": 2, "y": "b"},
    ]


def reference(matrix: dict[str, list[Any]], include: list[dict[str, Any]], exclude: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An independent, eager transcription of GitHub's documented rules."""
    if not matrix:
        return [dict(e) for e in include] or [{}]
    combos = [dict(zip(matrix, values, strict=True)) for values in itertools.product(*matrix.values())]
    combos = [c for c in combos if not any(all(c[k] == v for k, v in e.items()) for e in exclude)]
    originals = [dict(c) for c in combos]
    appended = []
    for entry in include:
        merged = False
        for combo, original in zip(combos, originals, strict=True):
            if all(original[k] == v for k, v in entry.items() if k in original):
                combo.update(entry)
                merged = True
        if not merged:
            appended.append(dict(entry))
    return combos + appended


KEYS = st.sampled_from(["a", "b", "c", "d"])
VALUES = st.integers(0, 3)
MATRICES = st.dictionaries(st.sampled_from(["a", "b", "c"]), st.lists(VALUES, min_size=1, max_size=3, unique=True), max_size=3)


@st.composite
def matrix_cases(draw: st.DrawFn) -> tuple[dict[str, list[int]], list[dict[str, int]], list[dict[str, int]]]:
    matrix = draw(MATRICES)
    include = draw(st.lists(st.dictionaries(KEYS, VALUES, min_size=1, max_size=3), max_size=4))
    exclude_keys = st.sampled_from(sorted(matrix)) if matrix else st.nothing()
    exclude = draw(st.lists(st.dictionaries(exclude_keys, VALUES, min_size=1, max_size=2), max_size=3)) if matrix else []
    return matrix, include, exclude


@settings(max_examples=300, deadline=None)
@given(matrix_cases())
def test_expand_matches_the_reference_and_count(case: tuple[Any, Any, Any]) -> None:
    """Expansion equals an independent implementation; count = product - excluded + unmatched includes."""
    matrix, include, exclude = case
    expected = reference(matrix, include, exclude)
    assert list(expand(matrix, include, exclude)) == expected
    assert count(matrix, include, exclude) == len(expected)
