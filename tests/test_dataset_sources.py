"""Data in: Parquet datasets (typed columns, streamed by row group) and `dataset: {files: GLOB}`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchrun.api as br
from batchrun.spec import parquet_rows


def _parquet(tmp_path: Path, rows: int = 5, group: int = 2) -> Path:
    path = tmp_path / "rows.parquet"
    table = pa.table({
        "prompt": [f"p{i}" for i in range(rows)], "seed": list(range(rows)), "w": [i / 2 for i in range(rows)],
        "when": [dt.datetime(2026, 1, 1, i, tzinfo=dt.UTC) for i in range(rows)],
        "tags": [["a"] * (i % 3) for i in range(rows)], "blob": [b"\x00"] * rows,
    })
    pq.write_table(table, path, row_group_size=group)
    return path


def _job(dataset: object, arguments: object) -> dict[str, object]:
    return {"version": 1, "name": "d", "target": "local",
            "jobs": [{"name": "j", "endpoint": "local/echo", "mode": "run", "dataset": dataset, "arguments": arguments}]}


def test_parquet_rows_keep_their_types(tmp_path: Path) -> None:
    """Integers stay integers, floats floats, lists lists; timestamps become ISO text; binary is left out."""
    _parquet(tmp_path)
    spec = br.load(_job("rows.parquet", {"prompt": "${{ row.prompt }}", "seed": "${{ row.seed }}",
                                         "w": "${{ row.w }}", "when": "${{ row.when }}", "tags": "${{ row.tags }}"}),
                   base_dir=tmp_path)
    requests = list(spec.plan())
    assert spec.count() == len(requests) == 5
    assert requests[3].arguments == {"prompt": "p3", "seed": 3, "w": 1.5, "when": "2026-01-01T03:00:00+00:00",
                                     "tags": []}
    assert "blob" not in (requests[0].row_values or {})


def test_parquet_is_read_one_row_group_at_a_time(tmp_path: Path) -> None:
    """A file of 3 row groups is read group by group (the footer gives the count without reading rows)."""
    path = _parquet(tmp_path, rows=6, group=2)
    assert pq.ParquetFile(path).num_row_groups == 3 and parquet_rows.count(path) == 6
    rows = parquet_rows.rows(path, ["seed"])
    assert next(rows) == {"seed": 0}  # a generator: the first group is read, not the file


def test_parquet_problems_are_located(tmp_path: Path) -> None:
    """A column that does not exist, or a binary one, is a problem naming the columns."""
    _parquet(tmp_path)
    with pytest.raises(br.SpecError) as exc:
        br.load(_job("rows.parquet", {"a": "${{ row.promt }}", "b": "${{ row.blob }}"}), base_dir=tmp_path)
    problems = [str(p) for p in exc.value.problems]
    assert any("rows.parquet:1:1: $: no column 'promt'" in p and "columns: prompt, seed" in p for p in problems)
    assert any("column 'blob'" in p and "binary" in p for p in problems)


def test_a_parquet_dataset_runs(tmp_path: Path) -> None:
    """The rows' typed values reach the server as they are."""
    _parquet(tmp_path, rows=3)
    result = br.run(br.load(_job("rows.parquet", {"seed": "${{ row.seed }}"}), base_dir=tmp_path),
                    tmp_path / "out.jsonl", progress=False)
    assert result.exit_code == 0
    assert [r["result"]["echo"]["seed"] for r in br.read(result.output)] == [0, 1, 2]


