"""Datasets: rows from JSONL, CSV, YAML and JSON files, checked with the file's own line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchrun.spec.dataset import RowSource, check

DATA = Path(__file__).parent / "data" / "spec"


def lines(path: Path, fields: dict[str, str] | None = None) -> list[str]:
    report = check(path, path.name, fields or {})
    return [str(p) for p in report.problems]


@pytest.mark.parametrize("name", ["prompts.jsonl", "prompts.csv", "prompts.yaml"])
def test_good_files_have_no_problems_and_stream_rows(name: str) -> None:
    path = DATA / name
    report = check(path, name, {"prompt": "$.x"})
    assert (report.rows, report.problems) == (2, [])
    rows = list(RowSource(path))
    assert [r["prompt"] for r in rows] == ["a cat", "a dog, running" if name.endswith("csv") else "a dog"]
    assert RowSource(path).count() == 2


def test_csv_values_stay_strings() -> None:
    assert list(RowSource(DATA / "prompts.csv"))[0] == {"prompt": "a cat", "size": "square"}


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[{"p": 1},\n {"q": 2}]\n')
    assert lines(path, {"p": "$.jobs[0].arguments.p"}) == [
        "rows.json:2:2: $[1]: row 1 has no field 'p' (used by $.jobs[0].arguments.p)"
    ]
    path.write_text('[{"p": 1},\n {"q": 2]\n')
    assert lines(path) == ["rows.json:2:9: $: invalid JSON: Expecting ',' delimiter"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.jsonl", b"\n\n", ["empty.jsonl:1:1: $: dataset has no rows"]),
        ("rows.txt", b"x", ["rows.txt:1:1: $: unsupported dataset format '.txt'; use .jsonl, .csv, .parquet, .yaml, .yml or .json"]),
        ("bin.jsonl", b'{"a": 1}\n\xff\xfe', ["bin.jsonl:2:1: $: not UTF-8 text (byte 0xff)"]),
        ("dup.csv", b"a,a\n1,2\n", ["dup.csv:1:1: $: duplicate column 'a' in the header row"]),
        ("scalar.yaml", b"just text\n", ["scalar.yaml:1:1: $: a dataset must be a list of objects, not a string"]),
        ("bad.yaml", b"- [1,\n", ["bad.yaml:2:1: $: YAML: while parsing a flow node; expected the node content, but found '<stream end>'"]),
    ],
)
def test_malformed_files(tmp_path: Path, name: str, content: bytes, expected: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert lines(path) == expected


def test_problems_are_capped(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("[1]\n" * 50)
    report = check(path, "many.jsonl", {})
    assert len(report.problems) == 20
    assert report.more == 30
    assert str(report.problems[-1]) == "many.jsonl:20:1: $[19]: a row must be a JSON object, not a list"
