"""Bad specs: every problem at once, one line each, located at the offending key or value."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchrun.errors import SpecError
from batchrun.load import load_spec, validate_spec

DATA = Path(__file__).parent / "data" / "spec"


def problems(text: str, name: str = "spec.yaml") -> list[str]:
    Path(name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    spec, found = validate_spec(name)
    if any(p.severity == "error" for p in found):
        assert spec is None
    return [str(p) for p in found]


HEAD = """
version: 1
name: t
target: local"""


def test_wrong_types_enums_unknown_keys_with_did_you_mean(here: Path) -> None:
    assert problems(HEAD + """
concurency: 4
limits: {max_requests: 0}
jobs:
  - name: a
    endpoint: local/echo
    mode: sync
    repeat: "2"
    retries: {atempts: 3}
    with_logs: yes please
""") == [
        "spec.yaml:4:1: $.concurency: unknown key 'concurency'; did you mean 'concurrency'?",
        "spec.yaml:5:24: $.limits.max_requests: must be at least 1, got 0",
        "spec.yaml:9:11: $.jobs[0].mode: must be one of run, subscribe, got \"sync\"",
        "spec.yaml:10:13: $.jobs[0].repeat: must be an integer, got \"2\"",
        "spec.yaml:11:15: $.jobs[0].retries.atempts: unknown key 'atempts'; did you mean 'max_attempts'?",
        "spec.yaml:12:16: $.jobs[0].with_logs: must be true or false, got \"yes please\"",
    ]


def test_top_level_job_option_and_version_and_name(here: Path) -> None:
    assert problems("""
version: 2
name: "two words"
mode: run
jobs: []
""") == [
        "spec.yaml:1:10: $.version: unsupported spec version 2; this batchrun reads version 1",
        "spec.yaml:2:7: $.name: \"two words\" is not a valid name: use letters, digits, '.', '_' and '-', "
        "starting with a letter or digit",
        "spec.yaml:3:1: $.mode: unknown key 'mode'; 'mode' is a job option: put it in a job or under defaults",
        "spec.yaml:4:7: $.jobs: needs at least one job",
    ]


def test_missing_required_keys_and_target_shapes(here: Path) -> None:
    assert problems("""
version: 1
target: {run_url: "ftp://x"}
jobs:
  - endpoint: local/echo
  - name: b
""") == [
        "spec.yaml:1:1: $: missing required key 'name'",
        "spec.yaml:2:9: $.target: missing required key 'queue_url'",
        "spec.yaml:2:19: $.target.run_url: must be an http:// or https:// URL, got \"ftp://x\"",
        "spec.yaml:4:5: $.jobs[0]: missing required key 'name'",
        "spec.yaml:5:5: $.jobs[1]: missing required key 'endpoint' (set it on the job or under defaults)",
    ]


def test_run_mode_options_and_timeouts(here: Path) -> None:
    assert problems(HEAD + """
defaults:
  priority: low
jobs:
  - name: direct
    endpoint: local/echo
    mode: run
    client_timeout: 30
  - name: queued
    endpoint: local/echo
    start_timeout: 60
    client_timeout: 30
  - name: tiny
    endpoint: local/echo
    start_timeout: 1
""") == [
        # defaults.priority is skipped for the run job, not an error (tests/test_spec_modes.py)
        "spec.yaml:10:5: $.jobs[0].client_timeout: client_timeout applies to subscribe mode only, but job 'direct' "
        "uses mode: run; use timeout for run mode",
        "spec.yaml:13:20: $.jobs[1].start_timeout: warning: start_timeout (60) is greater than client_timeout (30): "
        "the client gives up first (job 'queued')",
        "spec.yaml:17:20: $.jobs[2].start_timeout: must be greater than 1 second (fal's minimum start_timeout), got 1",
    ]


def test_warnings_do_not_fail_and_reach_the_warnings_list(here: Path) -> None:
    Path("spec.yaml").write_text(HEAD.lstrip() + "\njobs:\n  - {name: q, endpoint: local/echo, start_timeout: 60, client_timeout: 30}\n")
    warnings: list = []
    spec = load_spec("spec.yaml", warnings)
    assert spec.jobs[0].start_timeout == 60.0
    assert [str(w) for w in warnings] == [
        "spec.yaml:5:52: $.jobs[0].start_timeout: warning: start_timeout (60) is greater than client_timeout (30): "
        "the client gives up first (job 'q')"
    ]


def test_endpoint_ids(here: Path) -> None:
    # fal's id forms (target: local serves only local/*, test_target.py)
    assert problems(HEAD.replace("target: local", "target: fal") + """
