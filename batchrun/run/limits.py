"""Concurrency and rate limits for the executor's workers.

- `AdaptiveLimit`: at most `effective` requests at once. With `adaptive=True` it follows AIMD:
  a 429 (rate limited) halves `effective` (never below 1), once per burst: only a 429 from a
  request that started after the last decrease counts, and none within the burst window after it
  (`BURST_S`, or the 429's Retry-After when longer: until then the key is known to be full, so
  more 429s say nothing new). After the window, every `increase_after` successes double
  `effective` back up to what the last decrease halved, and beyond that grow it by a quarter (at
  least 1), up to the configured limit. Before, each 429 of a new request halved
  again and growth was +1 per 10 successes reset by any 429: at 5% random 429s a limit of 24 sat
  at 1-2.
- `RateLimiter`: an evenly spaced token schedule, `per_second` requests per second, no burst.
- `Limits`: the global limit (adaptive) plus one static limit and one optional rate per job.

A request refused with 429 keeps its slot while it sleeps until its Retry-After (decided, not an
oversight). fal's limit is per key, across all apps: a 429 says the key already has its maximum
in progress, so the slot our sleeper frees on fal's side is not ours to fill. Handing our slot to
another worker would send a request that is almost surely refused too (nothing finished yet, or
there would be no 429), so every sleeper would beget another: a burst of 429s per Retry-After,
attempts burned towards max_attempts (ending as error records), and the woken request queued
behind newer ones. Holding it counts sleepers against the limit that AIMD has just halved, so
what we send shrinks at once to what fal takes, and Retry-After, a signal about the key, is
honoured for the key rather than for one request. The price: a 429 caused by another client of
the same key slows us for one Retry-After too, which is the same back-off it asks of everyone.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import anyio

from batchrun.spec.model import Job, RateLimit

__all__ = ["BURST_S", "AdaptiveLimit", "Limits", "RateLimiter", "Slot"]

# 429s within this long after a decrease belong to the same burst (requests sent just before it,
# answered just after): about one round trip of a busy API.
BURST_S = 1.0


class AdaptiveLimit:
    """A FIFO concurrency limit whose size can shrink on 429 and grow back (AIMD)."""

    def __init__(self, limit: int, *, adaptive: bool = True, increase_after: int = 10,
                 clock: Callable[[], float] = anyio.current_time) -> None:
        if limit < 1:
            raise ValueError("a concurrency limit must be at least 1")
        self._clock = clock
        self._quiet_until = float("-inf")  # the current burst's window: no decrease, no growth
        self._before_cut = limit  # the effective limit the last decrease halved
        self.limit = limit
        self.effective = limit
        self.adaptive = adaptive
        self.increase_after = increase_after
        self.in_use = 0
        self.epoch = 0  # bumped on every decrease
        self._streak = 0
        self._waiters: collections.deque[anyio.Event] = collections.deque()

    async def acquire(self) -> int:
        """Wait for a free slot; return the epoch the slot was granted in."""
        if self.in_use < self.effective and not self._waiters:
            self.in_use += 1
            return self.epoch
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # we were handed a slot we will not use: pass it on
            else:
                self._waiters.remove(event)
            raise
        return self.epoch

    def _wake(self) -> None:
        # Hand free slots to waiters in arrival order; the slot is counted at hand-off so that a
        # newcomer cannot take it before the woken waiter runs.
        while self.in_use < self.effective and self._waiters:
            self.in_use += 1
            self._waiters.popleft().set()

    def release(self) -> None:
        self.in_use -= 1
        self._wake()

    def succeeded(self) -> None:
        if not self.adaptive or self.effective >= self.limit:
            self._streak = 0
            return
        self._streak += 1
        if self._streak >= self.increase_after and self._clock() >= self._quiet_until:
            self._streak = 0
            if self.effective < self._before_cut:
                # Back toward where the last burst found us at once (doubling), then carefully.
                self.effective = min(self._before_cut, self.effective * 2)
            else:
                self.effective = min(self.limit, self.effective + max(1, self.effective // 4))
            self._wake()

    def rate_limited(self, epoch: int, retry_after: float | None = None) -> None:
        """A request whose slot was granted in `epoch` got a 429 (asking to wait `retry_after` s)."""
        if not self.adaptive or epoch != self.epoch:
            return
        now = self._clock()
        if now < self._quiet_until:
            return  # the same burst: it has halved the limit already
        self._streak = 0
        self._before_cut = self.effective
        self.effective = max(1, self.effective // 2)
        self.epoch += 1
        self._quiet_until = now + max(BURST_S, retry_after or 0.0)


class RateLimiter:
    """At most `per_second` starts per second, evenly spaced."""

    def __init__(self, per_second: float) -> None:
        if per_second <= 0:
            raise ValueError("rate_limit.per_second must be > 0")
        self.interval = 1.0 / per_second
        self._next = 0.0

    async def wait(self) -> None:
        now = anyio.current_time()
        at = max(now, self._next)
        self._next = at + self.interval
        if at > now:
            await anyio.sleep(at - now)


class Slot:
    """One granted request slot: report 429s and successes through it."""

    def __init__(self, limits: Limits, job: str, epoch: int) -> None:
        self._limits = limits
        self.job = job
        self.epoch = epoch

    def rate_limited(self, retry_after: float | None = None) -> None:
        self._limits.global_limit.rate_limited(self.epoch, retry_after)

    def succeeded(self) -> None:
        self._limits.global_limit.succeeded()


class Limits:
    """Global (adaptive) and per-job limits, and optional global and per-job rates."""

    def __init__(self, concurrency: int, *, rate: RateLimit | None = None, increase_after: int = 10) -> None:
        self.global_limit = AdaptiveLimit(concurrency, adaptive=True, increase_after=increase_after)
        self.global_rate = RateLimiter(rate.per_second) if rate is not None else None
        self._job_limits: dict[str, AdaptiveLimit] = {}
        self._job_rates: dict[str, RateLimiter] = {}

    def add_job(self, job: Job) -> None:
        if job.concurrency is not None and job.name not in self._job_limits:
            self._job_limits[job.name] = AdaptiveLimit(job.concurrency, adaptive=False)
        if job.rate_limit is not None and job.name not in self._job_rates:
            self._job_rates[job.name] = RateLimiter(job.rate_limit.per_second)

    @property
    def effective(self) -> int:
        return self.global_limit.effective

    def slot(self, job: Job) -> _Holding:
        """Hold the job's slot, then a global slot, then wait for the rates (`async with`)."""
        return _Holding(self, job)


class _Holding:
    """`Limits.slot`'s async context manager: a class, not a generator-based one, because every
    request enters one (a generator, its frame and the contextlib wrapper cost ~2 us a request)."""

    __slots__ = ("_job", "_job_limit", "_limits")

    def __init__(self, limits: Limits, job: Job) -> None:
        self._limits = limits
        self._job = job
        self._job_limit: AdaptiveLimit | None = None

    async def __aenter__(self) -> Slot:
        limits, job = self._limits, self._job
        limits.add_job(job)
        job_limit = self._job_limit = limits._job_limits.get(job.name)
        if job_limit is not None:
            await job_limit.acquire()
        try:
            epoch = await limits.global_limit.acquire()
            try:
                job_rate = limits._job_rates.get(job.name)
                if job_rate is not None:
                    await job_rate.wait()
                if limits.global_rate is not None:
                    await limits.global_rate.wait()
            except BaseException:
                limits.global_limit.release()
                raise
        except BaseException:
            if job_limit is not None:
                job_limit.release()
            raise
        return Slot(limits, job.name, epoch)

    async def __aexit__(self, *exc_info: object) -> None:
        self._limits.global_limit.release()
        if self._job_limit is not None:
            self._job_limit.release()
