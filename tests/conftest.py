"""Shared fixtures. Each area keeps its fixtures in its own tests/fixtures_<area>.py module."""

from __future__ import annotations

import pytest
from fixtures_server import *  # noqa: F403 - server fixtures (in-process and loopback)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
