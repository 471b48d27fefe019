"""`dataset: {path, types}`: typed columns, converted as rows are read, located where they fail."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.load import load_spec, validate_spec
from batchrun.plan.planner import build_plan, request_id
from batchrun.spec.dataset_types import CellError, RowTypes, csv_cell

ARGS = ('{prompt: "${{ row.prompt }}", seed: "${{ row.seed }}", g: "${{ row.g }}", '
        'hd: "${{ row.hd }}", meta: "${{ row.meta }}"}')
TYPES = "{seed: int, g: float, hd: bool, meta: json}"


def spec(dataset: str, arguments: str = ARGS) -> str:
    Path("spec.yaml").write_text(textwrap.dedent(f"""\
        version: 1
        name: t
        target: local
        jobs:
          - name: j
            endpoint: local/echo
            arguments: {arguments}
            dataset: {dataset}
        """))
    return "spec.yaml"


def problems(path: str) -> list[str]:
    return [str(p) for p in validate_spec(path)[1]]


def planned(path: str) -> list[dict]:
    return [r.arguments for r in build_plan(load_spec(path))]


CSV = 'prompt,seed,g,hd,meta\na cat,7,3.5,true,"{""a"": 1}"\n"two\nlines",-8,2e1,No,null\nx,+9,.5,1,"[1, ""b""]"\n'


def test_csv_columns_are_converted_for_the_plan(here: Path) -> None:
    Path("p.csv").write_text(CSV)
    assert problems(spec(f"{{path: p.csv, types: {TYPES}}}")) == []
    assert planned("spec.yaml") == [
        {"prompt": "a cat", "seed": 7, "g": 3.5, "hd": True, "meta": {"a": 1}},
        {"prompt": "two\nlines", "seed": -8, "g": 20.0, "hd": False, "meta": None},
        {"prompt": "x", "seed": 9, "g": 0.5, "hd": True, "meta": [1, "b"]},
    ]


def test_csv_cells_that_do_not_convert_are_located_at_the_cell(here: Path) -> None:
    Path("p.csv").write_text(
        'prompt,seed,g,hd,meta\n'
        'a cat,7,3.5,true,{}\n'
        '"a dog, running",seven,x,maybe,"{bad"\n'
        '"two\nlines",7.0,inf,,1\n'
        'ok,1_000,nan,2,[]\n'
    )
    assert problems(spec(f"{{path: p.csv, types: {TYPES}}}")) == [
        'p.csv:3:18: $[1].seed: column \'seed\' (int): "seven" is not a whole number',
        'p.csv:3:24: $[1].g: column \'g\' (float): "x" is not a finite number',
        'p.csv:3:26: $[1].hd: column \'hd\' (bool): "maybe" is not true/false, yes/no or 1/0',
        "p.csv:3:32: $[1].meta: column 'meta' (json): \"{bad\" is not JSON: Expecting property name enclosed in "
        "double quotes at character 2",
        # a quoted field over two lines: the cells are on the record's second line
        'p.csv:5:8: $[2].seed: column \'seed\' (int): "7.0" is not a whole number',
        'p.csv:5:12: $[2].g: column \'g\' (float): "inf" is not a finite number',
        'p.csv:5:16: $[2].hd: column \'hd\' (bool): "" is not true/false, yes/no or 1/0',
        'p.csv:6:4: $[3].seed: column \'seed\' (int): "1_000" is not a whole number',
        'p.csv:6:10: $[3].g: column \'g\' (float): "nan" is not a finite number',
        'p.csv:6:14: $[3].hd: column \'hd\' (bool): "2" is not true/false, yes/no or 1/0',
    ]


def test_without_types_csv_values_stay_strings_and_ids_do_not_change(here: Path) -> None:
    Path("p.csv").write_text("prompt,seed\na cat,7\n")
    path = spec("p.csv", '{prompt: "${{ row.prompt }}", seed: "${{ row.seed }}"}')
    (request,) = build_plan(load_spec(path))
    assert request.arguments == {"prompt": "a cat", "seed": "7"}
    # the id batchrun gave this request before types existed
    assert request.id == request_id("j", "local/echo", "", {"prompt": "a cat", "seed": "7"}, 0) == "cfdf8f366cb6c73f"
    spec("{path: p.csv}", '{prompt: "${{ row.prompt }}", seed: "${{ row.seed }}"}')  # the mapping form, no types
    assert [r.id for r in build_plan(load_spec(path))] == ["cfdf8f366cb6c73f"]
    spec("{path: p.csv, types: {seed: int}}", '{prompt: "${{ row.prompt }}", seed: "${{ row.seed }}"}')
    assert [r.id for r in build_plan(load_spec(path))] == [request_id("j", "local/echo", "", {"prompt": "a cat", "seed": 7}, 0)]


def test_types_must_name_columns_with_did_you_mean(here: Path) -> None:
    Path("p.csv").write_text("prompt,seed\na cat,7\n")
    Path("p.jsonl").write_text('{"prompt": "a", "seed": 1}\n{"prompt": "b", "guidance": 2}\n')
    args = '{prompt: "${{ row.prompt }}"}'
    assert problems(spec("{path: p.csv, types: {sede: int, zzz: bool}}", args)) == [
        "spec.yaml:8:36: $.jobs[0].dataset.types.sede: no column 'sede' in p.csv; did you mean 'seed'?",
        "spec.yaml:8:47: $.jobs[0].dataset.types.zzz: no column 'zzz' in p.csv; columns: prompt, seed",
    ]
    # JSONL: a name no row has (a field some rows lack is fine: the template checks see to it)
    assert problems(spec("{path: p.jsonl, types: {guidance: float, seeds: int}}", args)) == [
        "spec.yaml:8:55: $.jobs[0].dataset.types.seeds: no column 'seeds' in p.jsonl; did you mean 'seed'?",
    ]


def test_jsonl_and_yaml_rows_convert_strings_and_keep_typed_values(here: Path) -> None:
    Path("p.jsonl").write_text(
        '{"prompt": "a", "seed": "7", "g": 2, "hd": "yes", "meta": "{\\"k\\": [1]}"}\n'
        '{"prompt": "b", "seed": 8, "g": 1.5, "hd": false, "meta": {"k": 2}}\n'
    )
    assert problems(spec(f"{{path: p.jsonl, types: {TYPES}}}")) == []
    expected = [
        {"prompt": "a", "seed": 7, "g": 2, "hd": True, "meta": {"k": [1]}},  # a JSON number stays as written
        {"prompt": "b", "seed": 8, "g": 1.5, "hd": False, "meta": {"k": 2}},
    ]
    assert planned("spec.yaml") == expected
    Path("p.yaml").write_text('- {prompt: a, seed: "7", g: 2, hd: "yes", meta: "{\\"k\\": [1]}"}\n'
                              "- {prompt: b, seed: 8, g: 1.5, hd: false, meta: {k: 2}}\n")
    spec(f"{{path: p.yaml, types: {TYPES}}}")
    assert planned("spec.yaml") == expected


def test_jsonl_and_yaml_values_of_another_type_are_errors(here: Path) -> None:
    Path("p.jsonl").write_text('{"prompt": "a", "seed": 7.5, "g": true, "hd": 2, "meta": 1}\n')
    assert problems(spec(f"{{path: p.jsonl, types: {TYPES}}}")) == [
        "p.jsonl:1:17: $[0].seed: column 'seed' (int): 7.5 is not a whole number",
        "p.jsonl:1:30: $[0].g: column 'g' (float): true is not a finite number",
        "p.jsonl:1:41: $[0].hd: column 'hd' (bool): 2 is not true/false, yes/no or 1/0",
    ]
    Path("p.yaml").write_text("- prompt: a\n  seed: [1]\n  g: 1\n  hd: true\n  meta: 1\n")
    assert problems(spec(f"{{path: p.yaml, types: {TYPES}}}")) == [
        "p.yaml:2:9: $[0].seed: column 'seed' (int): [1] is not a whole number",
    ]


def test_bad_types_shapes_are_schema_errors(here: Path) -> None:
    Path("p.csv").write_text("prompt,seed\na cat,7\n")
    args = '{prompt: "${{ row.prompt }}"}'
    assert problems(spec("{path: p.csv, types: {seed: integer}, typo: 1}", args)) == [
        "spec.yaml:8:42: $.jobs[0].dataset.types.seed: must be one of int, float, bool, json, got \"integer\"; "
        "did you mean 'int'?",
        "spec.yaml:8:52: $.jobs[0].dataset.typo: unknown key 'typo'; did you mean 'types'?",
    ]
    assert problems(spec("{types: {seed: int}}", args)) == [
        "spec.yaml:8:14: $.jobs[0].dataset: missing required key 'path'",
    ]
    assert problems(spec("{path: missing.csv, types: {seed: int}}", args)) == [
        f"spec.yaml:8:21: $.jobs[0].dataset.path: dataset file not found: missing.csv (looked for {Path.cwd()}/missing.csv)",
    ]


def test_row_types_units() -> None:
    types = RowTypes({"n": "int", "b": "bool"})
    assert types.apply({"n": " 12 ", "b": "TRUE", "other": "7"}) == {"n": 12, "b": True, "other": "7"}
    assert types.apply({"b": 0}) == {"b": False}
    with pytest.raises(CellError) as caught:
        types.apply({"n": "x" * 60})
    assert (str(caught.value), caught.value.column) == (
        "column 'n' (int): \"" + "x" * 36 + "... is not a whole number", "n")
    assert csv_cell('a,"b,\nc",d', 2) == (1, 4)
    assert csv_cell('a,"say ""x, y""",z', 2) == (0, 18)
    assert csv_cell("only", 0) == (0, 1)


@given(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans())
def test_written_values_read_back_as_themselves(n: int, f: float, b: bool) -> None:
    """What a CSV writer prints (str(), and JSON for json columns) converts back to the value."""
    types = RowTypes({"n": "int", "f": "float", "b": "bool", "j": "json"})
    value = {"n": n, "f": f, "b": b, "j": [n, f, {"b": b}]}
    row = {"n": str(n), "f": repr(f), "b": str(b), "j": json.dumps(value["j"])}
    assert types.apply(row) == value
    assert types.apply(dict(value)) == value  # already typed: kept
