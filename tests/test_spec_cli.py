"""`batchrun validate` and `batchrun plan` end to end, and the shipped specs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from batchrun.cli import main
from batchrun.load import load_spec
from batchrun.plan.planner import build_plan

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "specs").glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../schemas/spec.schema.json"


def test_the_three_specs_ship() -> None:
    assert [p.name for p in SHIPPED] == ["flux-schnell-sweep.yaml", "nightly-regression.yaml", "quickstart.yaml"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_specs_are_valid_and_carry_the_modeline(path: Path) -> None:
    warnings: list = []
    spec = load_spec(path, warnings)
    assert warnings == []
    assert path.read_text().splitlines()[0] == MODELINE
    assert (path.parent / MODELINE.split("=", 1)[1]).resolve() == (ROOT / "batchrun/schemas/spec.schema.json").resolve()
    assert len(list(build_plan(spec))) > 0


def test_quickstart_shape() -> None:
    spec = load_spec(ROOT / "specs/quickstart.yaml")
    assert spec.target.kind == "local"
    assert str(spec.output_path()) == "outputs/quickstart.jsonl"
    plan = list(build_plan(spec))
    assert [(r.job.name, r.endpoint, r.mode) for r in plan][-1] == ("echo", "local/echo", "run")
    sweep = [r for r in plan if r.job.name == "sweep"]
    assert 6 <= len(sweep) <= 12
    assert {r.arguments["image_size"] for r in sweep} == {"square", "landscape_4_3"}
    assert all(r.job.with_logs and r.mode == "subscribe" for r in sweep)


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return str(path)


GOOD = """
    version: 1
    name: t
    pricing:
      local/echo: {per_request: 0.01}
      local/image: {per_unit: 0.003, unit_argument: num_images}
    jobs:
      - name: echo
        endpoint: local/echo
        arguments: {x: "${{ matrix.x }}"}
        matrix: {x: [1, 2, 3]}
      - name: img
        endpoint: local/image
        arguments: {n: "${{ matrix.n }}", num_images: "${{ matrix.n }}"}
        matrix: {n: [1, 4]}
      - name: other
        endpoint: local/sleep
"""


def test_validate_ok_and_problems_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, GOOD)
    bad = write(tmp_path, "version: 1\nname: t\njobs: [{name: a, endpoint: x}]\n", "bad.yaml")
    assert main(["validate", good]) == 0
    assert capsys.readouterr().out == f"{good}: ok (6 requests in 3 jobs: echo 3, img 2, other 1)\n"
    assert main(["validate", good, bad]) == 2
    out, err = capsys.readouterr()
    assert out == f"{good}: ok (6 requests in 3 jobs: echo 3, img 2, other 1)\n"
    assert err == (
        f"{bad}:3:28: $.jobs[0].endpoint: 'x' is not an endpoint id: expected owner/alias[/path] such as "
        "fal-ai/flux/schnell\n"
    )


def test_validate_prints_warnings_but_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: t
        jobs: [{name: q, endpoint: local/echo, start_timeout: 60, client_timeout: 30}]
    """)
    assert main(["validate", spec]) == 0
    out, err = capsys.readouterr()
    assert out == f"{spec}: ok (1 request in 1 job)\n"
    assert err.startswith(f"{spec}:3:55: $.jobs[0].start_timeout: warning: start_timeout (60)")