jobs:
  - {name: a, endpoint: fal-ai}
  - {name: b, endpoint: workflows/me}
  - {name: c, endpoint: "fal ai/flux"}
  - {name: ok1, endpoint: workflows/me/flow/sub}
  - {name: ok2, endpoint: 12345-my-app}
  - {name: ok3, endpoint: comfy/me/graph}
""") == [
        "spec.yaml:5:25: $.jobs[0].endpoint: 'fal-ai' is not an endpoint id: expected owner/alias[/path] such as "
        "fal-ai/flux/schnell",
        "spec.yaml:6:25: $.jobs[1].endpoint: 'workflows/me' is not an endpoint id: workflows/ ids are "
        "workflows/owner/alias[/path]",
        "spec.yaml:7:25: $.jobs[2].endpoint: 'fal ai/flux' is not an endpoint id: expected owner/alias[/path] such as "
        "fal-ai/flux/schnell",
    ]


def test_templates_naming_unknown_variables(here: Path) -> None:
    assert problems(HEAD + """
defaults:
  hint: "${{ matrix.zone }}"
jobs:
  - name: a
    endpoint: local/echo
    path: "/${{ env.SECRET }}"
    arguments:
      p: "${{ matrix.sytle }}"
      q: ["${{ row.prompt }}", "${{ foo.bar }}", "${{ matrix.style"]
      r: "${{ matrix.color }} ${{ repeat }} ${{ env.HOME }}"
    matrix: {style: [a, b]}
    include: [{style: a, color: red}]
""") == [
        "spec.yaml:5:9: $.defaults.hint: unknown matrix key 'zone' in ${{ matrix.zone }}; matrix keys: style, color "
        "(job 'a')",
        "spec.yaml:9:11: $.jobs[0].path: ${{ env.SECRET }}: env templates are allowed in arguments and headers only "
        "(they are resolved at send time)",
        "spec.yaml:11:10: $.jobs[0].arguments.p: unknown matrix key 'sytle' in ${{ matrix.sytle }}; did you mean "
        "'style'?",
        "spec.yaml:12:11: $.jobs[0].arguments.q[0]: ${{ row.prompt }} needs a dataset, but job 'a' has none",
        "spec.yaml:12:32: $.jobs[0].arguments.q[1]: unknown template namespace 'foo' in '${{ foo.bar }}'; use "
        "matrix., row., env. or repeat",
        "spec.yaml:12:50: $.jobs[0].arguments.q[2]: unterminated '${{' (no closing '}}'); write '$${{' for a literal "
        "'${{'",
    ]


def test_matrix_lists_exclude_keys_and_duplicate_job_names(here: Path) -> None:
    assert problems(HEAD + """
jobs:
  - name: a
    endpoint: local/echo
    arguments: {s: "${{ matrix.style }}"}
    matrix: {style: [a, b], seed: []}
    exclude: [{colour: red}, {style: a}]
    include: [{style: c, shape: round}]
  - name: a
    endpoint: local/echo
""") == [
        "spec.yaml:8:35: $.jobs[0].matrix.seed: matrix list 'seed' is empty; give at least one value (or remove the key)",
        "spec.yaml:9:16: $.jobs[0].exclude[0].colour: exclude key 'colour' is not in the matrix; matrix keys: style, seed",
        "spec.yaml:11:11: $.jobs[1].name: duplicate job name 'a' (also used by $.jobs[0])",
    ]


def test_exclude_keys_say_what_was_meant_or_that_there_is_no_matrix(here: Path) -> None:
    assert problems(HEAD + """
jobs:
  - {name: a, endpoint: local/echo, arguments: {s: "${{ matrix.seed }}"}, matrix: {seed: [1, 2]}, exclude: [{sed: 1}]}
  - {name: b, endpoint: local/echo, exclude: [{seed: 1}]}
