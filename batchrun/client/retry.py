"""Which failed HTTP attempts are retried, what error record they leave, and how long to wait.

Pure functions: no I/O, no httpx. The client maps every transport exception to a `TransportFailure`
and every non-2xx answer to (status, headers, body) at one boundary, then asks this module for a
`Verdict`. Two questions are kept apart on purpose:

- `Verdict.retry`: retry *now*, automatically, under the job's `RetryPolicy` (fal-client's rules);
- `error["retryable"]`: could a later attempt (say `batchrun run --retry-errors`) succeed at all?

A runner_server_error is retryable but, by fal-client's default, not retried automatically.

Defaults follow fal-client 1.0.3 (docs/fal-protocol.md §6.1): transport errors, timeouts unless the
request carried X-Fal-Request-Timeout, 408, 409, 429 and ingress 502/503/504 (no x-fal-request-id)
are retried; a 504 carrying X-Fal-Request-Timeout-Type never is; other 4xx never are; platform 5xx
with a request id only when `RetryPolicy.server_errors` is set.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import math
import random
import time
from collections.abc import Mapping
from typing import Any

from batchrun.spec.model import RetryPolicy

__all__ = [
    "DETAIL_LIMIT",
    "MAX_RETRY_AFTER",
    "Phase",
    "TransportFailure",
    "Verdict",
    "backoff_delay",
    "error_record",
    "get_retried",
    "judge_response",
    "judge_transport",
    "parse_retry_after",
    "shorten",
]

# Longest string kept in an error detail: an HTML error page or an echoed data URI is not a detail.
DETAIL_LIMIT = 500
# A Retry-After longer than this is capped: a batch should not sleep for hours on one answer.
MAX_RETRY_AFTER = 300.0

# fal error types that say the caller, not the platform, ended the request: retrying is pointless.
_FINAL_ERROR_TYPES = frozenset({"client_cancelled", "client_disconnected", "bad_request"})
_RETRIED_STATUSES = frozenset({408, 409, 429})
_INGRESS_STATUSES = frozenset({502, 503, 504})


class Phase(enum.Enum):
    """What kind of HTTP call failed; it decides whether a lost answer may be retried."""

    RUN = "run"  # a direct fal.run call
    SUBMIT = "submit"  # a queue submit: a lost answer may mean an accepted (billed) request
    FOLLOW = "follow"  # status, stream, result, cancel: idempotent GETs/PUTs


@dataclasses.dataclass(frozen=True, slots=True)
class TransportFailure:
    """A request that got no HTTP answer. `sent` is False only when it provably never left."""

    sent: bool
    timeout: bool
    message: str
    fatal: bool = False  # a local misconfiguration (bad URL scheme, bad header): retrying won't help
    kind: str | None = None  # the error type when neither http_timeout nor connection_error says it


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    error: dict[str, Any]  # the record's error object (detail not yet redacted)
    retry: bool  # retry automatically under the policy, attempts permitting
    retry_after: float | None = None  # the server's wish, overriding the computed backoff
    rate_limited: bool = False  # a 429: the executor's AIMD limiter backs off

    @property
    def reason(self) -> str:
        """One short line for progress displays and logs."""
        code = self.error["status_code"]
        return self.error["type"] if code is None else f"{self.error['type']} (HTTP {code})"


def error_record(type_: str, status_code: int | None, detail: Any, retryable: bool) -> dict[str, Any]:
    return {"type": type_, "status_code": status_code, "detail": detail, "retryable": retryable}


def judge_transport(
    failure: TransportFailure, *, phase: Phase, policy: RetryPolicy, start_timeout_sent: bool
) -> Verdict:
    """Classify an attempt that got no answer at all."""
    type_ = failure.kind or ("http_timeout" if failure.timeout else "connection_error")
    if failure.fatal:
        return Verdict(error_record(type_, None, failure.message, False), retry=False)
    if not failure.sent:
        # Connect errors and connect/pool timeouts: nothing reached the server, so a retry cannot
        # duplicate anything. fal-client skips timeouts when X-Fal-Request-Timeout was sent; that
        # rule is about a deadline that ran out on the server, which a connect timeout is not.
        return Verdict(error_record(type_, None, failure.message, True), retry=True)
    if phase is Phase.SUBMIT and not policy.unknown_outcome:
        # The body went out and the answer was lost: fal may have queued (and will bill) it.
        # Resubmitting blindly double-bills, so the record says so and a human (or the
        # `unknown_outcome` opt-in) decides.
        detail = f"the queue submit was sent but its answer was lost ({failure.message}); the request may be running"
        return Verdict(error_record("outcome_unknown", None, detail, True), retry=False)
    # Direct run calls are retried: fal never retries them server-side, cancels the app when the
    # caller disconnects (a 499 client_disconnected, not billed as a success), so a retry is the
    # only way to get the answer; fal-client does the same. Status/result GETs are idempotent.
    retry = not (failure.timeout and start_timeout_sent)
    return Verdict(error_record(type_, None, failure.message, True), retry=retry)


def judge_response(
    status_code: int, headers: Mapping[str, str], body: Any, text: str, *, policy: RetryPolicy
) -> Verdict:
    """Classify a non-2xx answer. `body` is the parsed JSON (None when not JSON), `text` the raw
    body for the detail of non-JSON answers. `headers` may be any case-insensitive mapping or a dict
    with lower-case names."""
    h = {k.lower(): v for k, v in headers.items()}
    fal_type = None
    if isinstance(body, dict) and isinstance(body.get("error_type"), str):
        fal_type = body["error_type"]
    fal_type = fal_type or h.get("x-fal-error-type") or None
    has_request_id = _has_request_id(h)
    user_timeout = status_code == 504 and "x-fal-request-timeout-type" in h

    if fal_type:
        type_ = fal_type
    elif status_code == 422:
        type_ = "validation_error"
    else:
        type_ = "http_error"

    rate_limited = status_code == 429
    if user_timeout:
        retry = False  # the caller's own start_timeout ran out; fal will not requeue it either
    elif status_code in _RETRIED_STATUSES:
        retry = True
    elif status_code in _INGRESS_STATUSES and not has_request_id:
        retry = True  # the load balancer answered; the request never reached fal's queue
    elif status_code >= 500:
        retry = policy.server_errors
    else:
        retry = False

    retryable = _retryable(status_code, h, fal_type)
    retry = retry and retryable
    retry_after = parse_retry_after(h.get("retry-after")) if retry else None
    detail = _detail(status_code, body, text)
    return Verdict(error_record(type_, status_code, detail, retryable), retry, retry_after, rate_limited)


def get_retried(status_code: int, headers: Mapping[str, str], *, result: bool) -> bool:
    """Whether an idempotent status or result GET is sent again after a non-2xx answer: on
    408/409/429 and ingress 5xx; a status GET also on any other 5xx. A result GET's other 5xx is
    the model's own stored answer, so it is the result, not a failure to fetch it."""
    if status_code in _RETRIED_STATUSES:
        return True
    if status_code >= 500 and not result:
        return True
    return status_code in _INGRESS_STATUSES and not _has_request_id({k.lower(): v for k, v in headers.items()})


