"""The output record: one dict per finished planned request, in a stable field order.

The shape is published in batchrun/schemas/record.schema.json. `arguments` are the plan's
arguments (templates such as `${{ env.X }}` stay unresolved, so resolved secrets never get here)
and everything user- or server-provided passes through the redactor as a second line of defence:
the result, the error, the logs, and the strings a server names the request by (its request id,
where its runner was), since a careless server may build those from the caller's key too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable
from typing import Any, Protocol

from batchrun.plan.planner import PlannedRequest

__all__ = ["RECORD_FIELDS", "OutcomeLike", "build_record", "isoformat"]

# The order every record is written in (optional toolkit fields come after, when present).
RECORD_FIELDS = (
    "id", "index", "job", "endpoint", "path", "mode", "arguments", "matrix", "row", "repeat",
    "status", "result", "error", "request_id", "attempts", "logs", "metrics", "timing", "served_from",
)


class OutcomeLike(Protocol):
    """What the client returns for a request (batchrun.client.fal.Outcome)."""

    ok: bool
    result: Any
    error: Any
    request_id: str | None
    attempts: int
    logs: Any
    metrics: Any
    queue_s: float | None
    served_from: str | None


def _iso_datetime(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_last_second: tuple[float, str] = (math.nan, "")  # a whole second and its text up to the ".", as one
# object: threads (a run in its own thread, a report in another) see a pair, never half an update


def isoformat(ts: float) -> str:
    """Unix seconds -> ISO 8601 UTC with milliseconds and a Z, e.g. 2026-01-02T03:04:05.678Z.

    Two per record, mostly within the same second: the date and time of the second are formatted
    once per second; the milliseconds as datetime gets them (microseconds rounded half to even,
    then cut), so the text is `_iso_datetime`'s, which tests/test_records_time.py checks."""
    global _last_second
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    second, prefix = _last_second
    if whole != second:
        prefix = _iso_datetime(whole)[:-4]  # "...:05" + ".000Z" cut
        _last_second = (whole, prefix)
    return f"{prefix}{micro // 1000:03d}Z"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    return value


def _error(error: Any) -> dict[str, Any] | None:
    error = _plain(error)
    if error is None:
        return None
    if not isinstance(error, dict):
        return {"type": "client_error", "status_code": None, "detail": str(error), "retryable": False}
    return {
        "type": str(error.get("type") or "client_error"),
        "status_code": error.get("status_code"),
        "detail": error.get("detail"),
        "retryable": bool(error.get("retryable", False)),
    }


def _object_or_none(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    # The schema wants an object: wrap a bare JSON value (a list, a string) rather than drop it.
    return {"value": value}


def build_record(
    request: PlannedRequest,
    outcome: OutcomeLike,
    *,
    started_at: float,
    finished_at: float,
    latency_s: float,
    scrub: Callable[[Any], Any],
    keep_logs: bool | None = None,
) -> dict[str, Any]:
    """The record for `request` (times in Unix seconds; latency from a monotonic clock).
    `keep_logs`: whether logs go into the record (default: the job's with_logs)."""
    ok = bool(outcome.ok)
    keep = request.job.with_logs if keep_logs is None else keep_logs
    logs = outcome.logs if keep else None
    record: dict[str, Any] = {
        "id": request.id,
        "index": request.index,
        "job": request.job.name,
        "endpoint": request.endpoint,
        "path": request.path,
        "mode": request.mode,
        "arguments": scrub(request.arguments),
        "matrix": scrub(request.matrix),
        "row": request.row,
        "repeat": request.repeat,
        "status": "ok" if ok else "error",
        "result": scrub(_object_or_none(outcome.result)) if ok else None,
        "error": None if ok else scrub(_error(outcome.error)),
        "request_id": scrub(outcome.request_id),
        "attempts": int(outcome.attempts),
        "logs": scrub(list(logs)) if logs is not None else None,
        "metrics": scrub(_object_or_none(outcome.metrics)),
        "timing": {
            "started_at": isoformat(started_at),
            "finished_at": isoformat(finished_at),
            "latency_s": round(max(0.0, latency_s), 6),
            "queue_s": None if outcome.queue_s is None else round(max(0.0, outcome.queue_s), 6),
        },
        "served_from": scrub(outcome.served_from),
    }
    rerouted_to = getattr(outcome, "rerouted_to", None)
    if rerouted_to:
        record["rerouted_to"] = scrub(rerouted_to)
    inputs = getattr(outcome, "inputs", None)
    if inputs:
        record["inputs"] = scrub(inputs)
    asked = getattr(outcome, "asked", None)
    if asked:
        record["asked"] = scrub(asked)
    if not ok and record["error"] is None:
        record["error"] = {"type": "client_error", "status_code": None, "detail": "failed without detail",
                           "retryable": False}
    return record