""") == [
        "spec.yaml:5:110: $.jobs[0].exclude[0].sed: exclude key 'sed' is not in the matrix; did you mean 'seed'?",
        "spec.yaml:6:48: $.jobs[1].exclude[0].seed: exclude key 'seed' is not in the matrix: job 'b' has no matrix",
    ]


def test_duplicate_planned_requests_are_located_at_the_job(here: Path) -> None:
    assert problems(HEAD + """
jobs:
  - name: fine
    endpoint: local/echo
    arguments: {seed: "${{ matrix.seed }}"}
    matrix: {seed: [1, 2]}
  - name: same
    endpoint: local/echo
    arguments: {prompt: "a cat"}
    matrix: {seed: [1, 2, 3]}
""") == [
        "spec.yaml:9:11: $.jobs[1].name: requests 2 and 3 of job 'same' are identical (id 1a950a7ebcb8e91a) "
        "(2 duplicates in all); each matrix combination and dataset row must change the arguments or path "
        "(use repeat: for deliberate repeats)",
    ]


def test_plan_larger_than_the_limit_says_how_to_raise_it(here: Path) -> None:
    big = HEAD + """
jobs:
  - name: a
    endpoint: local/echo
    arguments: {x: "${{ matrix.x }}", y: "${{ matrix.y }}"}
    matrix: {x: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], y: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
    repeat: 200
"""
    assert problems(big) == [
        "spec.yaml:4:1: $.jobs: the plan has 20000 requests (a: 20000), more than limits.max_requests (10000); "
        "add `limits: {max_requests: 20000}` if you mean it"
    ]
    assert problems(big.replace("jobs:", "limits: {max_requests: 50}\njobs:", 1)) == [
        "spec.yaml:4:24: $.limits.max_requests: the plan has 20000 requests (a: 20000), more than "
        "limits.max_requests (50); raise limits.max_requests to 20000 if you mean it"
    ]


def test_missing_files_and_bad_regex_and_header_names(here: Path) -> None:
    Path("cat.png").write_bytes(b"\x89PNG")
    assert problems(HEAD + """
jobs:
  - name: a
    endpoint: local/echo
    arguments:
      ok: !file cat.png
      gone: !file missing.png
      also: {$file: "nope/${{ matrix.n }}.png"}
    matrix: {n: [1]}
    headers: {"bad header": "x", X-Ok: "${{ env.TOKEN }}"}
    expect:
      - {path: text, matches: "("}
      - {path: text}
""") == [
        "spec.yaml:9:13: $.jobs[0].arguments.gone['$file']: file not found: missing.png (looked for "
        f"{here}/missing.png)",
        "spec.yaml:12:15: $.jobs[0].headers['bad header']: 'bad header' is not a valid HTTP header name",
        "spec.yaml:12:40: $.jobs[0].headers.X-Ok: warning: ${{ env.TOKEN }}: environment variable TOKEN is not set; "
        "`batchrun run` stops before sending anything unless it is set there",
        "spec.yaml:14:31: $.jobs[0].expect[0].matches: invalid regular expression \"(\": missing ), unterminated subpattern at "
        "position 0",
        "spec.yaml:15:9: $.jobs[0].expect[1]: a path check needs exactly one of exists, equals, matches, min/max",
    ]


def test_header_and_hint_text_http_cannot_carry(here: Path) -> None:
    """Regression: a literal non-ASCII or control-character header value or runner hint passed
    validate, then every request of the job was an input error. The value is never quoted."""
    found = problems(HEAD + """
jobs:
  - name: a
    endpoint: local/echo
    hint: "caf\u00e9"
    headers: {X-Note: "na\u00efve s3cr3t", X-Tab: "a\tb", X-Bell: "a\\x07b", X-Tmpl: "n\u00e9 ${{ repeat }}"}
""")
    assert found == [
        "spec.yaml:7:11: $.jobs[0].hint: non-ASCII text, which an HTTP header cannot carry (httpx and fal's "
        "ingress reject it); percent-encode it or send it as an argument",
        "spec.yaml:8:23: $.jobs[0].headers.X-Note: non-ASCII text, which an HTTP header cannot carry (httpx and "
        "fal's ingress reject it); percent-encode it or send it as an argument",
        "spec.yaml:8:61: $.jobs[0].headers.X-Bell: a line break or another control character, which an HTTP "
        "header cannot carry",
        "spec.yaml:8:79: $.jobs[0].headers.X-Tmpl: non-ASCII text, which an HTTP header cannot carry (httpx and "
        "fal's ingress reject it); percent-encode it or send it as an argument",
    ]
    assert not any("s3cr3t" in line or "caf" in line for line in found)


def test_templated_file_paths_are_checked_when_planned(here: Path) -> None:
    assert problems(HEAD + """
