"""`batchrun diff` streams: it keeps a digest of each result (resultdiff.fingerprint) and re-reads
records by offset for detail. Equal digests must always mean "no change"; the newest record of an
id must be the one re-read, wherever its line is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.report.diff import diff_files
from batchrun.report.diff_text import render
from batchrun.report.resultdiff import compare_results, fingerprint
from batchrun.spec.resultpath import parse_path

# Leaves chosen to hit every rule of the walker: URLs (compared by hash), 1 vs 1.0 vs true,
# NaN (never equal to itself), integers beyond 64 bits, strings that look like the digest's
# stand-ins, and keys that are volatile.
LEAVES = st.sampled_from([
    0, 1, 1.0, -0.0, True, False, None, "a", "", "1", float("nan"), float("inf"), 2**70, 2**70 + 1,
    "https://cdn/1.png", "https://cdn/2.png", "http://cdn/1.png", "\x00media:", "\x00media:h1", "\x00ignored",
    "\x00\x00ignored",
])
KEYS = st.sampled_from(["url", "seed", "images", "timings", "request_id", "debug", "width", "\x00"])
JSON = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                    max_leaves=12)
ARTIFACTS = st.lists(
    st.fixed_dictionaries({"url": st.sampled_from(["https://cdn/1.png", "https://cdn/2.png", "http://cdn/1.png"]),
                           "sha256": st.sampled_from(["h1", "h2", None, ""])}),
    max_size=3,
)
IGNORES = st.sampled_from([(), ("debug",), ("images[*].url",), ("*.seed", "images[0]")])


def _near(value: Any, draw: st.DrawFn) -> Any:
    """`value` with some leaves redrawn and some keys added or dropped: mostly close to it, so that
    equal digests of different results (the case that matters) come up often."""
    if isinstance(value, dict):
        out = {key: _near(item, draw) for key, item in value.items() if draw(st.integers(0, 4)) != 0}
        if draw(st.integers(0, 3)) == 0:
            out[draw(KEYS)] = draw(LEAVES)
        return out
    if isinstance(value, list):
        return [_near(item, draw) for item in value]
    return draw(LEAVES) if draw(st.integers(0, 3)) == 0 else value


@st.composite
def results(draw: st.DrawFn) -> tuple[Any, Any]:
    """Two results: unrelated, or the second near the first."""
    first = draw(JSON)
    return first, (_near(first, draw) if draw(st.booleans()) else draw(JSON))


@pytest.mark.slow  # 500 generated pairs
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=results(), art_a=ARTIFACTS, art_b=ARTIFACTS, ignore=IGNORES)
def test_equal_digests_mean_no_change(pair: tuple[Any, Any], art_a: list[dict[str, Any]],
                                      art_b: list[dict[str, Any]], ignore: tuple[str, ...]) -> None:
    a, b = pair
    patterns = [parse_path(p, wildcards=True) for p in ignore]
    base, new = {"result": a, "artifacts": art_a}, {"result": b, "artifacts": art_b}
    digest_a, digest_b = fingerprint(base, ignore=patterns), fingerprint(new, ignore=patterns)
    if digest_a is not None and digest_a == digest_b:
        assert compare_results(base, new, ignore=patterns) == []


@pytest.mark.parametrize(
    ("base", "new"),
    [
        pytest.param({"images": [{"url": "https://a/1"}], "timings": {"x": 1}}, {"images": [{"url": "https://b/1"}]},
                     id="volatile-only"),
        pytest.param({"a": 1, "b": [2]}, {"b": [2], "a": 1}, id="key-order"),
        pytest.param({"debug": 1, "seed": 2}, {"debug": 9, "seed": 2}, id="ignored"),
    ],
)
def test_unchanged_results_need_no_second_read(base: Any, new: Any) -> None:
    """The digest is what makes diff cheap: results that only differ where diff does not look digest alike."""
    ignore = [parse_path("debug")]
    assert fingerprint({"result": base}, ignore=ignore) == fingerprint({"result": new}, ignore=ignore) is not None


def test_nan_is_always_compared() -> None:
    """NaN is never equal to itself, so no digest can vouch for a result holding one."""
    record = {"result": {"score": float("nan")}}
    assert fingerprint(record) is None
    assert [str(c) for c in compare_results(record, record)] == ["score: NaN -> NaN"]


def _record(rid: str, index: int, *, seed: int, finished: str, status: str = "ok",
            checks: list[dict[str, Any]] | None = None) -> str:
    record = {
        "id": rid, "index": index, "job": "j", "status": status, "matrix": {"seed": seed},
        "result": {"seed": seed, "image": {"url": f"https://cdn/{rid}/{seed}/{finished}"}} if status == "ok" else None,
        "error": None if status == "ok" else {"type": "boom", "status_code": 500, "detail": f"seed {seed}",
                                              "retryable": False},
        "expectations": checks or [],
        "timing": {"started_at": "2025-01-01T12:00:00Z", "finished_at": finished, "latency_s": 1.0, "queue_s": None},
    }
    return json.dumps(record) + "\n"


def test_the_newest_record_is_the_one_read_again(tmp_path: Path) -> None:
    """Superseded lines before and after the newest one: the detail (and the request's label) comes
    from the newest line."""
    passed = [{"passed": True, "message": "fine", "check": {"path": "seed"}}]
    failed = [{"passed": False, "message": f"seed: got {n}", "check": {"path": "seed"}} for n in (7, 8)]
    base = tmp_path / "base.jsonl"
    base.write_text(
        _record("a", 0, seed=1, finished="2025-01-01T12:00:09Z", checks=passed)
        + _record("b", 1, seed=1, finished="2025-01-01T12:00:01Z", checks=passed)
        + _record("c", 2, seed=1, finished="2025-01-01T12:00:01Z")
    )
    new = tmp_path / "new.jsonl"
    new.write_text(
        # a: the newest line is the first (it finished last); the later line is an older attempt.
        _record("a", 0, seed=2, finished="2025-01-01T13:00:09Z", checks=failed[:1])
        + _record("a", 0, seed=3, finished="2025-01-01T13:00:01Z", checks=passed)
        # b: an older failure, then the newest line with a changed result.
        + _record("b", 1, seed=5, finished="2025-01-01T13:00:00Z", status="error")
        + _record("b", 1, seed=4, finished="2025-01-01T13:00:02Z", checks=failed[1:])
        # c: an ok line, then a newer error.
        + _record("c", 2, seed=1, finished="2025-01-01T13:00:00Z")
        + _record("c", 2, seed=6, finished="2025-01-01T13:00:03Z", status="error")
    )
    diff = diff_files(base, new)
    assert json.loads(render(diff, "json")) == {
        "base": {"file": str(base), "requests": 3},
        "new": {"file": str(new), "requests": 3},
        "regressed": True,
        "shared_ids": 3,
        "warning": None,
        "numbers": {"base": {"requests": 3, "ok": 3, "ok_rate": 1.0, "latency_s": {"p50": 1.0, "p95": 1.0}},
                    "new": {"requests": 3, "ok": 2, "ok_rate": 0.666667, "latency_s": {"p50": 1.0, "p95": 1.0}}},
        "counts": {"newly_failing": 1, "newly_passing": 0, "missing": 0, "added": 0, "results_changed": 2,
                   "visually_same": 0, "expectation_regressions": 2, "latency_regressions": 0,
                   "served_by_changed": 0},
        "newly_failing": [{"id": "c", "job": "j", "request": "seed=6", "detail": "boom: seed 6",
                           "error": {"type": "boom", "status_code": 500, "detail": "seed 6", "retryable": False}}],
        "newly_passing": [],
        "missing": [],
        "added": [],
        "results_changed": [
            {"id": "a", "job": "j", "request": "seed=2", "changes": [{"path": "seed", "base": 1, "new": 2}]},
            {"id": "b", "job": "j", "request": "seed=4", "changes": [{"path": "seed", "base": 1, "new": 4}]},
        ],
        "visually_same": [],
        "expectation_regressions": [
            {"id": "a", "job": "j", "request": "seed=2", "detail": "seed: got 7", "check": {"path": "seed"}},
            {"id": "b", "job": "j", "request": "seed=4", "detail": "seed: got 8", "check": {"path": "seed"}},
        ],
        "latency_regressions": [],
        "served_by_changed": [],
    }


def test_crlf_lines_are_read_again_too(tmp_path: Path) -> None:
    base, new = tmp_path / "base.jsonl", tmp_path / "new.jsonl"
    base.write_bytes(_record("a", 0, seed=1, finished="2025-01-01T12:00:00Z").replace("\n", "\r\n").encode())
    new.write_bytes(_record("a", 0, seed=2, finished="2025-01-01T12:00:00Z").replace("\n", "\r\n").encode())
    assert [str(c) for e in diff_files(base, new).categories["results_changed"] for c in e.changes] == ["seed: 1 -> 2"]
