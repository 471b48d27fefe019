"""An unset `${{ env.X }}` the plan uses stops `batchrun run` before anything is sent (exit 2, every
variable named with where it is used, never a value); `batchrun validate` only warns."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_execute import records, run_cli, server_urls, stats, write_spec

from batchrun.cli import main
from batchrun.server import ServerThread

SPEC = """\
    version: 1
    name: envs
    defaults:
      headers: {X-Team: "${{ env.BR_ENV_TEAM }}"}
    jobs:
      - name: a
        endpoint: local/echo
        mode: run
        arguments: {p: "x ${{ env.BR_ENV_ONE }} y", known: "${{ env.BR_ENV_SET }}"}
      - name: b
        endpoint: local/echo
        arguments: {p: "${{ env.BR_ENV_ONE }}", r: ["${{ env.BR_ENV_TWO }}"]}
"""
SECRET = "s3cret-value-never-printed"
UNSET = ("BR_ENV_TEAM", "BR_ENV_ONE", "BR_ENV_TWO")



def test_unset_env_stops_the_run_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_server: ServerThread,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BR_ENV_SET", SECRET)
    spec = write_spec(tmp_path, SPEC)
    out = tmp_path / "out.jsonl"
    before = stats(loopback_server.origin)["requests"]
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 2
    err = capsys.readouterr().err
    assert err == (
        "batchrun: error: the plan uses environment variables that are not set: BR_ENV_TEAM, BR_ENV_ONE, "
        "BR_ENV_TWO; nothing was sent. Set them (or remove the references) and run again. Used at:\n"
        f"  {spec}:4:21: $.defaults.headers.X-Team: ${{{{ env.BR_ENV_TEAM }}}} (job 'a')\n"
        f"  {spec}:4:21: $.defaults.headers.X-Team: ${{{{ env.BR_ENV_TEAM }}}} (job 'b')\n"
        f"  {spec}:9:20: $.jobs[0].arguments.p: ${{{{ env.BR_ENV_ONE }}}} (job 'a')\n"
        f"  {spec}:12:20: $.jobs[1].arguments.p: ${{{{ env.BR_ENV_ONE }}}} (job 'b')\n"
        f"  {spec}:12:49: $.jobs[1].arguments.r[0]: ${{{{ env.BR_ENV_TWO }}}} (job 'b')\n"
    )
    assert SECRET not in err
    assert stats(loopback_server.origin)["requests"] == before  # nothing sent
    assert list(tmp_path.iterdir()) == [spec]  # no output, lock, journal or manifest

    # Once they are set, the same command runs every request (no input_error records to skip).
    for name in UNSET:
        monkeypatch.setenv(name, "v-" + name)
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 0
    assert sorted((r["job"], r["status"]) for r in records(out)) == [("a", "ok"), ("b", "ok")]


def test_validate_warns_about_unset_env_and_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The variable may be set only where the spec runs (a CI secret): a warning, exit 0."""
    for name in UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BR_ENV_SET", SECRET)
    spec = write_spec(tmp_path, SPEC)
    assert main(["validate", str(spec)]) == 0
    captured = capsys.readouterr()
    tail = "is not set; `batchrun run` stops before sending anything unless it is set there"
    assert captured.err.splitlines() == [
        f"{spec}:4:21: $.defaults.headers.X-Team: warning: ${{{{ env.BR_ENV_TEAM }}}}: environment variable "
        f"BR_ENV_TEAM {tail} (job 'a')",
        f"{spec}:4:21: $.defaults.headers.X-Team: warning: ${{{{ env.BR_ENV_TEAM }}}}: environment variable "
        f"BR_ENV_TEAM {tail} (job 'b')",
        f"{spec}:9:20: $.jobs[0].arguments.p: warning: ${{{{ env.BR_ENV_ONE }}}}: environment variable "
        f"BR_ENV_ONE {tail}",
        f"{spec}:12:20: $.jobs[1].arguments.p: warning: ${{{{ env.BR_ENV_ONE }}}}: environment variable "
        f"BR_ENV_ONE {tail}",
        f"{spec}:12:49: $.jobs[1].arguments.r[0]: warning: ${{{{ env.BR_ENV_TWO }}}}: environment variable "
        f"BR_ENV_TWO {tail}",
    ]
    assert SECRET not in captured.out + captured.err


def test_an_env_value_that_is_not_utf8_is_an_input_error_that_quotes_nothing(
    tmp_path: Path, loopback_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates; the request cannot be encoded.
    Regression: the record said "'utf-8' codec can't encode character '\\udcff' in position 13"."""
    import os

    monkeypatch.setenv("BR_ENV_BYTES", os.fsdecode(b"s3cret-\xff-tail"))
    spec = write_spec(tmp_path, """\
        version: 1
        name: bytes
        jobs:
          - {name: a, endpoint: local/echo, mode: run, arguments: {p: "${{ env.BR_ENV_BYTES }}"}}
    """)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "--output", str(out), *server_urls(loopback_server)) == 1
    [record] = records(out)
    assert record["error"]["type"] == "input_error" and record["attempts"] == 0
    assert record["error"]["detail"].startswith("the arguments hold text that is not valid Unicode")
    assert "s3cret" not in out.read_text() and "udcff" not in out.read_text()
