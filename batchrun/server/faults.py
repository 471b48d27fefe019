"""local/fail: fault injection chosen by the request's arguments.

Arguments (combine freely; the first matching kind wins, in this order):
  delay: s             wait s seconds before answering
  hang: true           never answer (a queued request stays IN_PROGRESS until cancelled)
  times: n, key: k     fail only the first n attempts carrying key k, then succeed with echo's result
  slow: s              answer (echo's result) only after s seconds: slower than a client's timeout
  echo_request: true   an error (status, default 400) whose body echoes the request's headers and
                       arguments, as careless servers do: secrets must not survive it
  bad_json: true       200 whose body is not JSON
  surrogates: true     200 (or, with status: 422, a model error) whose JSON holds lone surrogate
                       escapes ("\\ud800") in values and a key: valid JSON text, but not Unicode
  deep_json: n         200 whose body is a JSON object nested n levels deep (parsers may overflow)
  not_object: true     200 whose body is a JSON list
  trickle: s           200 echo's result, its body sent one byte every s seconds (chunked): a
                       client's idle timer never fires, only a deadline ends it
  big: n               200 `{"blob": "aaa..."}` of about n bytes, chunked (no Content-Length)
  gzip_bomb: n         200 with Content-Encoding: gzip whose body inflates to about n bytes
  reset: true          drop the connection after the response headers (queue: runner_disconnected)
  ingress: true        nginx HTML error without x-fal-request-id (status 502/503/504, default 503);
                       on the queue it is the *submit* that fails this way
  status: 429          concurrent_requests_limit + X-Fal-Needs-Retry: 1 (+ Retry-After: retry_after)
  status: 422          fal model-error detail list (or the caller's own `detail` list)
  error_type: t        platform error t (status from protocol §5.1 unless `status` is given)
  status: n            any other status: `{"detail": "injected failure: HTTP n"}`
  (nothing)            500 runner_server_error
Queue-only faults (with times/key, the runs after the failures are left succeed normally):
  submit: 429          the submit is refused with concurrent_requests_limit (X-Fal-Needs-Retry: 1)
  submit: reset        the submit is *accepted* (enqueued) but the connection drops before its
                       answer: the client cannot know the request id (an unknown outcome)
  submit: slow         the submit is enqueued and answered only after submit_delay seconds (default
                       5), whether or not the caller is still there (a slow ingress)
  submit: no_request_id | not_json | not_object
                       a 200 submit answer that breaks the protocol (nothing is enqueued)
  status_value: s      status polls and SSE events report the unknown status s
  key_in_id: true      the request id (and so the status/response/cancel URLs) starts with the
                       caller's key, as a careless server's might
  handle_origin: URL   the submit answer's status/response/cancel URLs name this origin instead of
                       the server's own (a hostile or confused queue pointing at another host)
Platform errors listed as retryable in wire.RETRYABLE_ERROR_TYPES, and statuses 503/504, are retried
by the queue on another runner unless X-Fal-No-Retry, within X-Fal-Retry-Config's budgets.
"""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from batchrun.server.apps import Call
from batchrun.server.wire import (
    Reply,
    dumps,
    model_error,
    model_error_item,
    platform_error,
    trim_oldest,
)

NGINX_BODY = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
REASONS = {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}
# JSON that parsers accept (RFC 8259's grammar allows any \\u escape) but whose strings are not
# Unicode: a lone surrogate in a value, in a key, in a list; and a valid pair beside them.
LONE_SURROGATES = rb'{"text": "\ud800 lone", "\udc01key": 1, "items": ["x\udfff", "\ud83d\ude00 pair"]}'
LONE_SURROGATES_422 = rb'{"detail": [{"loc": ["body", "\ud800"], "msg": "bad \udc00 text", "type": "value_error"}]}'
MAX_KEYS = 100_000  # fault counters kept; the oldest are forgotten beyond this


def _attempt_fails(args: dict[str, Any], counts: dict[str, int]) -> bool:
    """Count this attempt against `times`/`key`; True while the key has failures left."""
    times = args.get("times")
    if times is None:
        return True
    key = str(args.get("key", ""))
    seen = counts.get(key, 0) + 1
    counts[key] = seen
    trim_oldest(counts, MAX_KEYS)
    try:
        return seen <= int(times)
    except (TypeError, ValueError):
        return True


def ingress_reply(args: dict[str, Any]) -> Reply:
    code = args.get("status", 503)
    code = code if code in REASONS else 503
    body = NGINX_BODY.format(code=code, reason=REASONS[code]).encode()
    return Reply(code, body, (("content-type", "text/html"),), error_type="ingress_error",
                 error=f"{code} {REASONS[code]}", ingress=True)


SUBMIT_FAULTS = ("429", "reset", "no_request_id", "not_json", "not_object")


