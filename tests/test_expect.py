"""Expectations on results, and the path language they (and `diff --ignore`) use."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.spec.expect import check_expectations, check_problems
from batchrun.spec.resultpath import (
    ANY_INDEX,
    ANY_KEY,
    MISSING,
    PathError,
    format_path,
    get_path,
    matches_prefix,
    parse_path,
)

RESULT = {
    "images": [
        {"url": "https://cdn.example/a.png", "width": 768, "height": 512, "content_type": "image/png"},
        {"url": "https://cdn.example/b.png", "width": 512, "height": 512, "content_type": "image/png"},
    ],
    "seed": 7,
    "prompt": "a cat in a hat",
    "has_nsfw_concepts": [False, False],
    "nothing": None,
}


def one(check: dict[str, Any], result: dict[str, Any] | None = RESULT, latency: float | None = 1.5) -> tuple[bool, str]:
    [outcome] = check_expectations([check], result, latency)
    assert outcome["check"] == check
    return outcome["passed"], outcome["message"]


@pytest.mark.parametrize(
    ("check", "passed", "message"),
    [
        pytest.param({"path": "images[0].url", "exists": True}, True, "images[0].url: exists", id="exists"),
        pytest.param({"path": "nothing", "exists": True}, True, "nothing: exists", id="null-exists"),
        pytest.param({"path": "images[2].url", "exists": True}, False, "images[2].url: missing", id="exists-fail"),
        pytest.param({"path": "error", "exists": False}, True, "error: absent", id="absent"),
        pytest.param(
            {"path": "seed", "exists": False}, False, "seed: expected to be absent, got 7", id="absent-fail"
        ),
        pytest.param({"path": "seed", "equals": 7}, True, "seed: equals 7", id="equals"),
        pytest.param({"path": "seed", "equals": 7.0}, True, "seed: equals 7", id="equals-int-float"),
        pytest.param(
            {"path": "images[0].width", "equals": 512},
            False,
            "images[0].width: expected 512, got 768",
            id="equals-fail",
        ),
        pytest.param(
            {"path": "has_nsfw_concepts[0]", "equals": 0},
            False,
            "has_nsfw_concepts[0]: expected 0, got false",
            id="bool-is-not-number",
        ),
        pytest.param({"path": "images[-1].width", "equals": 512}, True, "images[-1].width: equals 512", id="negative"),
        pytest.param({"path": "seed", "equals": 8}, False, "seed: expected 8, got 7", id="seed"),
        pytest.param({"path": "missing.key", "equals": 8}, False, "missing.key: missing", id="equals-missing"),
        pytest.param({"path": "prompt", "matches": "cat"}, True, 'prompt: matches "cat"', id="matches"),
        pytest.param(
            {"path": "prompt", "matches": "^dog"},
            False,
            'prompt: expected a match for "^dog", got "a cat in a hat"',
            id="matches-fail",
        ),
        pytest.param(
            {"path": "seed", "matches": "7"},
            False,
            'seed: expected a string matching "7", got 7',
            id="matches-not-string",
        ),
        pytest.param(
            {"path": "images[0].width", "min": 512, "max": 1024},
            True,
            "images[0].width: 768 is between 512 and 1024",
            id="range",
        ),
        pytest.param(
            {"path": "images[0].width", "max": 512},
            False,
            "images[0].width: expected <= 512, got 768",
            id="max-fail",
        ),
        pytest.param(
            {"path": "images[1].width", "min": 768},
            False,
            "images[1].width: expected >= 768, got 512",
            id="min-fail",
        ),
        pytest.param(
            {"path": "prompt", "min": 1, "max": 2},
            False,
            'prompt: expected a number between 1 and 2, got "a cat in a hat"',
            id="range-not-number",
        ),
        pytest.param({"latency_s": {"max": 30}}, True, "latency_s: 1.5 is <= 30", id="latency"),
        pytest.param(
            {"latency_s": {"min": 0.1, "max": 1}},
            False,
            "latency_s: expected between 0.1 and 1, got 1.5",
            id="latency-fail",
        ),
        pytest.param(
            {"schema": {"type": "object", "required": ["images", "seed"]}}, True, "schema: valid", id="schema"
        ),
        pytest.param(
            {
                "schema": {
                    "type": "object",
                    "properties": {
                        "images": {"type": "array", "items": {"properties": {"width": {"const": 512}}}},
                        "seed": {"type": "string"},
                    },
                }
            },
            False,
            "schema: $.images[0].width: 512 was expected (and 1 more)",
            id="schema-fail",
        ),
    ],
)
def test_each_check_kind(check: dict[str, Any], passed: bool, message: str) -> None:
    """Each check kind passes and fails with an exact, readable message."""
    assert one(check) == (passed, message)


def test_failed_request_has_every_path_missing() -> None:
    """A failed request (result None) fails path checks as missing, and latency None is missing."""
    assert one({"path": "seed", "equals": 7}, result=None) == (False, "seed: missing")
    assert one({"path": "seed", "exists": False}, result=None) == (True, "seed: absent")
    assert one({"latency_s": {"max": 3}}, latency=None) == (False, "latency_s: missing")
    assert one({"schema": {"type": "object"}}, result=None) == (
        False,
        "schema: $: None is not of type 'object'",
    )


@pytest.mark.parametrize(
    ("check", "message"),
    [
        pytest.param({"equals": 1}, "invalid check: a check needs 'path' (with exists, equals, matches or min/max), "
                     "'latency_s' or 'schema'", id="no-path"),
        pytest.param({"path": "seed"}, "invalid check: a path check needs exactly one of exists, equals, matches, "
                     "min/max", id="no-kind"),
        pytest.param({"path": "seed", "equals": 1, "min": 0},
                     "invalid check: a path check needs exactly one of exists, equals, matches, min/max; "
                     "got equals, min/max", id="two-kinds"),
        pytest.param({"path": "seed[", "exists": True},
                     "invalid check: invalid path 'seed[': expected [N] at position 4", id="bad-path"),
        pytest.param({"path": "seed", "exists": "yes"}, 'invalid check: exists must be true or false, got "yes"',
                     id="exists-not-bool"),
        pytest.param({"path": "seed", "matches": "("},
                     'invalid check: invalid regular expression "(": missing ), unterminated subpattern at '
                     "position 0", id="bad-regex"),
        pytest.param({"path": "seed", "min": 5, "max": 1}, "invalid check: min 5 is greater than max 1",
                     id="min-gt-max"),
        pytest.param({"path": "seed", "equals": 7, "eq": 7}, "invalid check: unknown key(s) eq", id="unknown-key"),
        pytest.param({"latency_s": 3}, "invalid check: latency_s must be a mapping with min and/or max, got 3",
                     id="latency-not-mapping"),
        pytest.param({"schema": {"type": "nope"}},
                     "invalid check: invalid JSON Schema: 'nope' is not valid under any of the given schemas",
                     id="bad-schema"),
        pytest.param("seed", 'invalid check: a check must be a mapping, got "seed"', id="not-mapping"),
    ],
)
def test_malformed_checks_fail_with_a_message(check: Any, message: str) -> None:
    """A malformed check is a failed expectation that says what is wrong, never an exception."""
    [outcome] = check_expectations([check], RESULT, 1.0)
    assert (outcome["passed"], outcome["message"]) == (False, message)
    assert check_problems(check) == [message.removeprefix("invalid check: ")]


def test_results_keep_check_order() -> None:
    """One outcome per check, in the order given."""
    checks = [{"path": "seed", "equals": 7}, {"path": "seed", "equals": 8}, {"latency_s": {"max": 1}}]
    assert [o["passed"] for o in check_expectations(checks, RESULT, 2.0)] == [True, False, False]


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("seed", ("seed",)),
        ("images[0].url", ("images", 0, "url")),
        ("images[-1]", ("images", -1)),
        ("[2][3]", (2, 3)),
        ('["a.b"].c', ("a.b", "c")),
        ('x[""]', ("x", "")),
        ("a b.c", ("a b", "c")),
    ],
)
def test_parse_path(text: str, parts: tuple[Any, ...]) -> None:
    """Dotted keys, indices (negative too) and quoted keys parse, and format back to the same text."""
    assert parse_path(text) == parts
    assert format_path(parts) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty path"),
        ("a..b", "invalid path 'a..b': expected a key at position 2"),
        ("a[x]", "invalid path 'a[x]': expected [N] at position 1"),
        ("a]", "invalid path 'a]': expected '.' or '[' at position 1"),
        ('a["b]', "invalid path 'a[\"b]': unterminated quoted key at position 1"),
        ("a[*]", "invalid path 'a[*]': [*] is only allowed in patterns"),
    ],
)
def test_bad_paths_are_located(text: str, message: str) -> None:
    """A path that does not parse says where."""
    with pytest.raises(PathError) as exc:
        parse_path(text)
    assert str(exc.value) == message


def test_patterns_match_subtrees_and_wildcards() -> None:
    """`[*]` matches any index, `*` any key, and a pattern ignores everything below it."""
    pattern = parse_path("images[*].timings", wildcards=True)
    assert pattern == ("images", ANY_INDEX, "timings")
    assert matches_prefix(pattern, ("images", 3, "timings", "inference"))
    assert not matches_prefix(pattern, ("images", "x", "timings"))
    assert not matches_prefix(pattern, ("images", 3))
    assert matches_prefix(parse_path("*.seed", wildcards=True), ("meta", "seed"))
    assert parse_path("*.seed", wildcards=True) == (ANY_KEY, "seed")
    assert format_path((ANY_KEY, "seed", ANY_INDEX)) == "*.seed[*]"


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
keys = st.text(max_size=6)
json_tree = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


def _all_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = [(prefix, value)]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _all_paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _all_paths(child, (*prefix, i))
            found += _all_paths(child, (*prefix, i - len(value)))
    return found


@given(json_tree)
def test_every_generated_path_finds_its_value(tree: Any) -> None:
    """For any nested structure, formatting a path to a node and parsing it back finds that node."""
    for parts, value in _all_paths({"root": tree}):
        if not parts:
            continue
        text = format_path(parts)
        assert parse_path(text) == parts
        found = get_path({"root": tree}, parse_path(text))
        assert found is not MISSING
        assert found == value
