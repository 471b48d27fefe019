"""Shared fixtures. Each area keeps its fixtures in its own tests/fixtures_<area>.py module."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_server import *  # noqa: F403 - server fixtures (in-process and loopback)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so problem lines start with the relative 'spec.yaml'."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
