"""How many times `validate` and `plan` read a dataset file: validation counts the plan while it
checks the file, and the commands reuse that count instead of reading every row again.

The check's read also tells whether the rows differ in the fields that are whole arguments; then
no two requests can share an id and the duplicate-id walk (a read per matrix combination) is
skipped. Otherwise the walk stays.

Reads are counted by Python's own audit hook ("open" events) in a child process, so nothing of
batchrun is replaced: the commands run as they do for a user. (A named pipe, readable once, would
be a stricter proof, but a dataset must be a regular file, and `plan` and `run` read it again to
expand the plan.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

# Runs each command line in one process and prints, per command, its exit code, its stdout and
# how many times the dataset file was opened.
_CHILD = textwrap.dedent("""
    import contextlib, io, json, os, sys
    from batchrun.cli import main

    dataset = os.path.realpath(sys.argv[1])
    opens = 0

    def hook(event, args):
        global opens
        if event == "open" and isinstance(args[0], str) and os.path.realpath(args[0]) == dataset:
            opens += 1

    sys.addaudithook(hook)
    results = []
    for argv in json.loads(sys.argv[2]):
        opens = 0
        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = main(argv)
        results.append({"code": code, "opens": opens, "out": out.getvalue()})
    print(json.dumps(results))
""")


def _run(tmp_path: Path, dataset: Path, *argvs: list[str]) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(dataset), json.dumps(list(argvs))],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(done.stdout)


def _write(tmp_path: Path, spec: str, rows: int) -> Path:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps({"p": f"a cat {i}"}) + "\n" for i in range(rows)))
    (tmp_path / "spec.yaml").write_text(textwrap.dedent(spec).lstrip("\n"))
    return tmp_path / "rows.jsonl"


ONE_JOB = """
    version: 1
    name: t
    pricing:
      local/echo: {per_request: 0.5}
    jobs:
      - {name: e, endpoint: local/echo, dataset: rows.jsonl, arguments: {prompt: "${{ row.p }}"}}
"""


def test_a_dataset_of_distinct_rows_is_read_once_to_validate(tmp_path: Path) -> None:
    dataset = _write(tmp_path, ONE_JOB, rows=4)
    validate, count, shard, plan, table = _run(
        tmp_path, dataset,
        ["validate", "spec.yaml"],
        ["plan", "spec.yaml", "--count"],
        ["plan", "spec.yaml", "--count", "--shard", "1/1"],
        ["plan", "spec.yaml"],
        ["plan", "spec.yaml", "--format", "table"],
    )
    assert validate == {"code": 0, "opens": 1, "out": "spec.yaml: ok (4 requests in 1 job)\n"}
    assert count == {"code": 0, "opens": 1, "out": (
        "job    endpoint    requests  est. cost\n"
        "e      local/echo         4    $2.0000\n"
        "total                     4    $2.0000\n"
    )}
    # A shard is counted by walking the plan: one read more (it was four more: the duplicate walk,
    # the whole plan's count, the shard's walk and the cost estimate's own walk).
    assert (shard["code"], shard["opens"], shard["out"]) == (0, 2, count["out"])
    assert (plan["code"], plan["opens"], len(str(plan["out"]).splitlines())) == (0, 2, 4)
    assert (table["code"], table["opens"], len(str(table["out"]).splitlines())) == (0, 2, 5)


def test_duplicate_rows_keep_the_walk_that_locates_them(tmp_path: Path) -> None:
    dataset = _write(tmp_path, ONE_JOB, rows=3)
    dataset.write_text(dataset.read_text() + '{"p": "a cat 1", "other": 1}\n')
    (validate,) = _run(tmp_path, dataset, ["validate", "spec.yaml"])
    assert validate["code"] == 2
    assert validate["opens"] == 3  # the check, the walk, and the walk again to the first of the pair


SWEEP = """
    version: 1
    name: sweep
    jobs:
      - {name: a, endpoint: local/echo, dataset: rows.jsonl, arguments: {prompt: "${{ row.p }}", s: "${{ matrix.s }}"},
         matrix: {s: [1, 2]}}
      - {name: b, endpoint: local/echo, dataset: rows.jsonl, arguments: {prompt: "draw ${{ row.p }}"}, path: /b}
      - {name: c, endpoint: local/echo, dataset: ./rows.jsonl, arguments: {prompt: "${{ row.p }}"}, path: /c}
"""


def test_jobs_sharing_a_dataset_check_it_once(tmp_path: Path) -> None:
    """One check read for the three jobs, then the duplicate walk of b only: its prompt is not a
    whole row value, so distinct rows do not make distinct requests by construction. It was 13: a
    check and two counts per job, and a walk per matrix combination of each job (2 + 1 + 1)."""
    dataset = _write(tmp_path, SWEEP, rows=3)
    (validate,) = _run(tmp_path, dataset, ["validate", "spec.yaml"])
    assert validate == {"code": 0, "opens": 2, "out": "spec.yaml: ok (12 requests in 3 jobs: a 6, b 3, c 3)\n"}


def test_a_job_priced_per_unit_is_walked_once_for_its_count_and_cost(tmp_path: Path) -> None:
    """Units come from each request's arguments, so pricing them walks the plan; with a shard that
    one walk also counts the shard (it was a walk to count and another to price)."""
    dataset = _write(tmp_path, ONE_JOB.replace("{per_request: 0.5}", "{per_unit: 0.5, unit_argument: n}")
                     .replace('arguments: {prompt: "${{ row.p }}"}', 'arguments: {prompt: "${{ row.p }}", n: 3}'), rows=4)
    whole, shard = _run(tmp_path, dataset, ["plan", "spec.yaml", "--count"], ["plan", "spec.yaml", "--count", "--shard", "1/1"])
    expected = (
        "job    endpoint    requests  est. cost\n"
        "e      local/echo         4    $6.0000\n"
        "total                     4    $6.0000\n"
    )
    assert whole == {"code": 0, "opens": 2, "out": expected}
    assert shard == {"code": 0, "opens": 2, "out": expected}


def test_a_run_reads_its_dataset_to_validate_and_to_send_only(tmp_path: Path) -> None:
    """`run` on the embedded server: the check and the executor's walk (its plan size is
    validation's count). It was 5: a count twice and the duplicate walk besides."""
    dataset = _write(tmp_path, ONE_JOB.replace("name: t\n", "name: t\n    target: local\n    output: out.jsonl\n"), rows=4)
    (run,) = _run(tmp_path, dataset, ["run", "spec.yaml", "--no-progress"])
    assert (run["code"], run["opens"]) == (0, 2)
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["arguments"]["prompt"] for r in records) == [f"a cat {i}" for i in range(4)]
