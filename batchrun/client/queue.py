"""The queue side of a subscribe, without HTTP: the handle, the executor's event hooks, and what a
request's status bodies (submit answer, SSE events, polls) have told us so far.

The client (batchrun.client.fal) feeds every status body to `CallState.take`, whichever way it arrived;
`CallState` turns them into events (status changes, each new log line once) and into the Outcome's
queue time, logs, metrics and error type.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Protocol

from batchrun.client.retry import shorten
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import Redactor

__all__ = ["STATUSES", "Events", "InvalidAnswer", "CallState", "QueueHandle"]

STATUSES = frozenset({"IN_QUEUE", "IN_PROGRESS", "COMPLETED"})


class InvalidAnswer(Exception):
    """A 2xx answer that breaks the protocol; becomes an `invalid_response` error."""


@dataclasses.dataclass(slots=True)
class QueueHandle:
    """What the journal stores for a submitted queue request; JSON-able via asdict."""

    request_id: str
    status_url: str
    response_url: str
    cancel_url: str


class Events(Protocol):
    """Hooks the executor passes to every call (fal-client's on_enqueue/on_queue_update roles)."""

    async def submitted(self, request: PlannedRequest, handle: QueueHandle) -> None:
        """Awaited (shielded) as soon as a submit answers, before waiting: the journal write."""

    def status(self, request: PlannedRequest, status: str, queue_position: int | None) -> None:
        """A status or queue-position change."""

    def log(self, request: PlannedRequest, entry: dict[str, Any]) -> None:
        """One new runner log line (with_logs), already redacted."""

    def retrying(self, request: PlannedRequest, attempt: int, delay: float, reason: str, *, rate_limited: bool) -> None:
        """Attempt `attempt` failed with `reason`; sleeping `delay` s before the next one. Also
        called for retried status/result GETs (reason names the GET); those are not attempts."""


@dataclasses.dataclass(slots=True)
class CallState:
    """What one call has learnt so far; survives a client timeout to build its Outcome."""

    attempts: int = 0
    handle: QueueHandle | None = None
    status: tuple[str, int | None] | None = None
    queued_since: float | None = None
    queue_s: float | None = None
    logs: list[dict[str, Any]] | None = None
    metrics: dict[str, Any] | None = None
    error_type: str | None = None  # from a COMPLETED status carrying error_type
    inputs: dict[str, dict[str, Any]] | None = None
    asked: dict[str, Any] | None = None  # the prepared call's options (fal._Prepared.asked)
    first_position: int | None = None  # the first queue_position seen
    updates: int = 0  # queue status updates seen (changes of status or position)

    def asked_seen(self) -> dict[str, Any] | None:
        """`asked` with what the queue reported (for a queue request that got a handle)."""
        if self.asked is None:
            return None
        asked = dict(self.asked)
        if self.handle is not None:
            asked["queue"] = {"first_position": self.first_position, "updates": self.updates}
        return asked

    def take(self, request: PlannedRequest, events: Events, redactor: Redactor, data: Any) -> bool:
        """Take in one status body; True when it is COMPLETED. Raises InvalidAnswer for a body
        that is not a status (fal-client raises on unknown status values too)."""
        if not isinstance(data, dict) or data.get("status") not in STATUSES:
            status = data.get("status") if isinstance(data, dict) else data
            raise InvalidAnswer(f"unknown queue status {shorten(redactor.text(repr(status)), 100)}")
        status = data["status"]
        position = data.get("queue_position") if status == "IN_QUEUE" else None
        position = position if isinstance(position, int) and not isinstance(position, bool) else None
        now = time.monotonic()
        if self.queue_s is None:
            self.queue_s = 0.0
        if status == "IN_QUEUE":
            if self.queued_since is None:
                self.queued_since = now
        else:
            self.stop_queue_clock(now)
        # A status change comes before the log lines it brings, except COMPLETED, which comes last.
        if status != "COMPLETED":
            self._changed(request, events, status, position)
        logs = data.get("logs")
        if request.job.with_logs and isinstance(logs, list):
            seen = self.logs if self.logs is not None else []
            self.logs = seen
            for entry in logs[len(seen) :]:  # status bodies repeat every log line so far
                if isinstance(entry, dict):
                    entry = redactor.scrub(entry)
                    seen.append(entry)
                    events.log(request, entry)
        if status != "COMPLETED":
            return False
        self._changed(request, events, status, position)
        if isinstance(data.get("metrics"), dict):
            self.metrics = data["metrics"]
        if isinstance(data.get("error_type"), str):
            self.error_type = data["error_type"]
        if request.job.with_logs and self.logs is None:
            self.logs = []
        return True

    def stop_queue_clock(self, now: float | None = None) -> None:
        if self.queued_since is not None:
            now = time.monotonic() if now is None else now
            self.queue_s = (self.queue_s or 0.0) + now - self.queued_since
            self.queued_since = None

    def resubmitted(self, handle: QueueHandle) -> None:
        """A new queue request replaces the previous one (queue time keeps adding up)."""
        self.handle = handle
        self.status = None
        self.stop_queue_clock()

    def _changed(self, request: PlannedRequest, events: Events, status: str, position: int | None) -> None:
        if self.status != (status, position):
            self.status = (status, position)
            self.updates += 1
            if position is not None and self.first_position is None:
                self.first_position = position
            events.status(request, status, position)
