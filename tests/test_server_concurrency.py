"""The per-key concurrency limit (`create_app(max_concurrency=N)`, `batchrun serve --max-concurrency N`),
as fal's account limit works (protocol §8.1): at most N requests of one key IN_PROGRESS, direct runs
and queue attempts together; a direct run over it gets 429 concurrent_requests_limit with
X-Fal-Needs-Retry: 1, a queued request waits IN_QUEUE (with its position) until a slot frees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from batchrun.server import create_app

pytestmark = pytest.mark.anyio
BASE = "http://testserver"
ALICE = {"Authorization": "Key alice-id:alice-secret"}
BOB = {"Authorization": "Key bob-id:bob-secret"}


async def client_for(**options: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(**options)), base_url=BASE)


@pytest.fixture
async def limited() -> AsyncIterator[httpx.AsyncClient]:
    """Limit 1 per key, 4 runners: the limit, not the runners, is what makes requests wait."""
    async with await client_for(runners=4, max_concurrency=1) as client:
        yield client


async def concurrency(client: httpx.AsyncClient) -> dict[str, int | None]:
    return (await client.get("/_emulator/stats")).json()["concurrency"]  # type: ignore[no-any-return]


async def until_in_progress(client: httpx.AsyncClient, count: int) -> None:
    async with asyncio.timeout(5):
        while (await concurrency(client))["in_progress"] != count:
            await asyncio.sleep(0.005)


async def state(client: httpx.AsyncClient, submitted: dict[str, Any]) -> tuple[str, int | None]:
    body = (await client.get(submitted["status_url"])).json()
    return body["status"], body.get("queue_position")


async def completed(client: httpx.AsyncClient, submitted: dict[str, Any]) -> httpx.Response:
    async with asyncio.timeout(5):
        while (await client.get(submitted["status_url"])).status_code != 200:
            await asyncio.sleep(0.005)
    return await client.get(submitted["response_url"])


async def test_direct_run_over_the_limit_is_429_per_key() -> None:
    async with await client_for(max_concurrency=2) as client:
        running = [asyncio.ensure_future(client.post("/run/local/sleep", json={"seconds": 0.3}, headers=ALICE)) for _ in range(2)]
        await until_in_progress(client, 2)
        refused = await client.post("/run/local/echo", json={}, headers=ALICE)
        assert refused.status_code == 429
        assert refused.json() == {"detail": "Concurrent requests limit exceeded: 2 requests of this key are in progress",
                                  "error_type": "concurrent_requests_limit"}  # fmt: skip
        assert (refused.headers["x-fal-needs-retry"], refused.headers["x-fal-error-type"]) == ("1", "concurrent_requests_limit")
        assert "retry-after" not in refused.headers  # fal documents none
        assert len(refused.headers["x-fal-request-id"]) == 36
        assert "alice" not in refused.text
        other_key = await client.post("/run/local/echo", json={"who": "bob"}, headers=BOB)
        assert (other_key.status_code, other_key.json()["echo"]) == (200, {"who": "bob"})
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
        assert (await client.post("/run/local/echo", json={}, headers=ALICE)).status_code == 200
        assert await concurrency(client) == {"limit": 2, "in_progress": 0, "peak": 2, "refused": 1}


async def test_requests_without_a_key_share_one_limit(limited: httpx.AsyncClient) -> None:
    running = asyncio.ensure_future(limited.post("/run/local/sleep", json={"seconds": 0.2}))
    await until_in_progress(limited, 1)
    assert (await limited.post("/run/local/echo", json={})).status_code == 429
    assert (await running).status_code == 200


async def test_queued_requests_wait_in_queue_with_positions(limited: httpx.AsyncClient) -> None:
    jobs = [(await limited.post("/queue/local/sleep", json={"seconds": 0.2, "n": n}, headers=ALICE)).json() for n in range(3)]
    assert [job["queue_position"] for job in jobs] == [0, 0, 1]  # the first started at once
    assert [await state(limited, job) for job in jobs] == [("IN_PROGRESS", None), ("IN_QUEUE", 0), ("IN_QUEUE", 1)]
    # Another key is not held back by alice's limit: it starts although it was submitted last.
    bob = (await limited.post("/queue/local/echo", json={"who": "bob"}, headers=BOB)).json()
    assert (await completed(limited, bob)).json() == {"echo": {"who": "bob"}, "path": ""}
    assert [await state(limited, job) for job in jobs[1:]] == [("IN_QUEUE", 0), ("IN_QUEUE", 1)]
    for job in jobs:
        assert (await completed(limited, job)).json() == {"slept": 0.2}
    assert await concurrency(limited) == {"limit": 1, "in_progress": 0, "peak": 1, "refused": 0}


async def test_direct_runs_and_queue_attempts_share_the_limit(limited: httpx.AsyncClient) -> None:
    hung = (await limited.post("/queue/local/fail", json={"hang": True}, headers=ALICE)).json()
    await until_in_progress(limited, 1)
    assert (await limited.post("/run/local/echo", json={}, headers=ALICE)).status_code == 429
    assert (await limited.put(hung["cancel_url"])).status_code == 202
    await until_in_progress(limited, 0)
    assert (await limited.post("/run/local/echo", json={}, headers=ALICE)).status_code == 200


async def test_a_finished_direct_run_lets_a_queued_request_start(limited: httpx.AsyncClient) -> None:
    running = asyncio.ensure_future(limited.post("/run/local/sleep", json={"seconds": 0.2}, headers=ALICE))
    await until_in_progress(limited, 1)
    queued = (await limited.post("/queue/local/echo", json={"q": 1}, headers=ALICE)).json()
    assert await state(limited, queued) == ("IN_QUEUE", 0)
    assert (await running).status_code == 200
    assert (await completed(limited, queued)).json() == {"echo": {"q": 1}, "path": ""}


async def test_low_priority_and_retries_keep_their_order_under_the_limit(limited: httpx.AsyncClient) -> None:
    low = (await limited.post("/queue/local/echo", json={"p": "low"}, headers={**ALICE, "X-Fal-Queue-Priority": "low"})).json()
    flaky = (await limited.post("/queue/local/fail", json={"error_type": "runner_server_error", "times": 1, "key": "cq"},
                                headers=ALICE)).json()  # fmt: skip
    assert (await completed(limited, low)).status_code == 200
    assert (await completed(limited, flaky)).status_code == 200
    stats = (await limited.get("/_emulator/stats")).json()
    assert (stats["retries"], stats["concurrency"]["peak"], stats["concurrency"]["in_progress"]) == (1, 1, 0)


@pytest.mark.parametrize("value", [0, -1])
def test_limit_must_be_positive(value: int) -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1"):
        create_app(max_concurrency=value)


async def test_without_a_limit_nothing_is_refused_and_stats_say_so() -> None:
    async with await client_for(runners=1) as client:
        runs = await asyncio.gather(*(client.post("/run/local/sleep", json={"seconds": 0.05}) for _ in range(5)))
        assert [r.status_code for r in runs] == [200] * 5
        assert await concurrency(client) == {"limit": None, "in_progress": 0, "peak": 5, "refused": 0}


async def test_positions_follow_submit_order_across_keys(limited: httpx.AsyncClient) -> None:
    """Each key's waiting requests form their own lane; positions still count every request ahead
    in submit order, whatever its key, and a blocked key's requests do not hold back another's."""
    hangs = [(await limited.post("/queue/local/fail", json={"hang": True, "n": who}, headers=key)).json()
             for who, key in (("alice", ALICE), ("bob", BOB))]  # fmt: skip
    await until_in_progress(limited, 2)
    waiting = [(await limited.post("/queue/local/echo", json={"n": n}, headers=(ALICE, BOB)[n % 2])).json() for n in range(4)]
    assert [await state(limited, job) for job in waiting] == [("IN_QUEUE", n) for n in range(4)]
    assert (await limited.put(hangs[1]["cancel_url"])).status_code == 202  # bob's slot frees: his first starts
    assert (await completed(limited, waiting[1])).json() == {"echo": {"n": 1}, "path": ""}
    assert [await state(limited, job) for job in (waiting[0], waiting[2])] == [("IN_QUEUE", 0), ("IN_QUEUE", 1)]
    assert (await limited.put(waiting[2]["cancel_url"])).status_code == 202  # alice's second, not first in her lane
    assert await state(limited, waiting[0]) == ("IN_QUEUE", 0)
    assert (await completed(limited, waiting[3])).json() == {"echo": {"n": 3}, "path": ""}
    assert (await limited.put(hangs[0]["cancel_url"])).status_code == 202
    assert (await completed(limited, waiting[0])).json() == {"echo": {"n": 0}, "path": ""}
    assert (await limited.get("/_emulator/stats")).json()["queue_length"] == 0
