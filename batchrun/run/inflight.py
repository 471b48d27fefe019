"""What a worker knows about the request it is on, and the outcomes of requests that end without
an answer of their own (batchrun.run.executor runs them).

- `Item`: a planned request as the producer hands it to a worker (maybe a journaled queue request
  to re-attach, or a submit an earlier run left with an unknown outcome).
- `Active`: the request while a worker is on it: the cancel scope that stops it (the worker's
  lane, see Executor._work), its slot, whether it is journaled, and the newest retry the client
  announced. The interrupt and halt logic decide from
  this whether to stop waiting for it.
- `Retry`: what failed and when the next attempt would start; once the run is stopping that attempt
  does not start, and after a gate or budget stop `stopped_retry_outcome` is the request's record.
- `internal_error_outcome`: the record of a request whose handling raised (the per-request safety net).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any

import anyio

from batchrun.client.fal import Outcome
from batchrun.client.queue import QueueHandle
from batchrun.client.retry import error_record
from batchrun.output.journal import InFlight
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import REDACTED
from batchrun.run.limits import Slot

__all__ = [
    "Active",
    "Item",
    "Retry",
    "internal_error_outcome",
    "parse_iso",
    "queue_handle",
    "redacted_handle",
    "stopped_retry_outcome",
    "unfollowable_outcome",
    "unknown_outcome",
]

# The client's retry reason: `type`, `type (HTTP n)`, or `GET x: ` before either for a status/result GET.
_REASON = re.compile(r"^(?:GET \S+: )?(.+?)(?: \(HTTP (\d+)\))?$")


def queue_handle(entry: InFlight) -> QueueHandle:
    """The client's handle of a journaled queue request (the journal, in batchrun.output, stores the
    same four fields but knows nothing of the client)."""
    return QueueHandle(entry.request_id, entry.status_url, entry.response_url, entry.cancel_url)


@dataclasses.dataclass(frozen=True, slots=True)
class Item:
    request: PlannedRequest
    handle: InFlight | None  # a journaled queue request to re-attach instead of submitting
    unknown_since: str | None = None  # an earlier run died with this submit on the wire (at this time)


@dataclasses.dataclass(slots=True)
class Active:
    """A request a worker is on; the interrupt logic decides from this whether to stop waiting."""

    request: PlannedRequest
    scope: anyio.CancelScope  # the worker's lane: cancelled only while this request is registered
    slot: Slot | None = None
    journaled: bool = False
    backoff_until: float | None = None  # a submit sleeping before its next attempt, until then (monotonic)
    retry: Retry | None = None  # the newest retry the client announced
    retry_stopped: bool = False  # the run stopped that retry: the request ends with the error it had
    sent: bool = False  # handed to the client (a direct call or a submit went out)


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """A retry announced by the client (`Events.retrying`): what failed, and when the next attempt
    starts. Once the run is stopping it does not start (see `batchrun.run.stopping.Stop.stop_retry`)."""

    attempts: int  # attempts made so far
    reason: str  # the client's short reason: `type`, `type (HTTP n)`, or `GET x: ...` for a status/result GET
    until: float  # monotonic time the next attempt starts

    @property
    def follows(self) -> bool:
        """A status or result GET of a journaled queue request (not a new attempt of the request)."""
        return self.reason.startswith("GET ")


def stopped_retry_outcome(retry: Retry, why: str, request_id: str | None) -> Outcome:
    """The error a request had when a gate or the budget stopped the run before its retry. The
    client announces a retry by its short reason, so the record keeps the error's type and HTTP
    status, not the server's detail text."""
    m = _REASON.match(retry.reason)
    type_, code = (m.group(1), int(m.group(2)) if m.group(2) else None) if m else (retry.reason, None)
    detail = (f"attempt {retry.attempts} failed with {retry.reason}; not retried because the run was stopping "
              f"({why}); `batchrun run --retry-errors` sends it again")
    return _failed(error_record(type_, code, detail, True), request_id, retry.attempts)


def unknown_outcome(since: str) -> Outcome:
    detail = (f"an earlier run stopped (killed or crashed) at {since} while this request's queue submit was "
              "on the wire, so it may have been accepted and be running remotely under an id batchrun never "
              "received; it was not submitted again, since that could pay twice (re-run with --retry-errors "
              "to submit it anyway, or set retries.unknown_outcome to do so automatically)")
    return _failed(error_record("outcome_unknown", None, detail, True), None, 1)


def redacted_handle(entry: InFlight) -> bool:
    """Whether the journal could keep this queue request's id or URLs only redacted (the server put
    the caller's key in them): a later run cannot follow such a request."""
    return any(REDACTED in text for text in (entry.request_id, entry.status_url, entry.response_url))


def unfollowable_outcome(entry: InFlight) -> Outcome:
    """The record of a journaled queue request `redacted_handle` says cannot be followed. It was
    accepted (and billed), so it is not submitted again either."""
    detail = (f"the queue accepted this request at {entry.at} under an id or URLs that carry a secret, which the "
              "journal keeps only redacted, so this run cannot collect its result; it was not submitted again, "
              "since that could pay twice (re-run with --retry-errors to submit it anyway)")
    return _failed(error_record("outcome_unknown", None, detail, True), entry.request_id, 1)


def internal_error_outcome(what: str, request_id: str | None) -> Outcome:
    """A request whose handling raised (a bug in batchrun, `what`: its redacted text). Not retryable:
    the same bug would raise again. `request_id`: a queue request it had submitted, which the record
    keeps so that `batchrun cancel` or fal's dashboard can find it."""
    return _failed(error_record("internal_error", None, f"batchrun failed while handling this request: {what}",
                                False), request_id, 0)


def _failed(error: dict[str, Any], request_id: str | None, attempts: int) -> Outcome:
    return Outcome(False, None, error, request_id, attempts, None, None, None, None)


def parse_iso(text: str, *, default: float) -> float:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
