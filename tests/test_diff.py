"""`batchrun diff`: every category on a crafted pair, volatile fields, --ignore, media hashes, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchrun.cli import main
from batchrun.report.diff import compare_results
from batchrun.report.resultdiff import fingerprint
from batchrun.spec.resultpath import parse_path

DATA = Path(__file__).parent / "data" / "records"

# base.jsonl -> new.jsonl, one id per case:
#   id-10 only volatile fields differ (URLs, request_id, result timings, latency x1.4)  -> nothing
#   id-11 ok -> error (newly failing)       id-12 error -> ok (newly passing)
#   id-13 only in base (missing)            id-14 only in new (added)
#   id-15 width, seed and a second image    id-16 an expectation passed, now fails
#   id-17 latency 1.0 s -> 2.0 s            id-18 latency 0.02 s -> 0.06 s (under the 0.05 s floor)
#   id-19 new URL, same sha256 -> nothing   id-20 same URL, new sha256 -> media changed
#   id-21 images[1].nsfw false -> true
EXPECTED_TEXT = """\
batchrun diff: base.jsonl (11 requests) -> new.jsonl (11 requests)
ok 90.9% (10/11) -> 90.9% (10/11) · latency of ok requests p50 1.000 s -> 1.000 s, p95 1.000 s -> 2.000 s

newly failing (1)
  id-11  txt2img  style=anime seed=1  internal_server_error: boom

newly passing (1)
  id-12  txt2img  style=sketch seed=2

missing (1)
  id-13  txt2img  style=photo seed=3

added (1)
  id-14  upscale  style=anime seed=4

results changed (3)
  id-15  txt2img  style=sketch seed=5
      images[0].width: 512 -> 768
      images[1]: (absent) -> {"url": "https://cdn.example/new/15b.png", "width": 768}
      seed: 7 -> 8
  id-20  txt2img  style=anime seed=10
      images[0].url: sha256 aaaaaaaaaaaa -> sha256 bbbbbbbbbbbb
  id-21  txt2img  style=sketch seed=11
      images[1].nsfw: false -> true

expectation regressions (1)
  id-16  txt2img  style=photo seed=6  timings.inference: expected <= 1, got 1.3

latency regressions (1)
  id-17  txt2img  style=anime seed=7  1.000 s -> 2.000 s (x2.00)

regressed: 1 newly failing, 1 newly passing, 1 missing, 1 added, 3 results changed, 1 expectation regression, 1 latency regression
"""

EXPECTED_MARKDOWN = """\
## batchrun diff

`base.jsonl` (11 requests) → `new.jsonl` (11 requests): **regressed: 1 newly failing, 1 newly passing, 1 missing, 1 added, 3 results changed, 1 expectation regression, 1 latency regression**

| whole run | base | new |
| --- | --- | --- |
| ok | 90.9% (10/11) | 90.9% (10/11) |
| latency p50 (ok requests) | 1.000 s | 1.000 s |
| latency p95 (ok requests) | 1.000 s | 2.000 s |

| category | count |
| --- | --- |
| newly failing | 1 |
| newly passing | 1 |
| missing | 1 |
| added | 1 |
| results changed | 3 |
| visually the same | 0 |
| expectation regressions | 1 |
| latency regressions | 1 |
| served by another endpoint | 0 |

### Newly failing (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-11` | txt2img | style=anime seed=1 | internal_server_error: boom |

### Newly passing (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-12` | txt2img | style=sketch seed=2 |  |

### Missing (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-13` | txt2img | style=photo seed=3 |  |

### Added (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-14` | upscale | style=anime seed=4 |  |

### Results changed (3)

| id | job | request | change |
| --- | --- | --- | --- |
| `id-15` | txt2img | style=sketch seed=5 | images[0].width: 512 -> 768 |
| `id-15` | txt2img | style=sketch seed=5 | images[1]: (absent) -> {"url": "https://cdn.example/new/15b.png", "width": 768} |
| `id-15` | txt2img | style=sketch seed=5 | seed: 7 -> 8 |
| `id-20` | txt2img | style=anime seed=10 | images[0].url: sha256 aaaaaaaaaaaa -> sha256 bbbbbbbbbbbb |
| `id-21` | txt2img | style=sketch seed=11 | images[1].nsfw: false -> true |

