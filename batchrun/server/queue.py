"""The request queue: N runners, FIFO by priority, runner hints, server-side retries, start
timeouts, cancellation and bounded result retention.

Nothing here runs in the background on its own: requests start from `dispatch()` (called on
submit and whenever a runner frees up) and timers use `loop.call_later`, so the queue works in
whichever event loop first touches it, with or without ASGI lifespan events (httpx.ASGITransport
runs none).

queue_position is per *server*: all endpoints share the runners, so it counts every request ahead,
normal priority before low.

The waiting requests and their order are `waiting.WaitingLine`'s.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from typing import Any

from batchrun.server import webhooks
from batchrun.server.apps import Call, Handler
from batchrun.server.concurrency import KeyLimits
from batchrun.server.stats import Stats
from batchrun.server.waiting import WaitingLine
from batchrun.server.wire import Reply, failure_of, platform_error

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"
MAX_ATTEMPTS = 10  # fal's ceiling on server-side attempts (protocol §6.3)
# "only after fal retries the request up to five times" (protocol §9.4): the first attempt and five
# retries fail on the requested endpoint, then the request is rerouted.
FALLBACK_AFTER_ATTEMPTS = 6
MAX_HINTS = 10_000
RETRY_CONDITIONS = ("server_error", "timeout", "connection_error")  # X-Fal-Retry-Config's keys
CONNECTION_ERRORS = frozenset({"runner_connection_timeout", "runner_connection_refused", "runner_connection_error"})


class Job:
    """One queued request and, once it completes, its stored result."""

    __slots__ = (
        "id", "endpoint_id", "app_id", "path", "handler", "arguments", "origin", "key", "low", "hint", "retries",
        "start_timeout", "deadline", "state", "logs", "attempts", "gateway_id", "reply", "error", "error_type",
        "inference_time", "runner", "task", "cancelled", "waiting", "running", "completed_at", "event", "position",
        "webhook", "order", "fallback", "rerouted_to", "media_lifetime",
    )  # fmt: skip

    def __init__(
        self, *, request_id: str, endpoint_id: str, app_id: str, path: str, handler: Handler,
        arguments: dict[str, Any], origin: str, low: bool = False, hint: str | None = None,
        retries: dict[str, int] | None = None, start_timeout: float | None = None, webhook: str | None = None,
        key: str = "", fallback: tuple[str, Handler] | None = None, media_lifetime: int | None = None,
    ) -> None:  # fmt: skip
        self.id = request_id  # the id Emulator.accept gave the submit
        self.webhook = webhook
        self.endpoint_id, self.app_id, self.path = endpoint_id, app_id, path
        self.handler: Handler | None = handler
        self.arguments: dict[str, Any] | None = arguments
        self.origin = origin
        self.key = key  # whose concurrency budget its attempts spend (concurrency.key_of)
        self.low, self.hint = low, hint
        # Server-side retries left per condition (see retry_condition); a condition not in the dict,
        # or no dict at all, is bounded only by MAX_ATTEMPTS.
        self.retries = retries
        self.start_timeout = start_timeout
        self.deadline = None if start_timeout is None else time.monotonic() + start_timeout
        self.state = IN_QUEUE
        self.logs: list[dict[str, Any]] | None = None  # allocated when an attempt starts
        self.attempts = 0
        self.gateway_id = self.id
        self.reply: Reply | None = None
        self.error: str | None = None
        self.error_type: str | None = None
        self.inference_time: float | None = None
        self.runner: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancelled = False
        self.waiting = False  # in the WaitingLine (False during a retry backoff)
        self.running = False  # its attempt coroutine has started (a task may exist before that)
        self.completed_at = 0.0
        self.event: asyncio.Event | None = None  # set at its next change; only while watched
        self.position = 0  # cached queue position, valid while Queue._positions_version is current
        self.order = 0  # its place in the WaitingLine (smaller goes first)
        self.fallback = fallback  # (app id, handler) it may be rerouted to, until it is
        self.rerouted_to: str | None = None  # the alternative's endpoint id, once rerouted
        self.media_lifetime = media_lifetime  # seconds its media are kept (X-Fal-Object-Lifecycle-Preference)


class Queue:
    def __init__(
        self, *, runners: int, stats: Stats, state: Any, result_ttl: float, max_results: int,
        limits: KeyLimits, retry_backoff: float = 0.05,
    ) -> None:  # fmt: skip
        if runners < 1:
            raise ValueError("runners must be at least 1")
        self.stats, self.state = stats, state
        self.limits = limits
        self.result_ttl, self.max_results, self.retry_backoff = result_ttl, max_results, retry_backoff
        self.runner_ids = [f"runner-{i}" for i in range(runners)]
        self.free: list[str] = list(self.runner_ids)
        self.jobs: dict[str, Job] = {}
        self.waiting = WaitingLine(lane_per_key=self.limits.limit is not None)
        self.completed: collections.deque[Job] = collections.deque()  # completion order, for retention
        self.hint_runner: dict[str, str] = {}
        self._watched: set[Job] = set()

    # -- observation ---------------------------------------------------------------------------
    def watch(self, job: Job) -> asyncio.Event:
        """An event set at the job's next change (status, queue position or a new log line)."""
        if job.event is None:
            job.event = asyncio.Event()
            self._watched.add(job)
        return job.event

    def _notify(self, job: Job) -> None:
        event = job.event
        if event is not None:
            job.event = None
            self._watched.discard(job)
            event.set()

    def _order_changed(self) -> None:
        # Only waiting requests have a position, so only their watchers need waking.
        for job in [j for j in self._watched if j.waiting]:
            self._notify(job)

    def position(self, job: Job) -> int:
        """Requests ahead of `job` (0-based); 0 while it waits out a retry backoff (it goes first)."""
        return self.waiting.position(job) if job.waiting else 0

    @property
    def length(self) -> int:
        return len(self.waiting)

    @property
    def busy(self) -> int:
        return len(self.runner_ids) - len(self.free)

    # -- submission and dispatch ---------------------------------------------------------------
    def submit(self, job: Job) -> int:
        """Enqueue `job`, start what can start; returns its queue position at enqueue time."""
        self.sweep()
        self.jobs[job.id] = job
        position = self.waiting.add(job)
        if job.start_timeout is not None:
            asyncio.get_running_loop().call_later(job.start_timeout, self._start_deadline, job)
        self.dispatch()
        self._order_changed()
        return position

    def dispatch(self) -> None:
        while self.free and self.waiting:
            job = self.waiting.take(self.limits.has_room)
            if job is None:
                return  # every waiting request is held back by its key's concurrency limit
            runner = self._pick_runner(job)
            self.limits.take(job.key)
            job.state, job.runner = IN_PROGRESS, runner
            job.task = asyncio.get_running_loop().create_task(self._attempt(job, runner))
            self._notify(job)
            self._order_changed()

    def _pick_runner(self, job: Job) -> str:
        # Same hint -> same runner when it is free; otherwise the lowest free runner (fal falls back
        # to any runner), which then becomes the hint's runner.
        preferred = self.hint_runner.get(job.hint) if job.hint is not None else None
        runner = preferred if preferred in self.free else self.free[0]
        self.free.remove(runner)
        if job.hint is not None and preferred != runner:
            if len(self.hint_runner) >= MAX_HINTS:
                self.hint_runner.clear()
            self.hint_runner[job.hint] = runner
        return runner

    async def _attempt(self, job: Job, runner: str) -> None:
        job.running = True
        job.attempts += 1
        if job.attempts > 1:
            job.gateway_id = str(uuid.uuid4())
            self.stats.retries += 1
        self.stats.attempts += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert job.handler is not None and job.arguments is not None
        if job.logs is None:
            job.logs = []
        call = Call(
            job.arguments,
            job.path,
            job.origin,
            job.id,
            self.state,
            queued=True,
            logs=job.logs,
            on_log=lambda: self._notify(job),
            media_lifetime=job.media_lifetime,
        )
        try:
            reply = await job.handler(call)
        except asyncio.CancelledError:
            if not job.cancelled:
                raise  # the server is shutting down
            reply = cancelled_reply()
        except Exception as exc:  # an app bug must not kill the runner; report it like fal would
            reply = platform_error("internal_error", f"app raised {type(exc).__name__}: {exc}")
        finally:
            job.running = False
            self._release(job, runner)
        job.inference_time = round(loop.time() - started, 6)
        if reply.reset:  # a dropped connection between gateway and runner
            reply = platform_error("runner_disconnected", "the runner dropped the connection mid-response")
        if reply.retry and not job.cancelled and job.attempts < MAX_ATTEMPTS and _take_retry(job, reply):
            if job.fallback is not None and job.attempts >= FALLBACK_AFTER_ATTEMPTS:
                self._reroute(job)
            if job.deadline is not None and time.monotonic() >= job.deadline:
                self._finish(job, start_timeout_reply(job.start_timeout))
            else:
                # Back to IN_QUEUE (protocol §3.2: status can move backwards), ahead of the others.
                job.state, job.runner = IN_QUEUE, None
                loop.call_later(self.retry_backoff * 2 ** min(job.attempts - 1, 5), self._requeue, job)
                self._notify(job)
        else:
            self._finish(job, reply)
        self.dispatch()

    def _reroute(self, job: Job) -> None:
        """fal's model fallback (protocol §9.4): the next attempts run on the alternative app."""
        assert job.fallback is not None
        app_id, job.handler = job.fallback
        job.fallback = None
        job.rerouted_to = app_id + job.path
        self.stats.rerouted += 1

    def _release(self, job: Job, runner: str) -> None:
        self.limits.give(job.key)
        self.free.append(runner)
        self.free.sort(key=self.runner_ids.index)

    def _requeue(self, job: Job) -> None:
        if job.state != IN_QUEUE or job.waiting:
            return  # cancelled or timed out during the backoff
        self.waiting.add(job, front=True)
        self._order_changed()
        self.dispatch()

    def _start_deadline(self, job: Job) -> None:
        if job.state == IN_QUEUE:
            self._unqueue(job)
            self._finish(job, start_timeout_reply(job.start_timeout))

    def _unqueue(self, job: Job) -> None:
        if job.waiting:
            self.waiting.remove(job)
            self._order_changed()

    def _finish(self, job: Job, reply: Reply) -> None:
        # orjson over-allocates small outputs (~1 KiB each); a stored body gets an exact-size copy.
        reply.body = bytes(memoryview(reply.body))
        job.state, job.reply = COMPLETED, reply
        failure = failure_of(reply)
        if failure is not None:
            job.error_type, job.error = failure
            self.stats.failed += 1
        job.handler = job.arguments = job.task = None  # free what a stored result does not need
        if not job.logs:
            job.logs = None  # a stored result without logs costs no list
        job.completed_at = time.monotonic()
        self.completed.append(job)
        self.stats.completed += 1
        self._notify(job)
        if job.webhook is not None:
            webhooks.deliver(job.webhook, job.id, job.gateway_id, reply)

    # -- cancellation and retention ------------------------------------------------------------
    def cancel(self, job: Job) -> bool:
        """Request cancellation; False when the job had already completed."""
        if job.state == COMPLETED:
            return False
        if not job.cancelled:
            job.cancelled = True
            self.stats.cancelled += 1
        if job.state == IN_QUEUE:
            self._unqueue(job)
            self._finish(job, cancelled_reply())
            self.dispatch()
        elif job.task is not None:
            job.task.cancel()
            if not job.running:  # dispatched but not started: the coroutine will never run
                assert job.runner is not None
                self._release(job, job.runner)
                self._finish(job, cancelled_reply())
                self.dispatch()
        return True

    def sweep(self) -> None:
        """Forget completed results older than result_ttl or beyond max_results (oldest first)."""
        now = time.monotonic()
        while self.completed:
            oldest = self.completed[0]
            if len(self.completed) <= self.max_results and now - oldest.completed_at <= self.result_ttl:
                break
            self.completed.popleft()
            self.jobs.pop(oldest.id, None)

    def close(self) -> None:
        """Server shutdown: cancel every running attempt and wake every status stream."""
        for job in list(self.jobs.values()):
            if job.task is not None and not job.task.done():
                job.task.cancel()
        for job in list(self._watched):
            self._notify(job)


def retry_condition(reply: Reply) -> str:
    """Which of fal's retry conditions (protocol §6.3) a retryable failure falls under."""
    if reply.error_type == "request_timeout":
        return "timeout"
    if reply.error_type in CONNECTION_ERRORS:
        return "connection_error"
    return "server_error"  # runner crash/503/504, disconnect, incomplete response


def _take_retry(job: Job, reply: Reply) -> bool:
    """Spend one retry of the reply's condition; False when the job's budget for it is used up."""
    if job.retries is None:
        return True
    condition = retry_condition(reply)
    left = job.retries.get(condition)
    if left is None:
        return True
    if left <= 0:
        return False
    job.retries[condition] = left - 1
    return True


def cancelled_reply() -> Reply:
    return platform_error("client_cancelled", "Request cancelled by the client", 499)


def start_timeout_reply(timeout: float | None) -> Reply:
    return platform_error(
        "startup_timeout",
        f"No runner started the request within its start timeout of {timeout:g} s",
        504,
        (("x-fal-request-timeout-type", "user"),),
    )
