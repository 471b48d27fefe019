"""X-Fal-Retry-Config and X-Fal-No-Retry on queue submits (protocol §4.1, §6.3): per-condition
budgets of server-side retries, the 10-attempt ceiling, and what is silently ignored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fixtures_server import queue_attempts

from batchrun.server import create_app

pytestmark = pytest.mark.anyio
BASE = "http://testserver"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runners=1, retry_backoff=0.001)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


async def attempts_of(client: httpx.AsyncClient, arguments: dict[str, Any], headers: dict[str, str]) -> tuple[int, int, str | None]:
    """Submit to local/fail and wait: (attempts it took, result status code, final error_type)."""
    end = await queue_attempts(client, "local/fail", arguments, headers)
    return end.attempts, end.result.status_code, end.status.json().get("error_type")


def config(**retries: int) -> dict[str, str]:
    return {"X-Fal-Retry-Config": orjson.dumps({name: {"retries": n} for name, n in retries.items()}).decode()}


async def test_server_error_budget_limits_extra_attempts(client: httpx.AsyncClient) -> None:
    got = await attempts_of(client, {"error_type": "runner_disconnected"}, config(server_error=2))
    assert got == (3, 503, "runner_disconnected")
    # Plain 503s and connection resets from the runner are server errors too.
    assert await attempts_of(client, {"status": 503}, config(server_error=1)) == (2, 503, "internal_error")
    assert await attempts_of(client, {"reset": True}, config(server_error=0)) == (1, 503, "runner_disconnected")


async def test_each_condition_has_its_own_budget(client: httpx.AsyncClient) -> None:
    headers = config(timeout=0, connection_error=1)
    assert await attempts_of(client, {"error_type": "request_timeout"}, headers) == (1, 504, "request_timeout")
    assert await attempts_of(client, {"error_type": "runner_connection_refused"}, headers) == (2, 503, "runner_connection_refused")
    # server_error is not in the config: it keeps fal's default of up to 10 attempts.
    retried = {"error_type": "runner_server_error", "times": 4, "key": "own-budget"}
    assert await attempts_of(client, retried, headers) == (5, 200, None)


async def test_a_budget_beyond_the_ceiling_still_stops_at_ten_attempts(client: httpx.AsyncClient) -> None:
    assert await attempts_of(client, {"error_type": "runner_disconnected"}, config(server_error=50)) == (10, 503, "runner_disconnected")


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[1, 2]", '"server_error"', '{"whatever": {"retries": 0}}', '{"server_error": {"retries": "none"}}',
     '{"server_error": {"retries": -1}}', '{"server_error": {"retries": true}}', '{"server_error": 0}'],
)  # fmt: skip
async def test_invalid_configs_are_ignored(client: httpx.AsyncClient, raw: str) -> None:
    arguments = {"error_type": "runner_server_error", "times": 3, "key": raw}
    assert await attempts_of(client, arguments, {"X-Fal-Retry-Config": raw}) == (4, 200, None)


async def test_no_retry_wins_over_retry_config(client: httpx.AsyncClient) -> None:
    headers = {**config(server_error=5), "X-Fal-No-Retry": "yes"}
    assert await attempts_of(client, {"error_type": "runner_disconnected"}, headers) == (1, 503, "runner_disconnected")


async def test_direct_runs_are_never_retried_whatever_the_config(client: httpx.AsyncClient) -> None:
    answer = await client.post("/run/local/fail", json={"error_type": "runner_disconnected"}, headers=config(server_error=3))
    assert (answer.status_code, answer.json()["error_type"]) == (503, "runner_disconnected")
    assert (await client.get("/_emulator/stats")).json()["attempts"] == 0