def test_plan_jsonl_is_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD)
    assert main(["plan", spec]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = [r.to_json() for r in build_plan(load_spec(spec))]
    assert lines == expected
    assert [line["index"] for line in lines] == [0, 1, 2, 3, 4, 5]


def test_plan_shards_cover_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD)
    seen = []
    for i in (1, 2, 3):
        assert main(["plan", spec, "--shard", f"{i}/3"]) == 0
        seen += [json.loads(line)["index"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(seen) == [0, 1, 2, 3, 4, 5]


def test_plan_count_with_prices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD)
    assert main(["plan", spec, "--count"]) == 0
    assert capsys.readouterr().out == (
        "job    endpoint     requests  est. cost\n"
        "echo   local/echo          3    $0.0300\n"
        "img    local/image         2    $0.0150\n"
        "other  local/sleep         1   no price\n"
        "total                      6    unknown\n"
    )


def test_plan_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: t
        jobs: [{name: e, endpoint: local/echo, path: /p, arguments: {x: "${{ matrix.x }}"}, matrix: {x: [1, 2]}}]
    """)
    assert main(["plan", spec, "--format", "table"]) == 0
    ids = [r.id for r in build_plan(load_spec(spec))]
    assert capsys.readouterr().out == (
        "index  id                job  endpoint    row  repeat  path  matrix\n"
        f"    0  {ids[0]}  e    local/echo    -       0  /p    x=1\n"
        f"    1  {ids[1]}  e    local/echo    -       0  /p    x=2\n"
    )


@pytest.mark.parametrize("shard", ["0/2", "3/2", "a/b", "1/0"])
def test_plan_bad_shard_is_a_usage_error(tmp_path: Path, shard: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, GOOD)
    assert main(["plan", spec, "--shard", shard]) == 2
    assert capsys.readouterr().err.startswith("batchrun: error: --shard ")


def test_plan_invalid_spec_prints_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path, "version: 1\nname: t\njobs: [{name: a, endpoint: local/echo, mode: fast}]\n")
    assert main(["plan", bad]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{bad}:3:46: $.jobs[0].mode: must be one of run, subscribe, got \"fast\"\n"


def test_validate_names_at_most_eight_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = "".join(f"\n      - {{name: j{i}, endpoint: local/echo, repeat: {i + 1}}}" for i in range(10))
    spec = write(tmp_path, "version: 1\nname: t\njobs:" + jobs + "\n")
    assert main(["validate", spec]) == 0
    assert capsys.readouterr().out == (
        f"{spec}: ok (55 requests in 10 jobs: j0 1, j1 2, j2 3, j3 4, j4 5, j5 6, j6 7, j7 8, and 2 more)\n"
    )


def test_plan_count_says_unknown_when_a_unit_is_not_a_number(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, """
        version: 1
        name: t
        pricing:
          local/image: {per_unit: 0.5, unit_argument: num_images}
        jobs:
          - {name: img, endpoint: local/image, arguments: {num_images: "${{ matrix.n }}"}, matrix: {n: [1, many]}}
    """)
    assert main(["plan", spec, "--count"]) == 0
    assert capsys.readouterr().out == (
        "job    endpoint     requests  est. cost\n"
        "img    local/image         2    unknown\n"
        "total                      2    unknown\n"
    )


SWEEP = """
    version: 1
    name: sweep
    jobs:
      - name: small
        endpoint: local/echo
        arguments: {prompt: "${{ matrix.style }} cat", seed: "${{ matrix.seed }}"}
        matrix: {style: [photo, watercolor], seed: [1, 2, 3]}
      - name: tiny
        endpoint: local/echo
        path: /t
      - name: rows
        endpoint: local/image
        dataset: rows.jsonl
        arguments: {prompt: "${{ row.p }}"}
        repeat: 2
"""


@pytest.mark.parametrize("shard", [None, "2/3"])
def test_plan_limit_and_only_preview_what_run_would_send(
    tmp_path: Path, shard: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`plan --limit N` is the first N planned requests of each job, those of them in the shard:
    exactly the part of the plan `run --limit N` sends; `--only` keeps the named jobs."""
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"p": f"p{i}"}) + "\n" for i in range(50)))
    spec = write(tmp_path, SWEEP)
    assert main(["plan", spec]) == 0
    plan = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first_two = {(w["job"], w["index"]) for job in ("small", "tiny", "rows") for w in [p for p in plan if p["job"] == job][:2]}
    assert sorted(i for _, i in first_two) == [0, 1, 6, 7, 8]
    flags = [] if shard is None else ["--shard", shard]
    assert main(["plan", spec, *flags]) == 0
    whole = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["plan", spec, "--limit", "2", *flags]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert got == [w for w in whole if (w["job"], w["index"]) in first_two]
    assert main(["plan", spec, "--limit", "2", "--only", "tiny,rows", *flags]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == [g for g in got if g["job"] != "small"]
    if shard is None:
        assert main(["plan", spec, "--limit", "1", "--format", "table"]) == 0
        assert [line.split()[:3] for line in capsys.readouterr().out.splitlines()] == [
            ["index", "id", "job"], ["0", got[0]["id"], "small"], ["6", got[2]["id"], "tiny"], ["7", got[3]["id"], "rows"]]
        assert main(["plan", spec, "--count", "--only", "rows"]) == 0
        assert [line.split() for line in capsys.readouterr().out.splitlines()] == [
            ["job", "endpoint", "requests"], ["rows", "local/image", "100"], ["total", "100"]]


@pytest.mark.parametrize("flags", [["--limit", "0"], ["--limit", "two"], ["--limit", "1", "--count"], ["--only", "smal"]])
def test_plan_limit_and_only_usage_errors(tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rows.jsonl").write_text('{"p": "x"}\n')
    spec = write(tmp_path, SWEEP)
    try:
        code = main(["plan", spec, *flags])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == {
        "0": "batchrun plan: error: argument --limit: expected a whole number of at least 1, got '0'",
        "two": "batchrun plan: error: argument --limit: expected a whole number of at least 1, got 'two'",
        "1": "batchrun plan: error: argument --count: not allowed with argument --limit",
        "smal": "batchrun: error: --only: the spec has no job 'smal'; did you mean 'small'? its jobs: small, tiny, rows",
    }[flags[1]]
