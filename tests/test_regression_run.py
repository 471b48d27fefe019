"""The regression toolkit inside `batchrun run`, end to end against the embedded server: the manifest,
changed-plan resumes, expectations, gates, artifact downloads, `$file` inputs, cost and the budget."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import textwrap
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from fixtures_execute import records, run_cli, stats, write_spec

from batchrun.load import load_spec
from batchrun.output.manifest import manifest_path, spec_digest
from batchrun.output.planids import plan_ids_path
from batchrun.plan.planner import build_plan
from batchrun.server import ServerThread

MakeServer = Callable[..., AbstractContextManager[ServerThread]]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def run(spec: Path, out: Path, srv: ServerThread, *args: str) -> int:
    return run_cli(str(spec), "-o", str(out), "--run-url", srv.run_url, "--queue-url", srv.queue_url,
                   "--no-progress", *args)


# ---- manifest --------------------------------------------------------------------------------------

MANIFEST_SPEC = """\
    version: 1
    name: manifest
    jobs:
      - name: echo
        endpoint: local/echo
        mode: run
        headers: {X-Api-Token: "${{ env.BR_TEST_TOKEN }}"}
        arguments: {prompt: "${{ matrix.p }}", token: "${{ env.BR_TEST_TOKEN }}"}
        matrix: {p: [a, b, c]}
"""


def test_manifest_has_every_key_and_no_secret(tmp_path: Path, loopback_server: ServerThread,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest names spec, versions, target, plan and the outcome; the planted secret (in env
    templates of a header and an argument) appears nowhere in it."""
    secret = "planted-SECRET-4f9a7c2e1b"
    monkeypatch.setenv("BR_TEST_TOKEN", secret)
    spec = write_spec(tmp_path, MANIFEST_SPEC)
    out = tmp_path / "out.jsonl"
    srv = loopback_server
    assert run(spec, out, srv) == 0
    text = manifest_path(out).read_text()
    assert secret not in text and secret[:12] not in text
    m = json.loads(text)
    assert list(m) == ["manifest_version", "spec", "git", "batchrun_version", "python_version", "platform",
                       "target", "output", "shard", "plan", "resumed", "started_at", "finished_at", "counts",
                       "cost_usd", "gates", "stopped_by", "exit_code", "interrupted", "runs"]
    import platform

    from batchrun import __version__

    assert m["manifest_version"] == 2
    assert m["spec"] == {"path": str(spec.resolve()), "name": "manifest", "sha256": spec_digest(load_spec(spec)),
                         "file_sha256": hashlib.sha256(spec.read_bytes()).hexdigest()}
    assert m["git"] is None  # tmp_path is not in a repository
    assert (m["batchrun_version"], m["python_version"]) == (__version__, platform.python_version())
    assert m["platform"] == platform.platform()
    assert m["target"] == {"kind": "custom", "run_url": srv.run_url, "queue_url": srv.queue_url}
    assert (m["output"], m["shard"], m["resumed"]) == (str(out), None, False)
    ids = plan_ids_path(out)
    planned = sorted(r.id for r in build_plan(load_spec(spec)))
    assert ids.read_text() == "".join(f"{i}\n" for i in planned)
    assert m["plan"] == {"count": 3, "ids_sha256": hashlib.sha256(ids.read_bytes()).hexdigest(),
                         "ids_file": "out.jsonl.plan-ids", "selection": None}
    assert ISO.match(m["started_at"]) and ISO.match(m["finished_at"]) and m["started_at"] <= m["finished_at"]
    assert m["counts"] == {"ok": 3, "error": 0, "not_run": 0, "expectation_failures": 0}
    assert m["runs"] == [{"started_at": m["started_at"], "finished_at": m["finished_at"], "resumed": False,
                          "spec_sha256": m["spec"]["sha256"], "planned": 3, "selection": None,
                          "counts": {"ok": 3, "error": 0, "skipped": 0, "skipped_errors": 0, "expectation_failures": 0},
                          "cost_usd": None, "stopped_by": None, "exit_code": 0, "interrupted": False}]
    assert (m["cost_usd"], m["gates"], m["stopped_by"], m["exit_code"], m["interrupted"]) == (None, [], None, 0, False)
    # The spec digest ignores where the file is and how it is formatted, not what it says.
    (tmp_path / "elsewhere").mkdir()
    moved = write_spec(tmp_path / "elsewhere", "# a comment\n" + textwrap.dedent(MANIFEST_SPEC))
    assert spec_digest(load_spec(moved)) == m["spec"]["sha256"]
    assert spec_digest(load_spec(write_spec(tmp_path, MANIFEST_SPEC.replace("[a, b, c]", "[a, b]"), "s2.yaml"))) \
        != m["spec"]["sha256"]


