"""Mode-specific options: a default that does not apply to a job's mode is skipped for that job;
the job's own such key is an error (it would be ignored)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from batchrun.load import load_spec, validate_spec


def write(text: str) -> str:
    Path("spec.yaml").write_text(textwrap.dedent(text).lstrip("\n"))
    return "spec.yaml"


def problems(text: str) -> list[str]:
    return [str(p) for p in validate_spec(write(text))[1]]


def test_defaults_of_the_other_mode_are_skipped_per_job(here: Path) -> None:
    spec = load_spec(write("""
        version: 1
        name: t
        defaults:
          endpoint: local/echo
          client_timeout: 300
          priority: low
          with_logs: true
          timeout: 30
        jobs:
          - {name: queued}
          - {name: direct, mode: run}
          - {name: own, mode: run, timeout: 5, with_logs: false}
    """))
    got = {j.name: (j.mode, j.client_timeout, j.priority, j.with_logs, j.timeout) for j in spec.jobs}
    assert got == {
        "queued": ("subscribe", 300.0, "low", True, None),
        "direct": ("run", None, None, False, 30.0),
        "own": ("run", None, None, False, 5.0),
    }


def test_a_jobs_own_key_of_the_other_mode_is_an_error(here: Path) -> None:
    assert problems("""
        version: 1
        name: t
        defaults: {endpoint: local/echo}
        jobs:
          - {name: a, mode: run, client_timeout: 5, priority: low, with_logs: true}
          - {name: b, timeout: 5}
          - {name: c, mode: subscribe, timeout: 5, with_logs: false}
    """) == [
        "spec.yaml:5:26: $.jobs[0].client_timeout: client_timeout applies to subscribe mode only, but job 'a' uses "
        "mode: run; use timeout for run mode",
        "spec.yaml:5:45: $.jobs[0].priority: priority applies to subscribe mode only, but job 'a' uses mode: run",
        "spec.yaml:5:60: $.jobs[0].with_logs: with_logs applies to subscribe mode only, but job 'a' uses mode: run "
        "(a direct call has no runner logs)",
        "spec.yaml:6:15: $.jobs[1].timeout: timeout applies to run mode only, but job 'b' uses mode: subscribe; use "
        "client_timeout for subscribe mode",
        "spec.yaml:7:32: $.jobs[2].timeout: timeout applies to run mode only, but job 'c' uses mode: subscribe; use "
        "client_timeout for subscribe mode",
    ]


def test_a_default_mode_decides_too_and_an_unused_default_is_a_warning(here: Path) -> None:
    assert problems("""
        version: 1
        name: t
        defaults: {endpoint: local/echo, mode: run, client_timeout: 300, timeout: 10}
        jobs:
          - {name: a}
          - {name: b, client_timeout: 5, mode: subscribe}
    """) == [
        "spec.yaml:3:45: $.defaults.client_timeout: warning: client_timeout applies to subscribe mode only, and every "
        "job that does not set its own uses mode: run: this default has no effect",
    ]
