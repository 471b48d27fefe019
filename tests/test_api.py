"""The Python API (batchrun.api): load and validate, plan, run (plain, inside a running event loop,
async), callbacks, the result, reading outputs. Every run goes to the embedded server (target: local)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import batchrun.api as br
from batchrun.cli import main

SPEC = """\
    version: 1
    name: api
    target: local
    concurrency: 4
    jobs:
      - name: images
        endpoint: local/image
        arguments: {prompt: "a cat, ${{ matrix.style }}", seed: "${{ matrix.seed }}", num_images: 1}
        matrix: {style: [photo, sketch], seed: [1, 2, 3]}
        with_logs: true
      - name: echo
        endpoint: local/echo
        mode: run
        arguments: {message: "hi ${{ repeat }}"}
        repeat: 2
"""


def _spec(tmp_path: Path, body: str = SPEC, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def _stable(record: dict[str, Any]) -> dict[str, Any]:
    """A record without what differs between two runs of the same request."""
    out = dict(record)
    for key in ("timing", "request_id", "served_from", "logs", "metrics"):
        out.pop(key, None)
    return out


# ---- load and validate --------------------------------------------------------------------------


def test_load_from_path_yaml_text_and_dict_gives_the_same_spec(tmp_path: Path) -> None:
    """A file, its text and its parsed dict load to the same spec, with the same plan ids."""
    import yaml

    path = _spec(tmp_path)
    text = path.read_text()
    from_path = br.load(path)
    from_text = br.load(text, base_dir=tmp_path)
    from_dict = br.load(yaml.safe_load(text), base_dir=tmp_path)
    assert from_path.label == str(path) and from_text.label == "<string>" and from_dict.label == "<dict>"
    ids = [r.id for r in from_path.plan()]
    assert len(ids) == 8
    assert [r.id for r in from_text.plan()] == ids == [r.id for r in from_dict.plan()]
    assert from_path.jobs == ["images", "echo"] and from_path.job_counts == {"images": 6, "echo": 2}


def test_invalid_yaml_text_raises_one_spec_error_with_every_located_problem() -> None:
    """All problems at once, each `<string>:LINE:COL: $.path: message`, as `batchrun validate` has them."""
    text = "version: 1\nname: bad\njobs:\n  - name: a\n    endpoint: local/echo\n    mode: sometimes\n    repeat: 0\n"
    with pytest.raises(br.SpecError) as exc:
        br.load(text)
    problems = [str(p) for p in exc.value.problems]
    assert len(problems) == 2, problems
    assert problems[0].startswith("<string>:6:11: $.jobs[0].mode: ")
    assert problems[1].startswith("<string>:7:13: $.jobs[0].repeat: ")
    assert isinstance(exc.value, br.BatchrunError) and exc.value.exit_code == 2


def test_invalid_file_problems_match_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """For a file, the exception's problems are exactly the lines `batchrun validate` prints."""
    path = _spec(tmp_path, "version: 1\nname: bad\njobs:\n  - {name: a, endpoint: nope, repeat: -1}\n  - {name: a}\n")
    with pytest.raises(br.SpecError) as exc:
        br.load(path)
    assert main(["validate", str(path)]) == 2
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith(str(path))]
    assert [str(p) for p in exc.value.problems] == printed
    assert len(printed) >= 3


def test_dict_problems_are_located_by_path() -> None:
    """A dict has no lines: problems say `<dict>: $.path: message`; non-JSON values are problems too."""
    spec = {"version": 1, "name": "d", "jobs": [{"name": "a", "endpoint": "local/echo", "mode": "later",
                                                  "arguments": {"when": object()}}]}
    with pytest.raises(br.SpecError) as exc:
        br.load(spec)
    problems = [str(p) for p in exc.value.problems]
    assert any(p.startswith("<dict>: $.jobs[0].mode: ") for p in problems), problems
    assert any(p.startswith("<dict>: $.jobs[0].arguments.when: unsupported value of type object") for p in problems)
    assert all(p.startswith("<dict>: $") for p in problems)