def test_manifest_drops_url_credentials_and_redacts(tmp_path: Path) -> None:
    """A target URL's user:password never reaches the manifest; known secrets are redacted."""
    from batchrun.output.manifest import Manifest
    from batchrun.redact import Redactor

    spec = write_spec(tmp_path, MANIFEST_SPEC)
    redactor = Redactor(["sekret-token-123456"])
    manifest = Manifest(tmp_path / "o.jsonl", load_spec(spec), shard=(2, 3), planned=5, resumed=False,
                        scrub=redactor.scrub, target={"kind": "custom", "run_url": "https://u:pw-99@h.example:8443/run",
                                                      "queue_url": "https://h.example/q?k=sekret-token-123456"})
    manifest.start()
    m = json.loads(manifest_path(tmp_path / "o.jsonl").read_text())
    assert m["target"]["run_url"] == "https://h.example:8443/run"
    assert "sekret-token-123456" not in json.dumps(m) and "pw-99" not in json.dumps(m)
    assert (m["shard"], m["plan"]["count"], m["finished_at"], m["exit_code"]) == ("2/3", 5, None, None)


def test_manifest_names_the_git_commit_and_dirty_state(tmp_path: Path, loopback_server: ServerThread) -> None:
    """A spec in a git repository: the manifest has HEAD's commit and whether tracked files changed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    spec = write_spec(repo, MANIFEST_SPEC.replace('"${{ env.BR_TEST_TOKEN }}"', "x"))

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                              env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
                                   "GIT_COMMITTER_EMAIL": "t@e", "HOME": str(tmp_path)}).stdout.strip()

    git("init", "-q")
    git("add", "spec.yaml")
    git("commit", "-q", "-m", "spec")
    head = git("rev-parse", "HEAD")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 0
    assert json.loads(manifest_path(out).read_text())["git"] == {"commit": head, "dirty": False}
    spec.write_text(spec.read_text() + "# edited\n")
    assert run(spec, tmp_path / "out2.jsonl", loopback_server) == 0
    assert json.loads(manifest_path(tmp_path / "out2.jsonl").read_text())["git"] == {"commit": head, "dirty": True}


def test_resume_with_a_changed_spec_names_added_and_removed_ids(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Plan ids added and removed since the output was started are listed; only the current plan's
    missing ids run; records of removed ids stay in the output."""
    body = """\
        version: 1
        name: change
        jobs:
          - {name: echo, endpoint: local/echo, mode: run, arguments: {p: "${{ matrix.p }}"}, matrix: {p: %s}}
    """
    spec = write_spec(tmp_path, body % "[a, b, c]")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 0
    first_order = [r["arguments"]["p"] for r in records(out)]
    first = {r["arguments"]["p"]: r["id"] for r in records(out)}
    assert sorted(first_order) == ["a", "b", "c"]
    capsys.readouterr()
    spec.write_text(spec.read_text().replace("[a, b, c]", "[b, c, d, e]"))
    assert run(spec, out, loopback_server) == 0
    err = capsys.readouterr().err
    now = {r.arguments["p"]: r.id for r in build_plan(load_spec(spec))}
    added = ", ".join(sorted([now["d"], now["e"]]))
    assert (f"batchrun: the plan changed since {out} was started: 2 plan ids added ({added}), "
            f"1 plan ids removed ({first['a']}); only ids in the current plan run") in err
    assert "  echo: ok=2 error=0 skipped=2" in err
    got = [r["arguments"]["p"] for r in records(out)]
    # The first run's records stay where they were, as they were; the new ones follow in the order they
    # finished (jobs are sent together, so any may finish first: readers give plan order, the file not).
    assert got[:3] == first_order and sorted(got[3:]) == ["d", "e"], got
    m = json.loads(manifest_path(out).read_text())
    assert m["resumed"] is True and m["plan"]["count"] == 4
    # Resuming again with the same spec: nothing changed, nothing said.
    assert run(spec, out, loopback_server) == 0
    assert "plan changed" not in capsys.readouterr().err


