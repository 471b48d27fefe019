"""Concurrency limits with AIMD back-off, per-job limits and rate limits."""

from __future__ import annotations

import anyio
import pytest

from batchrun.run.limits import AdaptiveLimit, Limits, RateLimiter
from batchrun.spec.model import Job, RateLimit

pytestmark = pytest.mark.anyio


async def _peak(limits: Limits, job: Job, n: int, hold: float = 0.01) -> int:
    running = peak = 0

    async def one() -> None:
        nonlocal running, peak
        async with limits.slot(job):
            running += 1
            peak = max(peak, running)
            await anyio.sleep(hold)
            running -= 1

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return peak


async def test_global_limit_bounds_concurrency() -> None:
    """20 requests through a limit of 4 never run more than 4 at once."""
    assert await _peak(Limits(4), Job(name="j", endpoint="e"), 20) == 4


async def test_job_limit_is_below_the_global_one() -> None:
    """A job's own concurrency caps it even when the global limit is higher."""
    assert await _peak(Limits(8), Job(name="j", endpoint="e", concurrency=2), 10) == 2


async def test_aimd_halves_once_per_burst_and_recovers() -> None:
    """A 429 halves the effective limit (min 1); 429s from slots granted before it do not halve again;
    N successes add one back, up to the configured limit."""
    limit = AdaptiveLimit(8, increase_after=3)
    epochs = [await limit.acquire() for _ in range(4)]
    limit.rate_limited(epochs[0])
    limit.rate_limited(epochs[1])  # same burst: ignored
    assert limit.effective == 4
    for _ in range(4):
        limit.release()
    for _ in range(3):
        limit.rate_limited(await limit.acquire())
        limit.release()
    assert limit.effective == 1
    limit.rate_limited(await limit.acquire())
    limit.release()
    assert limit.effective == 1  # never below one
    for _ in range(3 * 9):
        limit.succeeded()
    assert limit.effective == 8  # +1 per 3 successes, capped at the limit


async def test_shrunk_limit_is_enforced_and_growth_wakes_waiters() -> None:
    """After halving, new acquirers wait until in-flight slots drop below the effective limit."""
    limit = AdaptiveLimit(2, increase_after=1)
    e = await limit.acquire()
    await limit.acquire()
    limit.rate_limited(e)
    limit.release()
    got = anyio.Event()

    async def waiter() -> None:
        await limit.acquire()
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        assert not got.is_set() and limit.in_use == 1 and limit.effective == 1
        limit.succeeded()  # back to 2: the waiter gets the slot
        await got.wait()
    assert limit.in_use == 2


async def test_cancelled_waiter_leaves_no_slot_behind() -> None:
    """A waiter cancelled while queued does not leak or steal a slot."""
    limit = AdaptiveLimit(1)
    await limit.acquire()
    with anyio.move_on_after(0.01):
        await limit.acquire()
    limit.release()
    assert limit.in_use == 0
    await limit.acquire()
    assert limit.in_use == 1


async def test_rate_limiter_spaces_starts() -> None:
    """per_second=50: 6 starts take at least 5 intervals (0.1 s)."""
    rate = RateLimiter(50)
    t0 = anyio.current_time()
    for _ in range(6):
        await rate.wait()
    assert anyio.current_time() - t0 >= 0.099


async def test_global_rate_from_spec() -> None:
    """Limits(rate=RateLimit(per_second)) applies to every job."""
    limits = Limits(10, rate=RateLimit(per_second=100))
    t0 = anyio.current_time()
    await _peak(limits, Job(name="j", endpoint="e"), 5, hold=0)
    assert anyio.current_time() - t0 >= 0.039