### Expectation regressions (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-16` | txt2img | style=photo seed=6 | timings.inference: expected <= 1, got 1.3 |

### Latency regressions (1)

| id | job | request | detail |
| --- | --- | --- | --- |
| `id-17` | txt2img | style=anime seed=7 | 1.000 s -> 2.000 s (x2.00) |
"""


@pytest.fixture
def in_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(DATA)
    return DATA


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["diff", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def ids(data: dict[str, Any], key: str) -> list[str]:
    return [entry["id"] for entry in data[key]]


def test_text_diff_names_every_category(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The text diff, in full; a regression exits 1."""
    assert main(["diff", "base.jsonl", "new.jsonl"]) == 1
    assert capsys.readouterr().out == EXPECTED_TEXT


def test_markdown_diff(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The markdown diff, in full, ready for a step summary."""
    assert main(["diff", "base.jsonl", "new.jsonl", "--format", "markdown"]) == 1
    assert capsys.readouterr().out == EXPECTED_MARKDOWN


def test_json_diff(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The json diff lists ids per category with machine-readable values."""
    code, data = run_json(capsys, "base.jsonl", "new.jsonl")
    assert code == 1
    assert data["regressed"] is True
    assert data["base"] == {"file": "base.jsonl", "requests": 11}
    assert (data["shared_ids"], data["warning"]) == (10, None)
    assert data["numbers"] == {
        "base": {"requests": 11, "ok": 10, "ok_rate": 0.909091, "latency_s": {"p50": 1.0, "p95": 1.0}},
        "new": {"requests": 11, "ok": 10, "ok_rate": 0.909091, "latency_s": {"p50": 1.0, "p95": 2.0}},
    }
    assert data["counts"] == {
        "newly_failing": 1,
        "newly_passing": 1,
        "missing": 1,
        "added": 1,
        "results_changed": 3,
        "visually_same": 0,
        "expectation_regressions": 1,
        "latency_regressions": 1,
        "served_by_changed": 0,
    }
    assert data["newly_failing"] == [
        {
            "id": "id-11",
            "job": "txt2img",
            "request": "style=anime seed=1",
            "detail": "internal_server_error: boom",
            "error": {"type": "internal_server_error", "status_code": 500, "detail": "boom", "retryable": False},
        }
    ]
    assert (ids(data, "newly_passing"), ids(data, "missing"), ids(data, "added")) == (["id-12"], ["id-13"], ["id-14"])
    assert data["results_changed"][0] == {
        "id": "id-15",
        "job": "txt2img",
        "request": "sketch seed=5".replace("sketch", "style=sketch"),
        "changes": [
            {"path": "images[0].width", "base": 512, "new": 768},
            {"path": "images[1]", "new": {"url": "https://cdn.example/new/15b.png", "width": 768}},
            {"path": "seed", "base": 7, "new": 8},
        ],
    }
    assert data["results_changed"][1]["changes"] == [
        {"path": "images[0].url", "base_sha256": "a" * 64, "new_sha256": "b" * 64}
    ]
    assert data["expectation_regressions"] == [
        {
            "id": "id-16",
            "job": "txt2img",
            "request": "style=photo seed=6",
            "detail": "timings.inference: expected <= 1, got 1.3",
            "check": {"path": "timings.inference", "max": 1},
        }
    ]
    assert data["latency_regressions"] == [
        {"id": "id-17", "job": "txt2img", "request": "style=anime seed=7", "detail": "1.000 s -> 2.000 s (x2.00)",
         "base_s": 1.0, "new_s": 2.0}
    ]


def test_volatile_fields_and_same_content_are_not_changes(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """URLs, request ids, result timings, small latency moves and re-uploaded identical media are ignored."""
    _, data = run_json(capsys, "base.jsonl", "new.jsonl")
    mentioned = {entry["id"] for key in data["counts"] for entry in data[key]}
    assert {"id-10", "id-18", "id-19"}.isdisjoint(mentioned)


def test_ignore_paths(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--ignore drops fields (with wildcards for indices) and whole subtrees."""
    _, data = run_json(capsys, "base.jsonl", "new.jsonl", "--ignore", "images[*].nsfw", "seed")
    assert ids(data, "results_changed") == ["id-15", "id-20"]
    assert [c["path"] for c in data["results_changed"][0]["changes"]] == ["images[0].width", "images[1]"]
    _, data = run_json(capsys, "base.jsonl", "new.jsonl", "--ignore", "images", "--ignore", "seed")
    assert data["results_changed"] == []
    assert data["regressed"] is True  # the other categories still regress


def test_latency_ratio(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--latency-ratio sets how much slower counts: at 2.5 a doubling is not a regression."""
    _, data = run_json(capsys, "base.jsonl", "new.jsonl", "--latency-ratio", "2.5")
    assert data["latency_regressions"] == []
    _, data = run_json(capsys, "base.jsonl", "new.jsonl", "--latency-ratio", "1.1")
    assert ids(data, "latency_regressions") == ["id-10", "id-17"]


def _lines(name: str, *wanted: str) -> str:
    return "".join(line for line in (DATA / name).read_text().splitlines(keepends=True)
                   if json.loads(line)["id"] in wanted)


def test_only_improvements_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Newly passing and added requests are not regressions: exit 0."""
    (tmp_path / "base.jsonl").write_text(_lines("base.jsonl", "id-12", "id-10"))
    (tmp_path / "new.jsonl").write_text(_lines("new.jsonl", "id-12", "id-14", "id-10"))
    assert main(["diff", str(tmp_path / "base.jsonl"), str(tmp_path / "new.jsonl")]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\nno regressions: 1 newly passing, 1 added\n")


def test_identical_files(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file compared with itself has no differences."""
    assert main(["diff", "new.jsonl", "new.jsonl"]) == 0
    assert capsys.readouterr().out == (
        "batchrun diff: new.jsonl (11 requests) -> new.jsonl (11 requests)\n"
        "ok 90.9% (10/11) -> 90.9% (10/11) · latency of ok requests p50 1.000 s -> 1.000 s, p95 2.000 s -> 2.000 s\n"
        "\nno differences\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ignore", "a["], "batchrun: error: --ignore: invalid path 'a[': expected [N] at position 1\n"),
        (["--latency-ratio", "0"], "batchrun: error: --latency-ratio must be a positive number, got 0.0\n"),
    ],
)
def test_bad_options(in_data: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    """Bad --ignore paths and ratios are usage errors (exit 2)."""
    assert main(["diff", "base.jsonl", "new.jsonl", *args]) == 2
    assert capsys.readouterr().err == message


def test_missing_input(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable side is exit 2, named."""
    assert main(["diff", "base.jsonl", "gone.jsonl"]) == 2
    assert capsys.readouterr().err == "batchrun: error: gone.jsonl: cannot read: No such file or directory\n"


def record(result: Any, artifacts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"result": result, "artifacts": artifacts or []}


@pytest.mark.parametrize(
    ("base", "new", "changes"),
    [
        pytest.param({"a": ["https://x/1", "http://x/2"]}, {"a": ["https://y/1", "http://y/2"]}, [], id="urls-in-lists"),
        pytest.param({"video": {"url": "data:,1"}}, {"video": {"url": "data:,2"}}, [], id="url-key"),
        pytest.param({"request_id": "a", "timings": {"x": 1}, "timing": 1}, {"request_id": "b", "timings": {}}, [],
                     id="volatile-keys"),
        pytest.param({"seed": 1}, {"seed": 2}, ["seed: 1 -> 2"], id="seed-is-meaningful"),
        pytest.param({"n": 1}, {"n": 1.0}, [], id="int-float-equal"),
        pytest.param({"n": 1}, {"n": "1"}, ['n: 1 -> "1"'], id="type-change"),
        pytest.param({"n": True}, {"n": 1}, ["n: true -> 1"], id="bool-is-not-number"),
        pytest.param({"l": [1, 2, 3]}, {"l": [1]}, ["l[1]: 2 -> (absent)", "l[2]: 3 -> (absent)"], id="list-shrinks"),
        pytest.param({"a": 1}, {"b": 1}, ["a: 1 -> (absent)", "b: (absent) -> 1"], id="keys-renamed"),
        pytest.param({"u": "https://x/1"}, {"u": None}, ['u: "https://x/1" -> null'], id="url-gone"),
        pytest.param({"x": {"a": 1}}, {"x": [1]}, ['x: {"a": 1} -> [1]'], id="object-to-list"),
        pytest.param(None, {"a": 1}, ['$: null -> {"a": 1}'], id="whole-result"),
    ],
)
def test_compare_results(base: Any, new: Any, changes: list[str]) -> None:
    """Field-level comparison: volatile fields out, JSON types respected, every change located."""
    assert [str(c) for c in compare_results(record(base), record(new))] == changes


def test_media_compared_by_hash_only_when_both_sides_have_it() -> None:
    """A hash on one side only cannot say anything: the URL stays volatile."""
    art = [{"url": "https://x/1", "path": "f", "sha256": "c" * 64, "bytes": 1, "content_type": "image/png"}]
    failed = [{"url": "https://x/1", "path": None, "sha256": None, "bytes": None, "content_type": None,
               "error": "HTTP 404"}]
    same_url = {"image": {"url": "https://x/1"}}
    assert compare_results(record(same_url, art), record(same_url)) == []
    assert compare_results(record(same_url, art), record(same_url, failed)) == []
    other = [{**art[0], "sha256": "d" * 64}]
    assert [str(c) for c in compare_results(record(same_url, art), record(same_url, other))] == [
        "image.url: sha256 cccccccccccc -> sha256 dddddddddddd"
    ]


def test_ignore_names_a_media_url(in_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--ignore images[*].url drops id-20's image-hash change: the user asked to ignore that path
    (the comparison used to check ignore paths everywhere but at a `url` key)."""
    _, data = run_json(capsys, "base.jsonl", "new.jsonl", "--ignore", "images[*].nsfw", "seed", "images[*].url")
    assert ids(data, "results_changed") == ["id-15"]
    art = [{"url": "https://x/1", "path": "f", "sha256": "c" * 64, "bytes": 1, "content_type": "image/png"}]
    other = [{**art[0], "sha256": "d" * 64}]
    result = {"image": {"url": "https://x/1"}, "also": {"url": "https://x/1"}}
    ignore = [parse_path("image.url")]
    assert [str(c) for c in compare_results(record(result, art), record(result, other), ignore=ignore)] == [
        "also.url: sha256 cccccccccccc -> sha256 dddddddddddd"
    ]
    only_image = [parse_path("*.url", wildcards=True)]
    assert compare_results(record(result, art), record(result, other), ignore=only_image) == []
    assert fingerprint(record(result, art), ignore=only_image) == fingerprint(record(result, other), ignore=only_image)


def test_ignore_patterns_with_key_wildcards() -> None:
    """`*` stands for any key in an --ignore pattern."""
    changes = compare_results(
        record({"a": {"debug": 1}, "b": {"debug": 1, "keep": 1}}),
        record({"a": {"debug": 2}, "b": {"debug": 2, "keep": 2}}),
        ignore=[parse_path("*.debug", wildcards=True)],
    )
    assert [str(c) for c in changes] == ["b.keep: 1 -> 2"]


def test_readme_shows_the_real_diff() -> None:
    """The README's diff example is exactly what the command prints."""
    from test_report import readme_example

    assert readme_example("cd tests/data/records && batchrun diff base.jsonl new.jsonl") == EXPECTED_TEXT


def test_nightly_workflow_commands_parse() -> None:
    """Every batchrun command in docs/nightly-regression.yml is valid for our CLI."""
    import shlex

    import yaml

    from batchrun.cli import build_parser

    workflow = yaml.safe_load((Path(__file__).parent.parent / "docs" / "nightly-regression.yml").read_text())
    commands = [
        step["run"].replace('"$SPEC"', "spec.yaml").replace('"$OUT"', "out.jsonl")
        for step in workflow["jobs"]["regression"]["steps"]
        if step.get("run", "").startswith("batchrun ")
    ]
    assert [c.split()[1] for c in commands] == ["run", "report", "diff"]
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command.split(">>")[0])[1:])