jobs:
  - name: a
    endpoint: local/echo
    arguments:
      img: {$file: "nope/${{ matrix.n }}.png"}
    matrix: {n: [1]}
""") == [f"spec.yaml:7:5: $.jobs[0].arguments: file not found: {here}/nope/1.png (from a templated $file)"]


def test_dataset_problems_carry_the_dataset_files_own_lines(here: Path) -> None:
    for name in ("broken.jsonl", "broken.csv", "broken.yaml"):
        (here / name).write_bytes((DATA / name).read_bytes())
    assert problems(HEAD + """
jobs:
  - {name: j, endpoint: local/echo, dataset: broken.jsonl, arguments: {p: "${{ row.prompt }}"}}
  - {name: c, endpoint: local/echo, dataset: broken.csv, arguments: {p: "${{ row.prompt }}"}}
  - {name: y, endpoint: local/echo, dataset: broken.yaml, arguments: {p: "${{ row.prompt }}"}}
  - {name: m, endpoint: local/echo, dataset: missing.jsonl}
  - {name: i, endpoint: local/echo, dataset: [{prompt: x}, {other: 1}], arguments: {p: "${{ row.prompt }}"}}
""") == [
        "spec.yaml:8:46: $.jobs[3].dataset: dataset file not found: missing.jsonl (looked for "
        f"{here}/missing.jsonl)",
        "spec.yaml:9:60: $.jobs[4].dataset[1]: row 1 has no field 'prompt' (used by $.jobs[4].arguments.p)",
        "broken.csv:3:1: $[1]: row has 3 fields but the header has 2",
        "broken.jsonl:4:20: $[2]: invalid JSON: Expecting ',' delimiter",
        "broken.jsonl:5:1: $[3]: a row must be a JSON object, not a list",
        "broken.jsonl:6:1: $[4]: row 4 has no field 'prompt' (used by $.jobs[0].arguments.p)",
        "broken.yaml:3:3: $[2]: a row must be an object, not a string",
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "spec.yaml:1:1: $: empty spec; expected a mapping with version, name and jobs"),
        (b"- 1\n- 2\n", "spec.yaml:1:1: $: a spec must be a mapping with version, name and jobs, not a list"),
        (b"just text\n", "spec.yaml:1:1: $: a spec must be a mapping with version, name and jobs, not a single value"),
        (b"version: 1\n\xff\xfe\x00garbage", "spec.yaml:2:1: $: not UTF-8 text (byte 0xff)"),
        (b"a: [1, 2\nb: 3\n", "spec.yaml:2:2: $: YAML: while parsing a flow sequence; expected ',' or ']', but got ':'"),
        (b"a: 1\n  b: 2\n", "spec.yaml:2:4: $: YAML: mapping values are not allowed here"),
        (b"a: \x07\n", "spec.yaml:1:4: $: YAML: unacceptable character #x0007"),
        (b"[" * 5000, "spec.yaml:1:1: $: nesting deeper than 200 levels is not supported"),
        (b"a: !!python/object:os.system x\n", "spec.yaml:1:4: $.a: YAML: could not determine a constructor for the "
         "tag 'tag:yaml.org,2002:python/object:os.system'"),
        (b"a: 1\na: 2\n", "spec.yaml:2:1: $.a: duplicate key 'a'"),
    ],
    ids=["empty", "list", "scalar", "binary", "unclosed", "indent", "control", "deep", "python-tag", "dup-key"],
)
def test_hostile_input_never_traces_back(here: Path, content: bytes, expected: str) -> None:
    Path("spec.yaml").write_bytes(content)
    _, found = validate_spec("spec.yaml")
    assert expected in [str(p) for p in found]


def test_alias_bomb_is_refused(here: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]" for i in range(1, 7)]
    Path("spec.yaml").write_text("\n".join(lines) + "\n")
    _, found = validate_spec("spec.yaml")
    assert [str(p) for p in found] == [
        "spec.yaml:1:1: $: the document expands to more than 500,000 values (an alias bomb?)"
    ]


def test_missing_file_and_directory(here: Path) -> None:
    with pytest.raises(SpecError) as exc:
        load_spec("nope.yaml")
    assert str(exc.value) == "nope.yaml:1:1: $: file not found"
    Path("adir").mkdir()
    assert [str(p) for p in validate_spec("adir")[1]] == ["adir:1:1: $: is a directory, not a file"]


_WORDS = ["version", "name", "jobs", "defaults", "target", "matrix", "include", "exclude", "dataset", "arguments",
          "endpoint", "mode", "path", "hint", "headers", "priority", "client_timeout", "start_timeout", "timeout",
          "retries", "expect", "pricing", "gates", "budget", "limits", "max_requests", "repeat", "run", "local",
          "$file", "per_request", "per_unit", "unit_argument", "latency_s", "matches", "schema", "x"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=False, allow_infinity=False, width=16),
    # What JSON cannot carry (each must be a located error): nan/inf, lone surrogates, huge integers.
    st.sampled_from([float("nan"), float("inf"), -float("inf"), "\ud800", "a\udfffb", 2**70]),
    st.sampled_from(_WORDS + ["${{ matrix.x }}", "${{ row.x }}", "${{ env.X }}", "${{ bad", "local/echo", "a/b", "("]),
)
_TREES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from([*_WORDS, "\udc80k"]), inner, max_size=5),
    max_leaves=25,
)


@pytest.mark.slow  # 200 generated documents
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(_WORDS), _TREES, max_size=6), st.booleans())
def test_random_documents_never_trace_back(here: Path, doc: dict, with_valid_head: bool) -> None:
    """Any YAML document gives problems or a spec, never an exception."""
    if with_valid_head:
        doc = {"version": 1, "name": "fuzz", **doc}
    Path("spec.yaml").write_text(yaml.safe_dump(doc))
    spec, found = validate_spec("spec.yaml")
    assert (spec is None) == any(p.severity == "error" for p in found)


def test_huge_matrix_with_exclude_is_refused_before_walking_it(here: Path) -> None:
    values = ", ".join(str(i) for i in range(2000))
    assert problems(HEAD + f"""
