"""Queue behaviour in-process: start timeouts, runner hints, server-side retries, retention, stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from batchrun.server import create_app

pytestmark = pytest.mark.anyio
BASE = "http://testserver"


async def make_client(**options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(**options)), base_url=BASE)


@pytest.fixture
async def one_runner() -> AsyncIterator[httpx.AsyncClient]:
    async with await make_client(runners=1, retry_backoff=0.001) as client:
        yield client


async def completed(client: httpx.AsyncClient, submitted: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(submitted["status_url"])
            if response.status_code == 200:
                return response.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.01)


async def test_start_timeout_expires_in_queue(one_runner: httpx.AsyncClient) -> None:
    await one_runner.post("/queue/local/sleep", json={"seconds": 1})
    waiting = (await one_runner.post("/queue/local/echo", json={}, headers={"X-Fal-Request-Start-Timeout": "0.2"})).json()
    status = await completed(one_runner, waiting)
    assert (status["error_type"], status["metrics"]) == ("startup_timeout", {})
    assert status["error"] == "No runner started the request within its start timeout of 0.2 s"
    result = await one_runner.get(waiting["response_url"])
    assert result.status_code == 504
    assert result.headers["x-fal-request-timeout-type"] == "user"
    assert result.headers["x-fal-error-type"] == "startup_timeout"
    assert result.json() == {"detail": "No runner started the request within its start timeout of 0.2 s",
                             "error_type": "startup_timeout"}  # fmt: skip


async def test_legacy_timeout_header_and_start_timeout_wins(one_runner: httpx.AsyncClient) -> None:
    await one_runner.post("/queue/local/sleep", json={"seconds": 1})
    legacy = (await one_runner.post("/queue/local/echo", json={}, headers={"X-Fal-Request-Timeout": "0.2"})).json()
    both = await one_runner.post("/queue/local/echo", json={},
                                 headers={"X-Fal-Request-Timeout": "0.05", "X-Fal-Request-Start-Timeout": "0.3"})  # fmt: skip
    assert both.status_code == 200  # the invalid legacy value is ignored: Start-Timeout wins
    assert (await completed(one_runner, legacy))["error_type"] == "startup_timeout"


@pytest.mark.parametrize("value", ["0.1", "0", "-3", "abc", "nan", "inf"])
@pytest.mark.parametrize("mode", ["run", "queue"])
async def test_invalid_timeout_is_400_bad_request(value: str, mode: str) -> None:
    async with await make_client() as client:
        response = await client.post(f"/{mode}/local/echo", json={}, headers={"X-Fal-Request-Start-Timeout": value})
        assert response.status_code == 400
        assert response.headers["x-fal-error-type"] == "bad_request"
        assert response.json() == {
            "detail": f"Invalid x-fal-request-start-timeout header {value!r}: expected a number of seconds greater than 0.1",
            "error_type": "bad_request",
        }


async def test_runner_hint_prefers_the_same_free_runner() -> None:
    async with await make_client(runners=2) as client:
        busy = (await client.post("/queue/local/sleep", json={"seconds": 0.2})).json()
        hinted = (await client.post("/queue/local/echo", json={}, headers={"X-Fal-Runner-Hint": "h"})).json()
        await completed(client, hinted)
        assert (await client.get(hinted["response_url"])).headers["x-fal-served-from"] == "runner-1"
        await completed(client, busy)
        again = (await client.post("/queue/local/echo", json={"n": 2}, headers={"X-Fal-Runner-Hint": "h"})).json()
        plain = (await client.post("/queue/local/echo", json={"n": 3})).json()
        await completed(client, again)
        await completed(client, plain)
        assert (await client.get(again["response_url"])).headers["x-fal-served-from"] == "runner-1"
        assert (await client.get(plain["response_url"])).headers["x-fal-served-from"] == "runner-0"


async def test_server_side_retries_until_success(one_runner: httpx.AsyncClient) -> None:
    submitted = (await one_runner.post("/queue/local/fail", json={"times": 2, "key": "r1", "error_type": "runner_server_error"})).json()
    status = await completed(one_runner, submitted)
    assert "error" not in status
    result = await one_runner.get(submitted["response_url"])
    assert (result.status_code, result.json()) == (200, {"echo": {"times": 2, "key": "r1", "error_type": "runner_server_error"}, "path": ""})
    stats = (await one_runner.get("/_emulator/stats")).json()
    assert (stats["attempts"], stats["retries"]) == (3, 2)


async def test_no_retry_header_disables_server_retries(one_runner: httpx.AsyncClient) -> None:
    for value in ("1", "true", "yes"):
        submitted = (await one_runner.post("/queue/local/fail", json={"error_type": "runner_server_error"},
                                           headers={"X-Fal-No-Retry": value})).json()  # fmt: skip
        status = await completed(one_runner, submitted)
        assert (status["error_type"], status["error"]) == ("runner_server_error", "injected runner_server_error")
        result = await one_runner.get(submitted["response_url"])
        assert result.status_code == 500
        assert result.json() == {"detail": "injected runner_server_error", "error_type": "runner_server_error"}
    assert (await one_runner.get("/_emulator/stats")).json()["retries"] == 0


async def test_retries_stop_after_ten_attempts(one_runner: httpx.AsyncClient) -> None:
    submitted = (await one_runner.post("/queue/local/fail", json={"error_type": "runner_disconnected"})).json()
    status = await completed(one_runner, submitted)
    assert status["error_type"] == "runner_disconnected"
    assert (await one_runner.get(submitted["response_url"])).status_code == 503
    assert (await one_runner.get("/_emulator/stats")).json()["attempts"] == 10


async def test_app_500_and_4xx_are_not_retried(one_runner: httpx.AsyncClient) -> None:
    for args, code in (({"status": 500}, 500), ({"status": 422}, 422)):
        submitted = (await one_runner.post("/queue/local/fail", json=args)).json()
        await completed(one_runner, submitted)
        assert (await one_runner.get(submitted["response_url"])).status_code == code
    assert (await one_runner.get("/_emulator/stats")).json()["retries"] == 0


async def test_reset_in_queue_is_a_retried_runner_disconnect(one_runner: httpx.AsyncClient) -> None:
    submitted = (await one_runner.post("/queue/local/fail", json={"reset": True, "times": 1, "key": "rs"})).json()
    await completed(one_runner, submitted)
    result = await one_runner.get(submitted["response_url"])
    assert (result.status_code, result.json()["path"]) == (200, "")


async def test_results_are_bounded_by_count() -> None:
    async with await make_client(max_results=2) as client:
        submitted = []
        for i in range(3):
            submitted.append((await client.post("/queue/local/echo", json={"i": i})).json())
            await completed(client, submitted[-1])
        await client.post("/queue/local/echo", json={"i": 3})  # retention is swept on submit
        gone = await client.get(submitted[0]["status_url"])
        assert gone.status_code == 404
        assert (await client.get(submitted[2]["response_url"])).json() == {"echo": {"i": 2}, "path": ""}


async def test_results_are_bounded_by_age() -> None:
    async with await make_client(result_ttl=0.05) as client:
        first = (await client.post("/queue/local/echo", json={})).json()
        await completed(client, first)
        await asyncio.sleep(0.1)
        await client.post("/queue/local/echo", json={"again": True})
        assert (await client.get(first["response_url"])).status_code == 404


async def test_duplicate_submits_are_counted_and_reset() -> None:
    async with await make_client() as client:
        await client.post("/queue/local/echo/a", json={"x": 1, "y": 2})
        await client.post("/queue/local/echo/a", json={"y": 2, "x": 1})  # same content, other key order
        await client.post("/queue/local/echo/b", json={"x": 1, "y": 2})  # another endpoint: not a duplicate
        stats = (await client.get("/_emulator/stats")).json()
        assert (stats["duplicate_submits"], stats["duplicates"]) == (1, {"local/echo/a": 1})
        assert stats["requests"]["submit"] == 3
        assert stats["apps"]["local/echo"] == {"submit": 3}
        assert (await client.post("/_emulator/reset")).json() == {"status": "OK"}
        stats = (await client.get("/_emulator/stats")).json()
        assert (stats["duplicate_submits"], stats["requests"]["submit"], stats["apps"]) == (0, 0, {})


async def test_max_queue_length_query_parameter(one_runner: httpx.AsyncClient) -> None:
    await one_runner.post("/queue/local/sleep", json={"seconds": 1})
    assert (await one_runner.post("/queue/local/echo?fal_max_queue_length=0", json={})).status_code == 200
    full = await one_runner.post("/queue/local/echo?fal_max_queue_length=0", json={"n": 2})
    assert full.status_code == 429
    assert full.json() == {"detail": "More than 0 requests are waiting for local/echo", "error_type": "queue_full"}


async def test_max_queue_length_counts_the_endpoints_own_queue(one_runner: httpx.AsyncClient) -> None:
    await one_runner.post("/queue/local/sleep", json={"seconds": 1})  # takes the only runner
    for n in range(3):
        await one_runner.post("/queue/local/sleep", json={"seconds": 0, "n": n})  # waiting, for another app
    echo = await one_runner.post("/queue/local/echo/sub?fal_max_queue_length=1", json={})
    assert (echo.status_code, echo.json()["queue_position"]) == (200, 3)  # the server-wide position
    assert (await one_runner.post("/queue/local/echo?fal_max_queue_length=1", json={"n": 2})).status_code == 200
    full = await one_runner.post("/queue/local/echo?fal_max_queue_length=1", json={"n": 3})
    assert (full.status_code, full.json()["error_type"]) == (429, "queue_full")
    assert (await one_runner.post("/queue/local/sleep?fal_max_queue_length=3", json={"seconds": 0})).status_code == 200


async def test_in_process_stats_function() -> None:
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        await client.post("/run/local/echo", json={})
    stats = app.state.stats()
    assert (stats["requests"]["run"], stats["apps"], stats["runners"]) == (1, {"local/echo": {"run": 1}}, 2)


async def test_positions_stay_accurate_after_cancels_and_priorities(one_runner: httpx.AsyncClient) -> None:
    blocker = (await one_runner.post("/queue/local/fail", json={"hang": True})).json()
    low = (await one_runner.post("/queue/local/echo", json={"low": 1}, headers={"X-Fal-Queue-Priority": "low"})).json()
    normal = [(await one_runner.post("/queue/local/echo", json={"n": i})).json() for i in range(4)]

    async def positions() -> list[int | None]:
        out = []
        for submitted in [*normal, low]:
            body = (await one_runner.get(submitted["status_url"])).json()
            out.append(body.get("queue_position") if body["status"] == "IN_QUEUE" else None)
        return out

    assert await positions() == [0, 1, 2, 3, 4]
    assert (await one_runner.put(normal[1]["cancel_url"])).status_code == 202
    assert await positions() == [0, None, 1, 2, 3]
    assert (await one_runner.put(blocker["cancel_url"])).status_code == 202
    async with asyncio.timeout(5):
        while (await one_runner.get(low["status_url"])).status_code != 200:
            await asyncio.sleep(0.01)
    assert await positions() == [None] * 5
