"""The queue host's routes: submit, status, SSE status stream, result and cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import StreamingResponse

from batchrun.server import faults
from batchrun.server.apps import Handler
from batchrun.server.concurrency import key_of
from batchrun.server.emulator import (
    DISABLE_FALLBACK_HEADERS,
    TRUE_VALUES,
    Emulator,
    WireResponse,
    origin_of,
    respond,
)
from batchrun.server.queue import (
    COMPLETED,
    IN_QUEUE,
    MAX_ATTEMPTS,
    RETRY_CONDITIONS,
    Job,
)
from batchrun.server.wire import Reply, dumps, json_reply, loads, platform_error


async def queue_route(request: Request) -> Any:
    em: Emulator = request.app.state.emulator
    rest: str = request.path_params["rest"]
    if request.method == "POST":
        return await submit(em, request, rest)
    parts = rest.split("/")
    for i in range(2, len(parts) - 1):
        if parts[i] == "requests":
            break
    else:
        return respond(json_reply({"detail": f"Not a queue request URL: /queue/{rest}"}, 404), str(uuid.uuid4()))
    prefix, rid, tail = "/".join(parts[:i]), parts[i + 1], parts[i + 2 :]
    ops = {("GET", ()): "result", ("GET", ("response",)): "result", ("GET", ("status",)): "status",
           ("GET", ("status", "stream")): "stream", ("PUT", ("cancel",)): "cancel"}  # fmt: skip
    op = ops.get((request.method, tuple(tail)))
    if op is None:
        return respond(json_reply({"detail": f"Method {request.method} not allowed on /queue/{rest}"}, 405), rid)
    em.stats.requests[op] += 1
    denied = em.auth_failure(request)
    if denied is not None:
        return respond(denied, rid)
    job = em.queue.jobs.get(rid)
    if job is not None and not (
        job.endpoint_id == prefix or (job.endpoint_id.startswith(prefix + "/") and len(prefix) >= len(job.app_id))
    ):
        job = None  # the id exists, but under another app
    if job is None:
        body = {"status": "NOT_FOUND"} if op == "cancel" else {"detail": f"Request {rid} not found"}
        return respond(json_reply(body, 404), rid)
    if op == "status":
        return respond(json_reply(status_body(em, job, request), 200 if job.state == COMPLETED else 202), rid)
    if op == "stream":
        return StreamingResponse(
            stream_status(em, job, request),
            media_type="text/event-stream",
            headers={"x-fal-request-id": rid, "cache-control": "no-cache"},
        )
    if op == "cancel":
        if em.queue.cancel(job):
            return respond(json_reply({"status": "CANCELLATION_REQUESTED"}, 202), rid)
        return respond(json_reply({"status": "ALREADY_COMPLETED"}, 400), rid)
    if job.state != COMPLETED or job.reply is None:
        where = "in queue" if job.state == IN_QUEUE else "in progress"
        return respond(json_reply({"detail": f"Request is still {where}"}, 400), rid)
    return respond(job.reply, rid, job.runner, job.rerouted_to)


async def submit(em: Emulator, request: Request, rest: str) -> WireResponse:
    accepted = await em.accept(request, rest, "submit")
    if isinstance(accepted, WireResponse):
        return accepted
    rid, app_id, path, arguments = accepted.request_id, accepted.app_id, accepted.path, accepted.arguments
    dropped: Reply | None = None
    if app_id == "local/fail" and arguments.get("submit") == "slow":
        # A slow ingress: the request is enqueued (and answered) only after the delay, even if the
        # caller has hung up meanwhile; it cannot know whether it was accepted.
        await asyncio.sleep(faults.seconds(arguments.get("submit_delay"), 5.0))
    if app_id == "local/fail":
        fault = faults.submit_fault(arguments, em.fault_counts)
        if fault is not None and not fault.reset:
            return respond(fault, rid)
        dropped = fault  # a reset: enqueue, then drop the connection instead of answering
    limit = request.query_params.get("fal_max_queue_length")
    if limit is not None and limit.isdigit() and em.queue.waiting.per_app.get(app_id, 0) > int(limit):
        # per endpoint, as fal counts it (protocol §4.1): other apps' waiting requests do not count
        return respond(platform_error("queue_full", f"More than {limit} requests are waiting for {app_id}", 429), rid)
    endpoint_id = app_id + path  # == the non-empty segments of `rest` joined by "/"
    em.stats.count_app(app_id, "submit")
    em.stats.note_submit(endpoint_id, arguments)
    headers = request.headers
    if app_id == "local/fail" and arguments.get("key_in_id"):
        # A careless server that names requests after the caller's key: the id and the URLs built
        # from it carry the secret, which must not reach a record, a journal or a report.
        rid = f"{key_of(headers).partition(' ')[2]}-{rid}"
    job = Job(
        endpoint_id=em.shared(endpoint_id), app_id=em.shared(app_id),
        path=em.shared(path), handler=accepted.handler, arguments=arguments, origin=em.shared(origin_of(request.scope)),
        low=headers.get("x-fal-queue-priority", "").strip().lower() == "low",
        hint=headers.get("x-fal-runner-hint"),
        retries=retries_of(headers),
        start_timeout=accepted.start_timeout, webhook=webhook_of(request), request_id=rid, key=key_of(headers),
        fallback=fallback_of(em, app_id, headers), media_lifetime=accepted.media_lifetime,
    )  # fmt: skip
    if app_id == "local/fail":
        em.note_fault_request(job.id, arguments, headers)
    position = em.queue.submit(job)
    if dropped is not None:
        return respond(dropped, job.id)
    origin = job.origin
    named = arguments.get("handle_origin") if app_id == "local/fail" else None
    if isinstance(named, str) and named.startswith(("http://", "https://")):
        origin = named.rstrip("/")  # faults.py: a queue naming another host in its handle
    base = f"{origin}/queue/{app_id}/requests/{job.id}"
    body = {
        "status": IN_QUEUE,
        "request_id": job.id,
        "response_url": base,
        "status_url": base + "/status",
        "cancel_url": base + "/cancel",
        "queue_position": position,
        "gateway_request_id": job.gateway_id,
    }
    return respond(json_reply(body), job.id)


def fallback_of(em: Emulator, app_id: str, headers: Headers) -> tuple[str, Handler] | None:
    """The alternative a request may be rerouted to: none when the endpoint has none here or the
    caller turned fallbacks off (either documented header, any true value)."""
    alternative = em.fallbacks.get(app_id)
    if alternative is None:
        return None
    if any(headers.get(name, "").strip().lower() in TRUE_VALUES for name in DISABLE_FALLBACK_HEADERS):
        return None
    return em.shared(alternative), em.handlers[alternative]


def retries_of(headers: Headers) -> dict[str, int] | None:
    """Server-side retries allowed per condition: X-Fal-No-Retry (none at all) wins over
    X-Fal-Retry-Config (`{"server_error": {"retries": N}, ...}`, N extra attempts); invalid JSON,
    unknown keys and bad values are ignored, as fal does (protocol §4.1)."""
    if headers.get("x-fal-no-retry", "").strip().lower() in TRUE_VALUES:
        return dict.fromkeys(RETRY_CONDITIONS, 0)
    raw = headers.get("x-fal-retry-config")
    if raw is None:
        return None
    try:
        config = loads(raw.encode())
    except ValueError:
        return None
    if not isinstance(config, dict):
        return None
    retries: dict[str, int] = {}
    for condition in RETRY_CONDITIONS:
        entry = config.get(condition)
        count = entry.get("retries") if isinstance(entry, dict) else None
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
            retries[condition] = min(count, MAX_ATTEMPTS - 1)
    return retries or None


def webhook_of(request: Request) -> str | None:
    url = request.query_params.get("fal_webhook")
    return url if url and url.startswith(("http://", "https://")) else None


def status_body(em: Emulator, job: Job, request: Request) -> dict[str, Any]:
    base = f"{origin_of(request.scope)}/queue/{job.app_id}/requests/{job.id}"
    body: dict[str, Any] = {
        "status": em.fault_status.get(job.id, job.state),
        "request_id": job.id,
        "response_url": base,
        "status_url": base + "/status",
        "cancel_url": base + "/cancel",
    }
    if job.state == IN_QUEUE:
        body["queue_position"] = em.queue.position(job)
        return body
    with_logs = request.query_params.get("logs", "").lower() in TRUE_VALUES
    body["logs"] = list(job.logs or ()) if with_logs else None
    if job.state == COMPLETED:
        body["metrics"] = {"inference_time": job.inference_time} if job.inference_time is not None else {}
        if job.error_type is not None:
            body["error"] = job.error
            body["error_type"] = job.error_type
    return body


async def _linger(em: Emulator) -> None:
    """Hold a finished stream open for `stream_linger` seconds (a misbehaving proxy's way)."""
    deadline = asyncio.get_running_loop().time() + em.stream_linger
    while not em.closing and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(min(0.05, em.keepalive))


async def stream_status(em: Emulator, job: Job, request: Request) -> AsyncIterator[bytes]:
    """`data: <status json>` on every change, `: keepalive` when idle, closes after COMPLETED."""
    last = b""
    while True:
        changed = em.queue.watch(job)
        data = dumps(status_body(em, job, request))
        if data != last:
            yield b"data: " + data + b"\n\n"
            last = data
        if job.state == COMPLETED and em.stream_linger > 0 and not em.closing:
            await _linger(em)
        if job.state == COMPLETED or em.closing:
            return
        try:
            await asyncio.wait_for(changed.wait(), em.keepalive)
        except TimeoutError:
            yield b": keepalive\n\n"
