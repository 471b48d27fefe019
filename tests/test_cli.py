"""The command line's shape: every subcommand is wired, help works, and errors never trace back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from batchrun import __version__
from batchrun.cli import COMMANDS, main


def test_version_matches_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"batchrun {__version__}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert COMMANDS[command] in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "batchrun", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"batchrun {__version__}"


def test_parser_does_not_load_the_client_stack() -> None:
    """`batchrun --help` and `batchrun validate` build the parser of every command; `run` loads the
    executor and the HTTP client (httpx, aiohttp) only when it runs (see commands/run.py)."""
    code = (
        "import sys; from batchrun.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('batchrun.run.executor', 'batchrun.client.fal', 'batchrun.run.runner', 'httpx', 'aiohttp') "
        "if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[]", "")