def _has_request_id(h: Mapping[str, str]) -> bool:
    """`h` with lower-case names; an empty id counts as none."""
    return bool(h.get("x-fal-request-id"))


def _retryable(status_code: int, h: Mapping[str, str], fal_type: str | None) -> bool:
    if fal_type in _FINAL_ERROR_TYPES:
        return False
    # fal marks temporary failures with X-Fal-Needs-Retry (or X-Fal-Retryable on model errors).
    for name in ("x-fal-needs-retry", "x-fal-retryable"):
        flag = h.get(name, "").strip().lower()
        if flag in {"1", "true", "yes"}:
            return True
        if flag in {"0", "false", "no"}:
            return False
    return status_code in _RETRIED_STATUSES or status_code >= 500


def _detail(status_code: int, body: Any, text: str) -> Any:
    if isinstance(body, dict) and "detail" in body:
        return shorten(body["detail"])
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return shorten(body["error"])
    snippet = " ".join(text.split())
    if not snippet:
        return f"HTTP {status_code} with an empty body"
    return shorten(f"HTTP {status_code}: {snippet}")


def shorten(value: Any, limit: int = DETAIL_LIMIT) -> Any:
    """Cut every string inside a JSON value to `limit` characters (a 422 may echo a whole data URI
    back in `input`)."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[: limit - 1] + "…"
    if isinstance(value, list):
        return [shorten(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: shorten(v, limit) for k, v in value.items()}
    return value


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), capped at
    MAX_RETRY_AFTER; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff_delay(
    retry_number: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to sleep before retry `retry_number` (1 = the second attempt):
    min(initial_delay * 2**(n-1), max_delay) * U(0.5, 1.5), clamped to max_delay (fal-client's rule),
    or the server's Retry-After when it sent one."""
    if retry_after is not None:
        return retry_after
    base = min(policy.initial_delay * 2.0 ** min(retry_number - 1, 64), policy.max_delay)
    return min(base * rng.uniform(0.5, 1.5), policy.max_delay)
