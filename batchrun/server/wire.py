"""What goes on the wire: the Reply value every app returns, JSON codecs and fal-shaped errors.

Error bodies follow docs/fal-protocol.md §5: platform ("request") errors are
`{"detail": str, "error_type": str}` plus `X-Fal-Error-Type`; model errors are
`{"detail": [{loc, msg, type, url, ctx?, input?}]}`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson  # several times faster than the stdlib on the server's hot path


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes) -> Any:
    return orjson.loads(data)



def trim_oldest(store: dict[Any, Any], limit: int) -> None:
    """Keep a bookkeeping dict bounded: beyond `limit` entries, forget the oldest half (insertion order)."""
    if len(store) > limit:
        for old in list(store)[: limit // 2]:
            del store[old]

JSON_HEADERS: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)

# Platform error types whose failure a queue retries on another runner (protocol §6.3 "server_error"
# and "connection_error"); an app's own 500/502 and every 4xx are final.
RETRYABLE_ERROR_TYPES = frozenset(
    {
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "request_timeout",
    }
)

# Typical HTTP status of each platform error type (protocol §5.1).
ERROR_TYPE_STATUS = {
    "request_timeout": 504,
    "startup_timeout": 504,
    "runner_scheduling_failure": 503,
    "runner_connection_timeout": 503,
    "runner_disconnected": 503,
    "runner_connection_refused": 503,
    "runner_connection_error": 503,
    "runner_incomplete_response": 502,
    "runner_server_error": 500,
    "client_disconnected": 499,
    "client_cancelled": 499,
    "bad_request": 400,
    "internal_error": 500,
    "concurrent_requests_limit": 429,
}


@dataclasses.dataclass(slots=True)
class Reply:
    """One answer of an app (or of the platform on its behalf).

    `error_type`/`error` classify a failure for the queue's status body; `retry` says the queue may
    run it again on another runner; `ingress` means "sent by the load balancer", so no request id;
    `reset` means drop the connection after the headers; `chunked` sends the body in pieces without
    Content-Length, `trickle` one byte every `trickle` seconds (faults a client must bound).
    """

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = JSON_HEADERS
    error_type: str | None = None
    error: str | None = None
    retry: bool = False
    ingress: bool = False
    reset: bool = False
    chunked: bool = False
    trickle: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status < 400 and self.error_type is None


def json_reply(value: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, dumps(value), JSON_HEADERS + headers)


def platform_error(
    error_type: str, detail: str, status: int | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    """A platform error: detail string + error_type in body and X-Fal-Error-Type header."""
    code = status if status is not None else ERROR_TYPE_STATUS.get(error_type, 500)
    return Reply(
        code,
        dumps({"detail": detail, "error_type": error_type}),
        JSON_HEADERS + (("x-fal-error-type", error_type),) + headers,
        error_type=error_type,
        error=detail,
        retry=error_type in RETRYABLE_ERROR_TYPES,
    )


def model_error(items: list[dict[str, Any]], status: int = 422) -> Reply:
    """A model (validation) error: fal's detail list (protocol §5.2)."""
    first = items[0] if items else {}
    return Reply(
        status,
        dumps({"detail": items}),
        JSON_HEADERS,
        error_type=str(first.get("type", "validation_error")),
        error=str(first.get("msg", "validation error")),
    )


def model_error_item(
    loc: list[str | int], msg: str, type_: str, *, ctx: dict[str, Any] | None = None, input_: Any = None
) -> dict[str, Any]:
    item: dict[str, Any] = {"loc": loc, "msg": msg, "type": type_, "url": f"https://docs.fal.ai/errors/#{type_}"}
    if ctx is not None:
        item["ctx"] = ctx
    item["input"] = input_
    return item


def failure_of(reply: Reply) -> tuple[str, str] | None:
    """(error_type, error) for a failed reply, as the queue status reports it; None on success."""
    if reply.ok:
        return None
    if reply.error_type is not None:
        return reply.error_type, reply.error or f"HTTP {reply.status}"
    return ("internal_error" if reply.status >= 500 else "bad_request"), reply.error or f"HTTP {reply.status}"