def seconds(value: Any, default: float) -> float:
    """A delay argument: a non-negative number of seconds, else `default`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return default
    return float(value)


def submit_fault(args: dict[str, Any], counts: dict[str, int]) -> Reply | None:
    """The fault of a queue submit to local/fail, or None to enqueue normally. A Reply with
    `reset` set means: enqueue, then drop the connection instead of answering."""
    kind = str(args.get("submit", ""))
    if not (args.get("ingress") or kind in SUBMIT_FAULTS) or not _attempt_fails(args, counts):
        return None
    if args.get("ingress"):
        return ingress_reply(args)
    if kind == "429":
        return platform_error("concurrent_requests_limit", "Concurrent requests limit exceeded", 429,
                              (("x-fal-needs-retry", "1"),))
    if kind == "reset":
        return Reply(200, b'{"status": "IN_QU', reset=True)
    if kind == "no_request_id":
        return Reply(200, dumps({"status": "IN_QUEUE", "queue_position": 0}))
    if kind == "not_json":
        return Reply(200, b"<html>queued, probably</html>", (("content-type", "application/json"),))
    return Reply(200, b'["IN_QUEUE"]')


def echo_request_reply(call: Call) -> Reply:
    """A 4xx (or the caller's `status`) echoing the request back, headers included."""
    status = call.arguments.get("status")
    code = status if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599 else 400
    headers = call.state.request_headers.pop(call.request_id, {})
    body = {"detail": f"rejected request with headers {headers} and arguments {call.arguments}",
            "error_type": "bad_request", "headers": headers, "arguments": call.arguments}
    return Reply(code, dumps(body), (("content-type", "application/json"), ("x-fal-error-type", "bad_request")),
                 error_type="bad_request", error=body["detail"])


MAX_FAULT_BYTES = 1 << 30  # big/gzip_bomb sizes the server agrees to build (in its own memory)


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_FAULT_BYTES else 0


async def fail(call: Call) -> Reply:
    args = call.arguments
    delay = seconds(args.get("delay"), 0.0)
    if delay > 0:
        await asyncio.sleep(delay)
    if args.get("hang"):
        await asyncio.Event().wait()
    if (args.get("ingress") or "submit" in args or "status_value" in args or "handle_origin" in args) and call.queued:
        # On the queue these faults hit the submit (see submit_fault); the run itself succeeds.
        return Reply(200, dumps({"echo": args, "path": call.path}))
    if not _attempt_fails(args, call.state.fault_counts):
        return Reply(200, dumps({"echo": args, "path": call.path}))
    slow = seconds(args.get("slow"), 0.0)
    if slow > 0:
        await asyncio.sleep(slow)
        return Reply(200, dumps({"echo": args, "path": call.path}))
    if args.get("echo_request"):
        return echo_request_reply(call)
    deep = args.get("deep_json")
    if isinstance(deep, int) and not isinstance(deep, bool) and 0 < deep <= 1_000_000:
        return Reply(200, b'{"a":' * deep + b"1" + b"}" * deep)
    trickle = seconds(args.get("trickle"), 0.0)
    if 0 < trickle <= 60:
        return Reply(200, dumps({"echo": args, "path": call.path}), trickle=trickle)
    big = _size(args.get("big"))
    if big:
        return Reply(200, b'{"blob":"' + b"a" * big + b'"}', chunked=True)
    bomb = _size(args.get("gzip_bomb"))
    if bomb:
        body = gzip.compress(b'{"blob":"' + b"a" * bomb + b'"}', compresslevel=9)
        return Reply(200, body, (("content-type", "application/json"), ("content-encoding", "gzip")))
    if args.get("bad_json"):
        return Reply(200, b"<html>this is not JSON", (("content-type", "application/json"),))
    if args.get("surrogates"):
        json_type = (("content-type", "application/json"),)
        if args.get("status") == 422:
            return Reply(422, LONE_SURROGATES_422, json_type, error_type="validation_error", error="lone surrogates")
        return Reply(200, LONE_SURROGATES, json_type)
    if args.get("not_object"):
        return Reply(200, b'["not","an","object"]')
    if args.get("reset"):
        return Reply(200, b'{"partial": ', reset=True, error_type="runner_disconnected",
                     error="connection reset by the runner", retry=True)
    if args.get("ingress"):
        return ingress_reply(args)
    status = args.get("status")
    if status == 429:
        extra: tuple[tuple[str, str], ...] = (("x-fal-needs-retry", "1"),)
        if "retry_after" in args:
            extra += (("retry-after", str(args["retry_after"])),)
        reply = platform_error("concurrent_requests_limit", "Concurrent requests limit exceeded", 429, extra)
        reply.retry = True
        return reply
    if status == 422:
        detail = args.get("detail")
        if isinstance(detail, list) and detail:
            return model_error(detail)
        return model_error(
            [model_error_item(["body", "num_images"], "Input should be less than or equal to 4", "less_than_equal",
                              ctx={"le": 4}, input_=5)]
        )
    error_type = args.get("error_type")
    if isinstance(error_type, str) and error_type:
        code = status if isinstance(status, int) and 400 <= status <= 599 else None
        return platform_error(error_type, f"injected {error_type}", code)
    if isinstance(status, int) and 100 <= status <= 599 and not isinstance(status, bool):
        return Reply(status, dumps({"detail": f"injected failure: HTTP {status}"}),
                     error_type=None if status < 400 else "internal_error" if status >= 500 else "bad_request",
                     error=f"injected failure: HTTP {status}", retry=status in (503, 504))
    return platform_error("runner_server_error", "injected runner_server_error")