jobs:
  - name: a
    endpoint: local/echo
    arguments: {{x: "${{{{ matrix.x }}}}", y: "${{{{ matrix.y }}}}"}}
    matrix: {{x: [{values}], y: [{values}]}}
    exclude: [{{x: 1}}]
""") == [
        "spec.yaml:8:13: $.jobs[0].matrix: the matrix of job 'a' has 4000000 combinations before exclude/include, "
        "far more than limits.max_requests (10000)"
    ]


def test_pricing_shapes(here: Path) -> None:
    assert problems(HEAD + """
pricing:
  local/echo: {per_request: 0.1, per_unit: 0.2, unit_argument: n}
  local/image: {per_unit: 0.2}
  nope: {per_request: 1}
jobs:
  - {name: a, endpoint: local/echo}
""") == [
        "spec.yaml:5:15: $.pricing['local/echo']: give either per_request or per_unit with unit_argument, not both",
        "spec.yaml:6:17: $.pricing['local/image'].per_unit: 'per_unit' needs 'unit_argument' as well",
        "spec.yaml:7:3: $.pricing.nope: 'nope' is not an endpoint id: expected owner/alias[/path] such as "
        "fal-ai/flux/schnell",
    ]


def test_values_json_cannot_carry_are_located_errors(here: Path) -> None:
    """Regression: `timeout: .inf` validated and then made every request an internal_error, `.nan`
    validated, a lone surrogate escape ("\\ud800") in an argument, matrix value or header passed
    validation and crashed `run` where the request id was hashed, and a 5,000-digit integer crashed
    `validate` with a traceback. Each is now an error at the value itself."""
    big = "9" * 5000
    assert problems(HEAD + f"""
jobs:
  - name: a
    endpoint: local/echo
    mode: run
    timeout: .inf
    matrix: {{m: ["x\\udfff"]}}
    headers: {{X-Tag: "v\\ud800"}}
    arguments: {{v: .nan, n: -.inf, s: "\\ud800 lone", big: {big}, m: "${{{{ matrix.m }}}}"}}