def test_files_glob_gives_one_row_per_file(tmp_path: Path) -> None:
    """`dataset: {files: GLOB}`: a row per file, sorted, with path (relative), name and stem."""
    (tmp_path / "images" / "more").mkdir(parents=True)
    for name in ("b.png", "a.png", "notes.txt", "more/c.png"):
        (tmp_path / "images" / name).write_bytes(b"x")
    spec = br.load(_job({"files": "images/**/*.png"}, {"name": "${{ row.name }}", "stem": "${{ row.stem }}",
                                                       "image_url": {"$file": "${{ row.path }}"}}),
                   base_dir=tmp_path)
    rows = [r.row_values for r in spec.plan()]
    assert rows == [{"path": "images/a.png", "name": "a.png", "stem": "a"},
                    {"path": "images/b.png", "name": "b.png", "stem": "b"},
                    {"path": "images/more/c.png", "name": "c.png", "stem": "c"}]
    folder = br.load(_job({"files": "images"}, {"n": "${{ row.name }}"}), base_dir=tmp_path)
    assert [r.arguments["n"] for r in folder.plan()] == ["a.png", "b.png", "notes.txt"]
    result = br.run(spec, tmp_path / "out.jsonl", progress=False)
    assert result.exit_code == 0
    record = next(iter(br.read(result.output)))
    assert record["result"]["echo"]["image_url"].startswith("data:image/png;base64,")


def test_files_glob_problems(tmp_path: Path) -> None:
    """No match, or a field files rows do not have, is a located problem."""
    with pytest.raises(br.SpecError) as exc:
        br.load(_job({"files": "none/*.png"}, {"x": "${{ row.size }}"}), base_dir=tmp_path)
    problems = [str(p) for p in exc.value.problems]
    assert any(p.startswith("<dict>: $.jobs[0].dataset.files: no file matches 'none/*.png'") for p in problems)
    assert any("rows have path, name and stem, not 'size'" in p for p in problems)


def test_whole_argument_rows(tmp_path: Path) -> None:
    """`arguments: "${{ row }}"`: each row of heterogeneous argument sets is a request body as it is."""
    (tmp_path / "log.jsonl").write_text('{"prompt": "a cat", "seed": 1}\n{"prompt": "a dog", "num_images": 2}\n'
                                        '{"text": "$${{ not a template }}", "nested": {"a": [1, 2]}}\n')
    spec = br.load(_job("log.jsonl", "${{ row }}"), base_dir=tmp_path)
    bodies = [r.arguments for r in spec.plan()]
    assert bodies[:2] == [{"prompt": "a cat", "seed": 1}, {"prompt": "a dog", "num_images": 2}]
    result = br.run(spec, tmp_path / "out.jsonl", progress=False)
    echoed = [r["result"]["echo"] for r in br.read(result.output)]
    assert echoed[:2] == bodies[:2] and echoed[2]["nested"] == {"a": [1, 2]}
    assert echoed[2]["text"] == "$${{ not a template }}"  # row text is data: never a template


def test_whole_argument_column(tmp_path: Path) -> None:
    """`arguments: "${{ row.COLUMN }}"` takes a column holding the object; a row without one is a problem."""
    (tmp_path / "col.jsonl").write_text('{"args": {"a": 1}, "note": "x"}\n{"args": {"b": 2}}\n')
    spec = br.load(_job("col.jsonl", "${{ row.args }}"), base_dir=tmp_path)
    assert [r.arguments for r in spec.plan()] == [{"a": 1}, {"b": 2}]
    (tmp_path / "bad.jsonl").write_text('{"args": {"a": 1}}\n{"args": [1]}\n{"other": 1}\n')
    with pytest.raises(br.SpecError) as exc:
        br.load(_job("bad.jsonl", "${{ row.args }}"), base_dir=tmp_path)
    problems = [str(p) for p in exc.value.problems]
    assert any("row 2 has no field 'args'" in p for p in problems), problems
    with pytest.raises(br.SpecError) as exc:
        br.load(_job([{"args": {"a": 1}}, {"args": [1]}], "${{ row.args }}"))
    assert [str(p) for p in exc.value.problems] == [
        "<dict>: $.jobs[0].arguments: ${{ row.args }} is the whole request body, so it must be an object; row 1 gives a list"]


def test_arguments_string_must_be_a_row_template() -> None:
    """Any other string is a schema problem saying what a string may be."""
    with pytest.raises(br.SpecError) as exc:
        br.load(_job([{"a": 1}], "hello"))
    assert 'or a whole dataset row as the body: "${{ row }}"' in str(exc.value.problems[0])