def test_validate_returns_problems_without_raising(tmp_path: Path) -> None:
    """`validate` lists errors and warnings (an unset ${{ env.X }} is a warning), never raising."""
    assert br.validate(_spec(tmp_path)) == []
    body = SPEC.replace('"hi ${{ repeat }}"', '"${{ env.BATCHRUN_API_TEST_UNSET }}"')
    problems = br.validate(textwrap.dedent(body))
    assert [p.severity for p in problems] == ["warning"]
    assert "BATCHRUN_API_TEST_UNSET" in str(problems[0])
    assert [p.severity for p in br.validate({"version": 1})] == ["error"] * len(br.validate({"version": 1}))


# ---- plan, count, estimate ----------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], ["--shard", "2/3"], ["--limit", "2"], ["--only", "echo"],
                                   ["--shard", "1/2", "--limit", "2", "--only", "images"],
                                   ["--sample", "2"], ["--sample", "2", "--seed", "9", "--shard", "1/2"]],
                         ids=["all", "shard", "limit", "only", "shard-limit-only", "sample", "sample-seed-shard"])
def test_plan_is_batchrun_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str]) -> None:
    """plan() yields the requests `batchrun plan` prints (ids, indices, arguments), count() their number."""
    path = _spec(tmp_path)
    assert main(["plan", str(path), *flags]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kwargs: dict[str, Any] = {}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        kwargs[flag.lstrip("-")] = int(value) if flag in ("--limit", "--sample", "--seed") else value
    spec = br.load(path)
    planned = [r.to_json() for r in spec.plan(**kwargs)]
    assert planned == [{k: v for k, v in line.items() if k != "options"} for line in lines]
    assert spec.count(**kwargs) == len(lines)


def test_plan_is_lazy() -> None:
    """A million-request plan starts at once: nothing is rendered before it is asked for."""
    spec = br.load({"version": 1, "name": "big", "limits": {"max_requests": 2_000_000},
                    "jobs": [{"name": "e", "endpoint": "local/echo", "arguments": {"i": "${{ repeat }}"},
                              "repeat": 1_000_000}]})
    first = next(iter(spec.plan()))
    assert first.index == 0 and len(spec) == 1_000_000 and spec.count() == 1_000_000


def test_estimate_prices_the_plan() -> None:
    """estimate() is `batchrun plan --count`: requests and cost per job and in total."""
    spec = br.load({"version": 1, "name": "priced", "pricing": {"local/echo": {"per_request": 0.5}},
                    "jobs": [{"name": "e", "endpoint": "local/echo", "repeat": 4},
                             {"name": "f", "endpoint": "local/sleep", "arguments": {"seconds": 0}}]})
    estimate = spec.estimate()
    assert estimate.jobs == {"e": (4, 2.0), "f": (1, None)}
    assert (estimate.requests, estimate.cost_usd) == (5, None)  # an unpriced endpoint: unknown total
    assert br.load({"version": 1, "name": "p", "pricing": {"local/echo": {"per_request": 0.5}},
                    "jobs": [{"name": "e", "endpoint": "local/echo", "repeat": 4}]}).estimate().cost_usd == 2.0


def test_sample_and_seed_count_and_price_like_plan_count(tmp_path: Path) -> None:
    """count()/estimate() with sample= are `plan --count --sample N`: the sampled sizes, and the
    sample's requests are the full plan's own (same ids), different for another seed."""
    spec = br.load({"version": 1, "name": "priced", "pricing": {"local/echo": {"per_request": 0.5}},
                    "jobs": [{"name": "e", "endpoint": "local/echo", "arguments": {"i": "${{ repeat }}"},
                              "repeat": 10}]})
    assert spec.count(sample=3) == 3 and spec.count(sample=30) == 10
    assert spec.estimate(sample=3).jobs == {"e": (3, 1.5)}
    full = [r.id for r in spec.plan()]
    seeds = {seed: [r.id for r in spec.plan(sample=3, seed=seed)] for seed in range(4)}
    assert all(set(ids) <= set(full) and len(ids) == 3 for ids in seeds.values())
    assert seeds[0] == [r.id for r in spec.plan(sample=3)]  # the default seed is 0, as on the CLI
    assert len({tuple(ids) for ids in seeds.values()}) > 1
    for bad in ({"sample": 0}, {"sample": True}, {"seed": 2}, {"sample": 2, "seed": -1}):
        with pytest.raises(br.UsageError, match="sample|seed"):
            spec.count(**bad)


def test_bad_selection_is_a_usage_error(tmp_path: Path) -> None:
    """An unknown job or a malformed shard is the CLI's usage error, with its did-you-mean."""
    spec = br.load(_spec(tmp_path))
    with pytest.raises(br.UsageError, match="did you mean 'echo'"):
        list(spec.plan(only=["ecko"]))
    with pytest.raises(br.UsageError, match="I/N"):
        spec.count(shard="two of three")


# ---- run ----------------------------------------------------------------------------------------


def test_run_in_a_plain_script_with_callbacks(tmp_path: Path) -> None:
    """Blocking run: every record, callbacks in fal-client's shapes, a result with counts and manifest."""
    enqueued: list[tuple[str, str]] = []
    updates: list[tuple[str, Any]] = []
    recorded: list[dict[str, Any]] = []
    result = br.run(
        _spec(tmp_path), tmp_path / "out.jsonl", progress=False,
        on_enqueue=lambda request, request_id: enqueued.append((request.id, request_id)),
        on_queue_update=lambda request, status: updates.append((request.id, status)),
        on_record=recorded.append,
    )
    assert (result.exit_code, result.ok, result.interrupted) == (0, True, False)
    assert result.counts == {"ok": 8, "error": 0, "not_run": 0, "expectation_failures": 0}
    assert result.sent == {"ok": 8, "error": 0, "skipped": 0}
    assert result.output == tmp_path / "out.jsonl" and result.manifest is not None
    assert result.manifest["exit_code"] == 0 and result.manifest_path.exists()
    written = [json.loads(line) for line in result.output.read_text().splitlines()]
    assert sorted(r["id"] for r in recorded) == sorted(r["id"] for r in written) and len(written) == 8
    queue_records = {r["id"]: r for r in written if r["mode"] == "subscribe"}
    assert {i for i, _ in enqueued} == set(queue_records)  # only queue requests are enqueued
    assert all(queue_records[i]["request_id"] == rid for i, rid in enqueued)
    for rid in queue_records:
        mine = [s for i, s in updates if i == rid]
        assert isinstance(mine[-1], br.Completed) and isinstance(mine[-1].metrics, dict)
        assert all(isinstance(s, br.Queued | br.InProgress) for s in mine[:-1])
    assert any(isinstance(s, br.InProgress) for _, s in updates)
    assert all(s.position is None or s.position >= 0 for _, s in updates if isinstance(s, br.Queued))
    # again: resumed, nothing sent
    again = br.run(_spec(tmp_path), tmp_path / "out.jsonl", progress=False)
    assert again.sent == {"ok": 0, "error": 0, "skipped": 8} and again.exit_code == 0


def test_run_inside_a_running_event_loop(tmp_path: Path) -> None:
    """As in a Jupyter cell: `run` called from code an asyncio loop is running works (its own loop
    in a worker thread), instead of "Already running asyncio in this thread"."""
    spec = _spec(tmp_path)
    threads: set[str] = set()

    async def cell() -> br.RunResult:
        import threading

        asyncio.get_running_loop()  # a loop is running here
        return br.run(spec, tmp_path / "out.jsonl", progress=False,
                      on_record=lambda r: threads.add(threading.current_thread().name))

    result = asyncio.run(cell())
    assert result.exit_code == 0 and result.counts["ok"] == 8
    assert len(result.output.read_text().splitlines()) == 8
    assert threads and "MainThread" not in threads


@pytest.mark.anyio
async def test_run_async(tmp_path: Path) -> None:
    """run_async runs in the caller's loop, with the same result and records."""
    recorded: list[str] = []
    result = await br.run_async(_spec(tmp_path), tmp_path / "out.jsonl", progress=False,
                                on_record=lambda r: recorded.append(r["id"]))
    assert result.exit_code == 0 and result.counts["ok"] == 8 and len(recorded) == 8
    again = await br.run_async(_spec(tmp_path), tmp_path / "out.jsonl", progress=False)
    assert again.sent["skipped"] == 8


def test_raising_callbacks_are_reported_and_lose_no_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every callback raising on every call: the run finishes, every record is written, each
    failure is in callback_errors and the first ones are told on stderr."""

    def boom(*args: Any) -> None:
        raise ValueError("callback bug")

    result = br.run(_spec(tmp_path), tmp_path / "out.jsonl", progress=False,
                    on_enqueue=boom, on_queue_update=boom, on_record=boom)
    assert result.exit_code == 0 and len(result.output.read_text().splitlines()) == 8
    names = {e.callback for e in result.callback_errors}
    assert names == {"on_enqueue", "on_queue_update", "on_record"}
    assert sum(e.callback == "on_record" for e in result.callback_errors) == 8
    assert all(e.error == "ValueError: callback bug" for e in result.callback_errors)
    assert "callback on_enqueue raised on request" in capsys.readouterr().err


ECHO_SPEC = """\
    version: 1
    name: same
    target: local
    jobs:
      - {name: q, endpoint: local/echo, arguments: {text: "${{ matrix.w }}", n: 1.5}, matrix: {w: [a, b, c]}}
      - {name: r, endpoint: local/echo, mode: run, path: /sub, arguments: {list: [1, {x: null}]}, repeat: 2}
"""

VARYING = re.compile(rb'"(request_id|served_from)":("[^"]*"|null)|"(timing|metrics)":\{[^}]*\}')


def test_cli_and_api_write_the_same_records(tmp_path: Path) -> None:
    """`batchrun run` and `run()` write byte-identical records for the same spec, but for what
    differs between any two runs (request ids, timings, the server's metrics, runner names), and the
    same manifest counts."""
    spec = _spec(tmp_path, ECHO_SPEC)
    assert main(["run", str(spec), "-o", str(tmp_path / "cli.jsonl"), "--no-progress"]) == 0
    result = br.run(spec, tmp_path / "api.jsonl", progress=False)

    def lines(path: Path) -> list[bytes]:
        raw = path.read_bytes().splitlines()
        return sorted(VARYING.sub(b"", line) for line in raw)

    cli, api = lines(tmp_path / "cli.jsonl"), lines(result.output)
    assert len(cli) == 5 and cli == api
    cli_manifest = json.loads((tmp_path / "cli.jsonl.manifest.json").read_text())
    assert cli_manifest["counts"] == result.counts


def test_every_run_flag_has_a_keyword() -> None:
    """Each option of `batchrun run` is a keyword of run() and run_async() (--no-progress: progress)."""
    import argparse
    import inspect

    from batchrun.commands import run as run_command

    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    flags = {a.dest for a in parser._actions if a.option_strings and a.dest != "help"}
    flags = {"progress" if f == "no_progress" else f for f in flags}
    for fn in (br.run, br.run_async):
        assert flags <= set(inspect.signature(fn).parameters), flags - set(inspect.signature(fn).parameters)


def test_run_options_are_checked_like_the_flags(tmp_path: Path) -> None:
    """A keyword the command line would refuse is a UsageError before anything is touched."""
    spec = _spec(tmp_path)
    out = tmp_path / "out.jsonl"
    for kwargs, message in [({"concurrency": 0}, "concurrency"), ({"limit": -1}, "limit"),
                            ({"shard": (3, 2)}, "I must be between 1 and N"), ({"target": "moon"}, "target"),
                            ({"fresh": True, "retry_errors": True}, "--fresh starts over"),
                            ({"run_url": "http://127.0.0.1:1/run"}, "go together")]:
        with pytest.raises(br.UsageError, match=message):
            br.run(spec, out, progress=False, **kwargs)
    assert not out.exists()


def test_only_limit_shard_and_fresh_keywords(tmp_path: Path) -> None:
    """only/limit/shard select what `batchrun run` would; fresh moves the output aside."""
    spec = _spec(tmp_path)
    out = tmp_path / "out.jsonl"
    smoke = br.run(spec, out, progress=False, only="images", limit=2)
    assert smoke.sent["ok"] == 2 and smoke.counts["not_run"] == 0  # the selection is the plan here
    full = br.run(spec, out, progress=False)
    assert (full.sent["ok"], full.sent["skipped"]) == (6, 2)
    shard = br.run(spec, tmp_path / "s.jsonl", progress=False, shard=(1, 2))
    assert shard.sent["ok"] == br.load(spec).count(shard="1/2")
    fresh = br.run(spec, out, progress=False, fresh=True)
    assert fresh.sent == {"ok": 8, "error": 0, "skipped": 0}
    assert list(tmp_path.glob("out.jsonl.*.bak"))


def test_failed_requests_and_retry_errors(tmp_path: Path) -> None:
    """A failing request is a record and exit code 1; retry_errors sends it again."""
    body = """\
        version: 1
        name: flaky
        target: local
        jobs:
          - {name: f, endpoint: local/fail, mode: run, arguments: {status: 422}, repeat: 2}
          - {name: e, endpoint: local/echo, mode: run}
    """
    spec = _spec(tmp_path, body)
    result = br.run(spec, tmp_path / "out.jsonl", progress=False)
    assert result.exit_code == 1 and result.counts["error"] == 2 and result.counts["ok"] == 1
    again = br.run(spec, tmp_path / "out.jsonl", progress=False, retry_errors=True)
    assert again.sent["error"] == 2 and len(again.output.read_text().splitlines()) == 5
    assert len(list(br.read(again.output))) == 3  # newest per id
    assert len(list(br.read(again.output, all_records=True))) == 5


INTERRUPT_SCRIPT = """\
import asyncio, os, signal, sys, threading
import batchrun.api as br

spec, out = sys.argv[1], sys.argv[2]

def on_record(record):
    # the first record is written: Ctrl-C, as a notebook's interrupt button sends it
    if not getattr(on_record, "sent", False):
        on_record.sent = True
        os.kill(os.getpid(), signal.SIGINT)

async def cell():
    return br.run(spec, out, progress=False, on_record=on_record)

result = asyncio.run(cell())
print("first", result.exit_code, result.interrupted, result.counts["ok"], result.counts["not_run"], flush=True)
again = br.run(spec, out, progress=False)
print("again", again.exit_code, again.sent["ok"], again.sent["skipped"], again.counts["ok"], flush=True)
"""


@pytest.mark.slow  # a run stopped by a signal
def test_ctrl_c_inside_a_running_loop_stops_gracefully_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C while `run` works inside a running loop: a graceful stop (exit code 130, the
    process goes on), then a second run resumes and sends only the rest."""
    body = """\
        version: 1
        name: slow
        target: local
        concurrency: 2
        jobs:
          - {name: s, endpoint: local/sleep, mode: run, arguments: {seconds: 0.3, n: "${{ repeat }}"}, repeat: 12}
    """
    spec = _spec(tmp_path, body)
    script = tmp_path / "cell.py"
    script.write_text(INTERRUPT_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(spec), str(tmp_path / "out.jsonl")],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    first, again = proc.stdout.split("\n")[:2]
    _, code, interrupted, ok, not_run = first.split()
    assert (code, interrupted) == ("130", "True"), proc.stderr
    assert 1 <= int(ok) < 12 and int(ok) + int(not_run) == 12
    _, code2, sent, skipped, total_ok = again.split()
    assert (code2, total_ok) == ("0", "12") and int(sent) + int(skipped) == 12 and int(skipped) == int(ok)
    assert "interrupted" in proc.stderr


# ---- read ---------------------------------------------------------------------------------------


def test_read_typed_and_frames(tmp_path: Path) -> None:
    """read(): dicts or typed records in plan order; pandas and Arrow with flattened columns."""
    result = br.run(_spec(tmp_path), tmp_path / "out.jsonl", progress=False)
    records = br.read(result.output)
    dicts = list(records)
    assert [r["index"] for r in dicts] == list(range(8))
    typed = list(records.typed())
    assert all(isinstance(r, br.Record) and r.ok and r.latency_s is not None for r in typed)
    assert typed[0].matrix == {"style": "photo", "seed": 1} and typed[0].finished_at is not None
    frame = records.to_pandas()
    assert len(frame) == 8
    for column in ("job", "status", "matrix.style", "matrix.seed", "latency_s", "error_type", "artifact_paths",
                   "arguments.prompt"):
        assert column in frame.columns
    assert frame.loc[frame["job"] == "images", "matrix.seed"].tolist() == [1, 2, 3, 1, 2, 3]
    assert str(frame["matrix.seed"].dtype) == "Int64"  # not floats around the echo job's gaps
    table = records.to_arrow()
    assert table.num_rows == 8 and table.column("status").to_pylist() == ["ok"] * 8


def test_read_several_shards_and_row_values(tmp_path: Path) -> None:
    """Shards read as one output (plan order across them); `spec=` adds the dataset rows' columns."""
    (tmp_path / "rows.jsonl").write_text('{"word": "cat", "n": 1}\n{"word": "dog", "n": 2}\n{"word": "owl", "n": 3}\n')
    body = """\
        version: 1
        name: rows
        target: local
        jobs:
          - {name: d, endpoint: local/echo, mode: run, dataset: rows.jsonl, arguments: {text: "a ${{ row.word }}"}}
    """
    spec = _spec(tmp_path, body)
    outs = [br.run(spec, tmp_path / f"s{i}.jsonl", progress=False, shard=(i, 2)).output for i in (1, 2)]
    records = br.read(*outs, spec=spec)
    assert [r["index"] for r in records] == [0, 1, 2]
    frame = records.to_pandas()
    assert frame["row.word"].tolist() == ["cat", "dog", "owl"] and frame["row.n"].tolist() == [1, 2, 3]
    assert set(frame["output_file"]) <= {str(o) for o in outs}


def test_read_a_damaged_output_is_a_records_error(tmp_path: Path) -> None:
    """A broken line that is not the last is a located RecordsError."""
    out = tmp_path / "bad.jsonl"
    out.write_text('{"id": "a", "index": 0, "job": "j", "status": "ok"}\nnot json\n{"id": "b", "index": 1, "job": "j", "status": "ok"}\n')
    with pytest.raises(br.RecordsError, match=r"bad.jsonl:2: invalid JSON"):
        list(br.read(out))


def test_missing_extra_says_what_to_install(tmp_path: Path) -> None:
    """Without pandas or pyarrow, to_pandas/to_arrow name the extra to install (one line, no traceback)."""
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "a", "index": 0, "job": "j", "status": "ok"}\n')
    code = (
        "import sys; sys.modules['pandas'] = None; sys.modules['pyarrow'] = None\n"
        "import batchrun.api as br\n"
        "for call in ('to_pandas', 'to_arrow'):\n"
        "    try:\n"
        f"        getattr(br.read({str(out)!r}), call)()\n"
        "    except br.MissingExtra as exc:\n"
        "        print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == [
        "this needs pandas, which is not installed: pip install 'batchrun-fal[pandas]'",
        "this needs pyarrow, which is not installed: pip install 'batchrun-fal[arrow]'",
    ], proc.stderr


def test_the_api_loads_no_client_stack() -> None:
    """`import batchrun.api` (and loading a spec) does not load the HTTP client, the runner, pandas or pyarrow."""
    code = (
        "import sys, batchrun.api as br; br.load({'version': 1, 'name': 'x', 'jobs': [{'name': 'a', 'endpoint': 'local/echo'}]}); "
        "print(sorted(m for m in ('batchrun.run.executor', 'batchrun.run.runner', 'batchrun.client.fal', 'httpx', "
        "'aiohttp', 'pandas', 'pyarrow') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[]", "")

