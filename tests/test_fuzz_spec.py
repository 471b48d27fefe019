"""Property-based fuzzing of specs and datasets: whatever the input, `batchrun validate` answers
exit 0, or exit 2 with problems located in the file (file:line:col), never a traceback.

Inputs: random text; valid specs mutated at the text level (cut, insert, duplicate and swap lines,
re-indent, random bytes); random structures dumped as YAML, biased toward the spec's own keys and
template syntax; dataset files with broken rows, wrong encodings and huge lines. A few hundred
cases in well under a minute (hypothesis' database is off so CI runs are reproducible per seed).
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.cli import main
from batchrun.errors import Problem
from batchrun.load import validate_spec

ROOT = Path(__file__).parent.parent
SEEDS = [p.read_text() for p in sorted((ROOT / "specs").glob("*.yaml"))] + [
    """\
version: 1
name: seed
concurrency: 4
defaults: {timeout: 30, retries: {max_attempts: 3, initial_delay: 0}}
jobs:
  - name: sweep
    endpoint: local/image
    matrix: {seed: [1, 2], size: [square, portrait_4_3]}
    exclude: [{seed: 2, size: square}]
    include: [{seed: 3, size: landscape_4_3}]
    arguments: {prompt: "a ${{ matrix.size }} cat", seed: "${{ matrix.seed }}", key: "${{ env.HOME }}"}
  - name: rows
    endpoint: local/echo
    mode: run
    dataset: [{p: a}, {p: b}]
    repeat: 2
    headers: {X-Team: "${{ env.USER }}"}
    arguments: {prompt: "${{ row.p }}", n: "${{ repeat }}"}
"""
]
SPEC_KEYS = ["version", "name", "description", "target", "output", "concurrency", "limits", "rate_limit",
             "defaults", "jobs", "gates", "budget", "pricing"]
JOB_KEYS = ["name", "endpoint", "path", "mode", "arguments", "matrix", "include", "exclude", "dataset", "repeat",
            "concurrency", "timeout", "start_timeout", "client_timeout", "hint", "priority", "headers", "with_logs",
            "retries", "rate_limit", "expect", "download"]
TEMPLATES = ["${{ matrix.a }}", "${{ row.x }}", "${{ env.HOME }}", "${{ repeat }}", "${{", "}}", "$${{ x }}",
             "${{ matrix. }}", "${{ env }}", "${{ nope.x }}", "${{ matrix.a }}${{ row.b }}"]
LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): ")

CASES: collections.Counter[str] = collections.Counter()  # fuzz campaign (test function) -> cases tried


def _tried() -> None:
    """Count one case for the test running now (xdist may run the campaigns in other workers)."""
    CASES[os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split("[")[0].split(" ")[0]] += 1

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(TEMPLATES), st.sampled_from(["run", "subscribe", "local", "fal", "local/echo"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(JOB_KEYS + SPEC_KEYS), st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=12,
)
jobs = st.lists(st.dictionaries(st.sampled_from(JOB_KEYS), values, max_size=8), max_size=3)
specs = st.builds(
    lambda base, extra, jobs_: {**base, **extra, "jobs": jobs_},
    st.fixed_dictionaries({}, optional={"version": st.sampled_from([1, 2, "1", None]),
                                        "name": st.sampled_from(["ok", "bad name", "", "x" * 300])}),
    st.dictionaries(st.sampled_from(SPEC_KEYS[2:-4]), values, max_size=4),
    st.one_of(jobs, values),
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A seed spec with a few text-level mutations."""
    lines = draw(st.sampled_from(SEEDS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "insert", "cut", "tab", "token"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:]
        elif op == "insert":
            k = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:k] + draw(st.text(min_size=1, max_size=5)) + lines[i][k:]
        elif op == "cut":
            k = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:k]
        elif op == "tab":
            lines[i] = "\t" + lines[i]
        else:
            k = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:k] + draw(st.sampled_from(TEMPLATES + [":", "- ", "{", "[", "&a", "*a", "!!python/object:os.system", "? "])) + lines[i][k:]
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


def _dump(value: Any) -> str:
    try:
        return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return repr(value)


def check(text: str | bytes) -> None:
    """validate_spec and `batchrun validate` on this text: exit 0, or 2 with located problems."""
    _tried()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
        spec, problems = validate_spec(path)  # must not raise
        assert all(isinstance(p, Problem) for p in problems)
        errors = [p for p in problems if p.severity == "error"]
        if spec is None:
            assert errors, "an invalid spec must come with at least one error"
        for p in problems:
            assert p.line >= 1 and p.col >= 1 and p.message
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(["validate", str(path)])
        assert code in (0, 2), err.getvalue()
        assert "Traceback" not in err.getvalue()
        if code == 2:
            lines = [line for line in err.getvalue().splitlines() if line and "warning:" not in line]
            assert lines
            for line in lines:
                located = LOCATED.match(line)
                assert located, line
                assert located["file"] == str(path) or located["file"].startswith(tmp), line
        else:
            assert out.getvalue().startswith(f"{path}: ok (")


FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.slow  # a fuzz campaign
@FUZZ
@given(st.text(max_size=200))
def test_random_text(text: str) -> None:
    check(text)


@pytest.mark.slow  # a fuzz campaign
@FUZZ
@given(mutated())
def test_mutated_specs(text: str) -> None:
    check(text)