# ---- expectations ----------------------------------------------------------------------------------

EXPECT_SPEC = """\
    version: 1
    name: expect
    jobs:
      - name: image
        endpoint: local/image
        mode: run
        arguments: {prompt: "${{ matrix.prompt }}", seed: 7}
        matrix: {prompt: [a cat, a dog]}
        expect:
          - {path: seed, equals: 7}
          - {path: "images[0].url", exists: true}
          - {path: prompt, matches: "^a cat"}
          - {latency_s: {max: 30}}
"""


def test_expectations_are_recorded_and_a_failure_exits_1(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, EXPECT_SPEC)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    by_prompt = {r["arguments"]["prompt"]: r for r in records(out)}
    cat, dog = by_prompt["a cat"], by_prompt["a dog"]
    assert cat["status"] == dog["status"] == "ok"
    assert [e["passed"] for e in cat["expectations"]] == [True, True, True, True]
    assert [e["passed"] for e in dog["expectations"]] == [True, True, False, True]
    assert dog["expectations"][2]["check"] == {"path": "prompt", "matches": "^a cat"}
    assert "a dog" in dog["expectations"][2]["message"]
    err = capsys.readouterr().err
    assert "  image: ok=2 error=0" in err and "expectations_failed=1" in err
    assert json.loads(manifest_path(out).read_text())["counts"]["expectation_failures"] == 1
    # A resume that sends nothing still fails: the newest record of 'a dog' failed its expectation.
    assert run(spec, out, loopback_server) == 1
    assert "expectations_failed=1" in capsys.readouterr().err
    # All checks passing: exit 0.
    spec2 = write_spec(tmp_path, EXPECT_SPEC.replace('"^a cat"', '"^a (cat|dog)$"'), "pass.yaml")
    assert run(spec2, tmp_path / "pass.jsonl", loopback_server) == 0


# ---- gates -----------------------------------------------------------------------------------------


def _gate_spec(tmp_path: Path, gates: str, jobs: str) -> Path:
    return write_spec(tmp_path, f"version: 1\nname: gates\nconcurrency: 1\ngates: {gates}\njobs:\n{jobs}")