""") == [
        "spec.yaml:8:14: $.jobs[0].timeout: inf is not a number JSON can carry; use a finite number (or a string)",
        "spec.yaml:9:18: $.jobs[0].matrix.m[0]: the text holds a lone surrogate (\\udfff at character 2), which is "
        "not Unicode and cannot be sent as UTF-8 JSON; write the character itself (or a complete pair)",
        "spec.yaml:10:22: $.jobs[0].headers.X-Tag: the text holds a lone surrogate (\\ud800 at character 2), which "
        "is not Unicode and cannot be sent as UTF-8 JSON; write the character itself (or a complete pair)",
        "spec.yaml:11:20: $.jobs[0].arguments.v: nan is not a number JSON can carry; use a finite number (or a string)",
        "spec.yaml:11:29: $.jobs[0].arguments.n: -inf is not a number JSON can carry; use a finite number (or a string)",
        "spec.yaml:11:39: $.jobs[0].arguments.s: the text holds a lone surrogate (\\ud800 at character 1), which is "
        "not Unicode and cannot be sent as UTF-8 JSON; write the character itself (or a complete pair)",
        "spec.yaml:11:59: $.jobs[0].arguments.big: an integer of 5000 digits is more than batchrun reads "
        "(4300 at most); write it as a string",
    ]


def test_dataset_values_json_cannot_carry_are_located_errors(here: Path) -> None:
    """The same in dataset files: a JSONL row with a lone surrogate, NaN or a 5,000-digit integer, a
    typed CSV column with a 5,000-digit int or JSON text holding NaN, crashed or passed before."""
    big = "9" * 5000
    Path("d.jsonl").write_text('{"p": "ok", "n": 1}\n{"p": "a\\ud800b", "n": 2}\n'
                               f'{{"p": "x", "n": {big}}}\n{{"p": "y", "n": NaN}}\n')
    Path("d.csv").write_text(f'p,n,j\nok,1,{{}}\nx,{big},{{}}\nz,3,"[NaN]"\n')
    found = problems(HEAD + """
jobs:
  - {name: a, endpoint: local/echo, dataset: d.jsonl, arguments: {p: "${{ row.p }}", n: "${{ row.n }}"}}
  - name: b
    endpoint: local/echo
    dataset: {path: d.csv, types: {n: int, j: json}}
    arguments: {p: "${{ row.p }}", n: "${{ row.n }}", j: "${{ row.j }}"}
""")
    assert found == [
        "d.csv:3:3: $[1].n: column 'n' (int): a whole number of 5000 digits is more than batchrun reads (4300 at most)",
        "d.csv:4:5: $[2].j: column 'j' (json): \"[NaN]\": nan is not a number JSON can carry; use a finite number "
        "(or a string)",
        "d.jsonl:2:2: $[1].p: the text holds a lone surrogate (\\ud800 at character 2), which is not Unicode and "
        "cannot be sent as UTF-8 JSON; write the character itself (or a complete pair)",
        "d.jsonl:3:1: $[2]: an integer has more digits than batchrun reads (4300 at most); write it as a string",
        "d.jsonl:4:12: $[3].n: nan is not a number JSON can carry; use a finite number (or a string)",
    ]


def test_counts_are_written_integers_within_bounds(here: Path) -> None:
    """Regression: JSON Schema's integer took 2.0 and 1.0e+30, so `repeat: 2.0` crashed the plan
    (range(2.0)) and `concurrency: 1.0e+30` validated and grew the run past 5 GB."""
    assert problems(HEAD + """
concurrency: 1.0e+30
jobs:
  - {name: a, endpoint: local/echo, repeat: 2.0, concurrency: 20000, arguments: {v: 1}}
""") == [
        "spec.yaml:4:14: $.concurrency: must be an integer, got 1e+30",
        "spec.yaml:4:14: $.concurrency: must be at most 10000, got 1e+30",
        "spec.yaml:6:45: $.jobs[0].repeat: must be an integer, got 2.0",
        "spec.yaml:6:63: $.jobs[0].concurrency: must be at most 10000, got 20000",
    ]


def test_a_file_input_naming_a_folder_says_so(here: Path) -> None:
    """Regression: `!file` on a directory said "file not found", which sends one looking for a typo."""
    Path("images").mkdir()
    assert problems(HEAD + """
jobs:
  - {name: a, endpoint: local/echo, arguments: {img: !file images}}
""") == [f"spec.yaml:5:54: $.jobs[0].arguments.img['$file']: images is a folder, not a file (looked at {here}/images)"]