@pytest.mark.slow  # a fuzz campaign
@FUZZ
@given(specs)
def test_random_structures(value: Any) -> None:
    check(_dump(value))


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    check(data)


# ---- datasets -----------------------------------------------------------------------------------

DATASET_SPEC = """\
version: 1
name: ds
jobs:
  - name: rows
    endpoint: local/echo
    dataset: {name}
    arguments: {{prompt: "${{{{ row.prompt }}}}"}}
"""


def _validate_dataset(tmp_path: Path, name: str, data: bytes) -> tuple[int, str]:
    (tmp_path / name).write_bytes(data)
    spec = tmp_path / "spec.yaml"
    spec.write_text(DATASET_SPEC.format(name=name))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["validate", str(spec)])
    return code, err.getvalue()


GOOD = '{"prompt": "a"}\n'
HUGE = "x" * 5_000_000


@pytest.mark.parametrize(
    ("name", "data", "where", "message"),
    [
        pytest.param("d.jsonl", (GOOD + '{"prompt": "b"\n' + GOOD).encode(), ":2:", "invalid JSON", id="jsonl-broken-row"),
        pytest.param("d.jsonl", (GOOD + "[1, 2]\n").encode(), ":2:", "a row must be a JSON object", id="jsonl-not-object"),
        pytest.param("d.jsonl", (GOOD + '{"other": 1}\n').encode(), ":2:", "row 1 has no field 'prompt'", id="jsonl-missing-field"),
        pytest.param("d.jsonl", (GOOD + '{"prompt": "caf\xe9"}\n').encode("latin-1"), ":2:", "not UTF-8", id="jsonl-latin-1"),
        pytest.param("d.jsonl", GOOD.encode("utf-16"), ":1:", "", id="jsonl-utf-16"),
        pytest.param("d.jsonl", bytes(range(256)) * 4, ":1:", "", id="jsonl-binary"),
        pytest.param("d.jsonl", (GOOD + '{"prompt": "' + HUGE + '"\n').encode(), ":2:", "invalid JSON", id="jsonl-huge-broken-line"),
        pytest.param("d.csv", b"prompt,n\na,1\nb,2,3\n", ":3:", "row has 3 fields but the header has 2", id="csv-ragged"),
        pytest.param("d.csv", "prompt\ncaf\xe9\n".encode("latin-1"), ":", "not UTF-8", id="csv-latin-1"),
        pytest.param("d.csv", "prompt\nx\n".encode("utf-16"), ":", "", id="csv-utf-16"),
        pytest.param("d.csv", b"prompt,prompt\na,b\n", ":1:", "duplicate column 'prompt'", id="csv-duplicate-column"),
        pytest.param("d.json", b'[{"prompt": "a"}, {"prompt": }]', ":1:", "invalid JSON", id="json-broken"),
        pytest.param("d.yaml", b"- prompt: a\n- prompt: [unclosed\n", ":", "", id="yaml-broken"),
        pytest.param("d.yaml", b"- prompt: a\n- 3\n", ":", "", id="yaml-row-not-mapping"),
        pytest.param("d.jsonl", b"", ":1:", "dataset has no rows", id="empty"),
    ],
)
def test_broken_datasets_get_located_errors(tmp_path: Path, name: str, data: bytes, where: str, message: str) -> None:
    """Broken rows, wrong encodings (latin-1, UTF-16, binary), huge lines: exit 2, the dataset
    file and a line in the message, never a traceback."""
    code, err = _validate_dataset(tmp_path, name, data)
    assert code == 2, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{tmp_path / name}{where}"), first
    assert message in first
    assert len(err) < 5000  # a huge line is not echoed back whole


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=400), st.sampled_from(["d.jsonl", "d.csv", "d.json", "d.yaml"]))
def test_random_dataset_bytes(data: bytes, name: str) -> None:
    _tried()
    with tempfile.TemporaryDirectory() as tmp:
        code, err = _validate_dataset(Path(tmp), name, data)
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert LOCATED.match(err), err


def test_zz_report_cases_tried(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints how many fuzz cases ran in this session (the figure for the closing note)."""
    with capsys.disabled():
        print(f"\nfuzz cases tried: {sum(CASES.values())} ({dict(CASES)})")
    # Every campaign that ran in this process really generated cases (60 to 120 each).
    assert all(tried >= 50 for tried in CASES.values()), CASES


def test_a_key_with_control_characters_stays_one_located_line(tmp_path: Path) -> None:
    """Regression (found by test_random_structures): a job key holding a CR printed the problem
    over two lines, the second one unlocated. Control characters are now escaped."""
    spec = tmp_path / "spec.yaml"
    spec.write_text('version: 1\nname: x\njobs:\n  - {name: a, endpoint: local/echo, "bad\\rkey\\n": 1}\n')
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["validate", str(spec)]) == 2
    assert err.getvalue().splitlines() == [
        f"{spec}:4:37: $.jobs[0]['bad\\rkey\\n']: unknown key 'bad\\rkey\\n'; expected one of: name, endpoint, path, "
        "mode, arguments, matrix, include, exclude, strategy, constraints, sample, dataset, repeat, concurrency, "
        "timeout, start_timeout, client_timeout, max_answer_bytes, hint, priority, headers, upload, fallbacks, "
            "media_lifetime, with_logs, retries, "
        "rate_limit, expect, download, cache"
    ]