def test_fail_fast_stops_at_the_first_error_and_a_resume_finishes(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"ff-{tmp_path.name}"
    spec = _gate_spec(tmp_path, "{fail_fast: true}", f"""\
  - {{name: before, endpoint: local/echo, mode: run, arguments: {{i: "${{{{ matrix.i }}}}"}}, matrix: {{i: [1, 2, 3]}}}}
  - {{name: flaky, endpoint: local/fail, mode: run, arguments: {{status: 400, times: 1, key: {key}}}}}
  - {{name: after, endpoint: local/echo, mode: run, arguments: {{j: "${{{{ matrix.j }}}}"}}, matrix: {{j: [1, 2, 3, 4, 5]}}}}
""")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    got = records(out)
    assert [(r["job"], r["status"]) for r in got] == [("before", "ok")] * 3 + [("flaky", "error")]
    err = capsys.readouterr().err
    flaky_id = got[3]["id"]
    message = f"gate fail_fast: request {flaky_id} (job flaky) failed (error http_error); stopped after 4 finished requests"
    assert f"  stopped early: {message}" in err
    m = json.loads(manifest_path(out).read_text())
    assert (m["stopped_by"], m["gates"], m["exit_code"]) == (message, [message], 1)
    assert m["plan"]["ids_file"] is None  # the walk stopped early: the resume records the plan's ids
    # The resume re-runs the error (it succeeds now) and finishes the plan.
    assert run(spec, out, loopback_server, "--retry-errors") == 0
    got = records(out)
    assert len(got) == 10 and [r["job"] for r in got[4:]] == ["flaky"] + ["after"] * 5
    assert all(r["status"] == "ok" for r in got[4:])
    assert json.loads(manifest_path(out).read_text())["plan"]["count"] == 9


def test_max_errors_stops_gracefully(tmp_path: Path, loopback_server: ServerThread,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = _gate_spec(tmp_path, "{max_errors: 1}", """\
  - {name: bad, endpoint: local/fail, mode: run, arguments: {status: 400, i: "${{ matrix.i }}"}, matrix: {i: [1, 2, 3, 4, 5]}}
""")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    assert [r["status"] for r in records(out)] == ["error", "error"]
    assert "  stopped early: gate max_errors: 2 failed requests > max_errors 1 (2 finished)" in capsys.readouterr().err


def test_max_error_rate_waits_for_a_sample_then_stops(tmp_path: Path, loopback_server: ServerThread,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    spec = _gate_spec(tmp_path, "{max_error_rate: 0.1}", """\
  - {name: good, endpoint: local/echo, mode: run, arguments: {i: "${{ matrix.i }}"}, matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]}}
  - {name: bad, endpoint: local/fail, mode: run, arguments: {status: 400, i: "${{ matrix.i }}"}, matrix: {i: [1, 2, 3, 4, 5, 6]}}
""")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    got = records(out)
    # 2 of 20 is 10% (not over); the 21st finished request makes 3 of 21.
    assert len(got) == 21 and sum(r["status"] == "error" for r in got) == 3
    assert ("  stopped early: gate max_error_rate: 3 of 21 finished requests failed (14.3%) > max_error_rate 10.0%"
            in capsys.readouterr().err)


def test_max_error_rate_at_the_end_and_p95_latency(tmp_path: Path, loopback_server: ServerThread,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Below the sample size the rate is checked at the end; p95 latency only at the end. Neither stops."""
    spec = _gate_spec(tmp_path, "{max_error_rate: 0.2, max_p95_latency_s: 0.05}", """\
  - {name: slow, endpoint: local/echo, mode: run, arguments: {delay: 0.1, i: "${{ matrix.i }}"}, matrix: {i: [1, 2]}}
  - {name: bad, endpoint: local/fail, mode: run, arguments: {status: 400}}
""")
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    assert len(records(out)) == 3
    err = capsys.readouterr().err
    assert "stopped early" not in err
    assert "  failed gate max_error_rate: 1 of 3 finished requests failed (33.3%) > max_error_rate 20.0%" in err
    gates = json.loads(manifest_path(out).read_text())["gates"]
    assert gates[0].startswith("gate max_error_rate:")
    # The p95 is at least the 0.1 s delay; how much more depends on the machine's load.
    p95 = re.fullmatch(r"gate max_p95_latency_s: p95 latency (\d+\.\d{3}) s over 3 requests > 0\.05 s", gates[1])
    assert p95 is not None and float(p95.group(1)) >= 0.1, gates[1]


# ---- artifacts and file inputs -----------------------------------------------------------------------


def test_download_stores_each_image_once_by_hash(tmp_path: Path, loopback_server: ServerThread) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: art
        defaults: {download: true}
        jobs:
          - {name: img, endpoint: local/image, mode: run, repeat: 2, arguments: {prompt: a fox, num_images: 2, image_size: {width: 32, height: 24}}}
    """)
    out = tmp_path / "run" / "art.jsonl"
    assert run(spec, out, loopback_server) == 0
    got = records(out)
    assert len(got) == 2
    stored = set()
    for record in got:
        urls = [i["url"] for i in record["result"]["images"]]
        assert [a["url"] for a in record["artifacts"]] == urls
        for a in record["artifacts"]:
            body = httpx.get(a["url"]).content
            sha = hashlib.sha256(body).hexdigest()
            assert a == {"url": a["url"], "path": f"art/files/{sha}.png", "sha256": sha, "bytes": len(body),
                         "content_type": "image/png", "phash": a["phash"]}
            assert len(a["phash"]) == 16 and int(a["phash"], 16) >= 0  # the images extra is in .[test]
            assert (out.parent / a["path"]).read_bytes() == body
            stored.add(a["path"])
    # Two requests x two images, identical across the repeat: two files.
    assert len(stored) == 2
    assert sorted(p.name for p in (out.parent / "art" / "files").iterdir()) == sorted(Path(p).name for p in stored)


def test_failed_download_is_recorded_and_the_result_kept(tmp_path: Path, loopback_server: ServerThread) -> None:
    """A 404 is an artifact error, the request stays ok; data: URLs are decoded, named by file_name."""
    missing = loopback_server.origin + "/files/images/nope.png"
    spec = write_spec(tmp_path, f"""\
        version: 1
        name: art
        jobs:
          - name: echo
            endpoint: local/echo
            mode: run
            download: true
            arguments:
              broken: {{url: "{missing}", content_type: image/png}}
              inline: {{url: "data:text/plain;base64,aGVsbG8=", file_name: hello.txt}}
              not_media: {{url: "{missing}"}}
    """)
    out = tmp_path / "art.jsonl"
    assert run(spec, out, loopback_server) == 0
    (record,) = records(out)
    assert record["status"] == "ok" and record["result"]["echo"]["broken"]["url"] == missing
    sha = hashlib.sha256(b"hello").hexdigest()
    assert record["artifacts"] == [
        {"url": missing, "path": None, "sha256": None, "bytes": None, "content_type": "image/png",
         "error": f"HTTP 404 fetching {missing}"},
        {"url": "data:text/plain;base64,aGVsbG8=", "path": f"art/files/{sha}.txt", "sha256": sha, "bytes": 5,
         "content_type": "text/plain"},
    ]
    assert (tmp_path / "art" / "files" / f"{sha}.txt").read_bytes() == b"hello"
    assert [p.name for p in (tmp_path / "art" / "files").iterdir()] == [f"{sha}.txt"]  # no temp files left


def test_file_inputs_are_recorded_by_path_and_hash(tmp_path: Path, loopback_server: ServerThread) -> None:
    data = bytes(range(256)) * 40
    (tmp_path / "in.png").write_bytes(data)
    spec = write_spec(tmp_path, """\
        version: 1
        name: inputs
        jobs:
          - {name: echo, endpoint: local/echo, mode: run, arguments: {image: !file in.png, n: 1}}
    """)
    out = tmp_path / "inputs.jsonl"
    assert run(spec, out, loopback_server) == 0
    (record,) = records(out)
    path = str(tmp_path / "in.png")
    assert record["arguments"] == {"image": {"$file": path}, "n": 1}
    assert record["inputs"] == {"$.image": {"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": 10240}}
    # The server got the bytes (echoed back as a data URI); the record's own fields hold no bytes.
    assert record["result"]["echo"]["image"].startswith("data:image/png;base64,")
    fields = {k: v for k, v in record.items() if k != "result"}
    assert len(json.dumps(fields)) < 2000


# ---- cost and budget -------------------------------------------------------------------------------

BUDGET_SPEC = """\
    version: 1
    name: budget
    concurrency: 4
    budget: {max_usd: %s}
    pricing:
      local/echo: {per_request: 0.01}
    jobs:
      - {name: echo, endpoint: local/echo, mode: run, arguments: {i: "${{ matrix.i }}", delay: 0.05}, matrix: {i: [1, 2, 3, 4, 5]}}
"""


def test_budget_stops_before_overspending_and_resumes(
    tmp_path: Path, make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(tmp_path, BUDGET_SPEC % "0.035")
    out = tmp_path / "out.jsonl"
    with make_server(runners=4) as srv:
        assert run(spec, out, srv) == 1
        assert stats(srv.origin)["requests"]["run"] == 3  # 4 in flight at once, yet only 3 were sent
        got = records(out)
        assert [r["cost_usd"] for r in got] == [0.01, 0.01, 0.01]
        err = capsys.readouterr().err
        found = re.search(r"  stopped early: budget: sending request [0-9a-f]{16} \(job echo\) \(\$0\.0100\) would "
                          r"exceed max_usd \$0\.035 \(\$(\S+) spent, \$(\S+) in flight\); stopped, resumable", err)
        assert found is not None and float(found[1]) + float(found[2]) == pytest.approx(0.03)
        assert "  cost: $0.0300 estimated for this run" in err
        assert json.loads(manifest_path(out).read_text())["cost_usd"] == 0.03
        # Resuming with the same budget: what the output already spent counts; nothing is sent.
        assert run(spec, out, srv) == 1
        assert len(records(out)) == 3 and stats(srv.origin)["requests"]["run"] == 3
        assert "($0.0300 spent, $0.0000 in flight)" in capsys.readouterr().err
        # A larger budget finishes the plan.
        spec.write_text(BUDGET_SPEC % "0.05")
        assert run(spec, out, srv) == 0
        assert len(records(out)) == 5 and stats(srv.origin)["requests"]["run"] == 5


def test_cost_per_unit_and_unknown_prices(tmp_path: Path, loopback_server: ServerThread,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: cost
        pricing:
          local/image: {per_unit: 0.002, unit_argument: num_images}
        jobs:
          - {name: img, endpoint: local/image, mode: run, arguments: {prompt: x, num_images: "${{ matrix.n }}"}, matrix: {n: [1, 3]}}
          - {name: echo, endpoint: local/echo, mode: run, arguments: {prompt: x}}
          - {name: bad, endpoint: local/fail, mode: run, arguments: {status: 400}}
    """)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    got = {(r["job"], r["arguments"].get("num_images")): r for r in records(out)}
    assert got["img", 1]["cost_usd"] == 0.002 and got["img", 3]["cost_usd"] == 0.006
    assert got["echo", None]["cost_usd"] is None  # no price: unknown, not zero
    assert "cost_usd" not in got["bad", None]  # a failed request is not billed
    assert "  cost: $0.0080 estimated for this run (+ 1 requests of unknown price)" in capsys.readouterr().err


def test_budget_with_an_unpriced_endpoint_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, """\
        version: 1
        name: unpriced
        budget: {max_usd: 1}
        pricing:
          local/image: {per_request: 0.01}
        jobs:
          - {name: echo, endpoint: local/echo, mode: run, arguments: {prompt: x}}
    """)
    assert run_cli(str(spec), "-o", str(tmp_path / "out.jsonl"), "--target", "local", "--no-progress") == 2
    # validation catches it (batchrun.spec.pricing); the run's own guard stays behind it
    assert ("$.budget.max_usd: a budget needs a price for every endpoint, but local/echo (job 'echo') has none in "
            "pricing; add `local/echo: {per_request: USD}` under pricing" in capsys.readouterr().err)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_gate_stop_in_subscribe_mode_leaves_nothing_journaled(
    tmp_path: Path, loopback_server: ServerThread, capsys: pytest.CaptureFixture[str]
) -> None:
    """Queue requests in flight when a gate stops the run finish and are written; the journal is
    settled, and a resume with --retry-errors runs only what is left."""
    from batchrun.output.journal import journal_path

    spec = write_spec(tmp_path, """\
        version: 1
        name: sub
        concurrency: 2
        gates: {max_errors: 0}
        jobs:
          - {name: bad, endpoint: local/fail, headers: {X-Fal-No-Retry: "1"}, arguments: {status: 422}}
          - {name: ok, endpoint: local/echo, arguments: {i: "${{ matrix.i }}", delay: 0.05}, matrix: {i: [1, 2, 3, 4, 5, 6]}}
    """)
    out = tmp_path / "out.jsonl"
    assert run(spec, out, loopback_server) == 1
    first = records(out)
    assert first[0]["job"] == "bad" and first[0]["status"] == "error"
    assert 1 <= len(first) <= 3  # the error, and what was already in flight with it
    assert not journal_path(out).exists()
    assert "stopped early: gate max_errors: 1 failed requests > max_errors 0" in capsys.readouterr().err
    # The error is still the newest record of its id, so the gate is breached before anything is
    # sent: the resume sends nothing (issue 14: it used to send `concurrency` more each time).
    assert run(spec, out, loopback_server) == 1
    assert records(out) == first
    err = capsys.readouterr().err
    assert "gate max_errors: 1 failed requests > max_errors 0 (" in err
    assert "finished), already in the output: nothing new is sent" in err
    # With the gate relaxed the resume runs only what is left.
    relaxed = write_spec(tmp_path, spec.read_text().replace("max_errors: 0", "max_errors: 1"), "relaxed.yaml")
    assert run(relaxed, out, loopback_server) == 1  # the error is still the newest record of its id
    assert len(records(out)) == 7 and {r["job"] for r in records(out)[len(first):]} == {"ok"}
