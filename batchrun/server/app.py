"""The ASGI app: one port, direct runs under /run, the queue under /queue, files under /files.

    POST /run/{id}                                   direct run (id = [ns/]owner/alias[/sub/path])
    POST /queue/{id}                                 submit
    GET  /queue/{id}/requests/{rid}/status[?logs=1]  status (202 queued/in progress, 200 completed)
    GET  /queue/{id}/requests/{rid}/status/stream    SSE status stream
    GET  /queue/{id}/requests/{rid}[/response]       result (replays the model's answer)
    PUT  /queue/{id}/requests/{rid}/cancel           cancel
    GET  /files/images/...                           generated PNGs
    GET  /_emulator/stats, POST /_emulator/reset     counters for tests and benchmarks

Status/result/cancel accept owner/alias or the full id with its sub-path (protocol §1.3).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from batchrun.server import faults, image
from batchrun.server.apps import Call, Handler, builtin_apps, wrap_user_function
from batchrun.server.queue import COMPLETED, IN_QUEUE, Job, Queue
from batchrun.server.stats import Stats
from batchrun.server.wire import JSON_HEADERS, Reply, dumps, json_reply, loads, model_error, model_error_item, platform_error

NAMESPACES = ("workflows", "comfy")
ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
DEFAULT_MAX_BODY = 50 * 1024 * 1024
TRUE_VALUES = ("1", "true", "yes")


class FaultReset(Exception):
    """Raised after a partial response to make the server drop the connection (local/fail reset)."""


class WireResponse:
    """A minimal ASGI response for a Reply (Starlette's Response does more work than we need)."""

    __slots__ = ("status", "headers", "body", "reset")

    def __init__(self, reply: Reply, extra: list[tuple[bytes, bytes]]) -> None:
        self.status = reply.status
        self.headers = [(k.encode(), v.encode()) for k, v in reply.headers] + extra
        self.body = reply.body
        self.reset = reply.reset

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.reset:
            headers = self.headers + [(b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": self.body, "more_body": True})
            raise FaultReset("local/fail reset: connection dropped on purpose")
        headers = self.headers + [(b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def split_endpoint(rest: str) -> tuple[str, str] | None:
    """`[ns/]owner/alias[/sub/path]` -> (app id, "/sub/path" or ""); None if too short."""
    parts = [p for p in rest.split("/") if p]
    size = 3 if parts and parts[0] in NAMESPACES else 2
    if len(parts) < size:
        return None
    return "/".join(parts[:size]), ("/" + "/".join(parts[size:])) if len(parts) > size else ""


def origin_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scope['scheme']}://{value.decode('latin-1')}"
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{scope['scheme']}://{server[0]}:{server[1]}"


def start_timeout_of(request: Request) -> float | None | Reply:
    """X-Fal-Request-Start-Timeout (wins) or the legacy X-Fal-Request-Timeout; > 0.1 s else 400."""
    for name in ("x-fal-request-start-timeout", "x-fal-request-timeout"):
        raw = request.headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0.1:
            return platform_error("bad_request", f"Invalid {name} header {raw!r}: expected a number of seconds greater than 0.1")
        return value
    return None


class Emulator:
    """Everything the routes share: configuration, the app registry, the queue and the counters."""

    def __init__(
        self, *, runners: int, require_key: bool, apps: dict[str, Callable[..., Any]] | None, result_ttl: float,
        max_results: int, max_body: int, keepalive: float, retry_backoff: float,
    ) -> None:  # fmt: skip
        self.require_key, self.max_body, self.keepalive = require_key, max_body, keepalive
        self.handlers: dict[str, Handler] = builtin_apps()
        for name, func in (apps or {}).items():
            self.handlers[name.strip("/")] = wrap_user_function(func, name)
        self.stats = Stats()
        self.fault_counts: dict[str, int] = {}
        self._strings: dict[str, str] = {}
        # local/fail by request id: headers to echo back (echo_request), a fake status (status_value).
        self.request_headers: dict[str, dict[str, str]] = {}
        self.fault_status: dict[str, str] = {}
        self.queue = Queue(runners=runners, stats=self.stats, state=self, result_ttl=result_ttl,
                           max_results=max_results, retry_backoff=retry_backoff)

    def shared(self, text: str) -> str:
        """One copy of each endpoint id / origin string, however many stored results use it."""
        found = self._strings.get(text)
        if found is None:
            if len(self._strings) > 10_000:
                self._strings.clear()
            found = self._strings[text] = text
        return found

    def reset(self) -> None:
        self.stats.reset()
        self.fault_counts.clear()
        self.request_headers.clear()
        self.fault_status.clear()

    def note_fault_request(self, request_id: str, arguments: dict[str, Any], headers: Any) -> None:
        """Remember what local/fail's echo_request and status_value need about one request."""
        if arguments.get("echo_request"):
            _remember(self.request_headers, request_id, dict(headers))
        if isinstance(arguments.get("status_value"), str):
            _remember(self.fault_status, request_id, arguments["status_value"])

    def snapshot(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        snap.update(queue_length=self.queue.length, runners=len(self.queue.runner_ids),
                    runners_busy=self.queue.busy, stored_requests=len(self.queue.jobs))
        return snap

    # -- shared checks -------------------------------------------------------------------------
    def auth_failure(self, request: Request) -> Reply | None:
        if not self.require_key:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("key", "bearer") and token.strip():
            return None
        self.stats.auth_failures += 1
        return json_reply({"detail": "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'"}, 401)

    async def arguments_of(self, request: Request) -> dict[str, Any] | Reply:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return self._too_large()
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                return self._too_large()
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            return dict(request.query_params) if request.method == "GET" else {}
        try:
            value = loads(body)
        except ValueError as exc:
            self.stats.bad_requests += 1
            return model_error([model_error_item(["body"], f"Invalid JSON: {exc}", "json_invalid", input_=None)])
        if not isinstance(value, dict):
            self.stats.bad_requests += 1
            return model_error([model_error_item(["body"], "Input should be a valid dictionary (a JSON object)",
                                                 "dict_type", input_=value)])
        return value

    def _too_large(self) -> Reply:
        self.stats.bad_requests += 1
        return platform_error("bad_request", f"Request body too large: the limit is {self.max_body} bytes", 413)

    def lookup(self, rest: str) -> tuple[str, str, Handler] | Reply:
        parsed = split_endpoint(rest)
        if parsed is None:
            return json_reply({"detail": f"Not a valid endpoint id: {rest!r} (expected owner/alias[/path])"}, 404)
        handler = self.handlers.get(parsed[0])
        if handler is None:
            return json_reply({"detail": f"Application {parsed[0]!r} not found"}, 404)
        return parsed[0], parsed[1], handler


def _remember(store: dict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    if len(store) > faults.MAX_KEYS:  # bounded: the oldest half is forgotten
        for old in list(store)[: faults.MAX_KEYS // 2]:
            del store[old]


def respond(reply: Reply, request_id: str | None, runner: str | None = None) -> WireResponse:
    extra: list[tuple[bytes, bytes]] = []
    if request_id is not None and not reply.ingress:
        extra.append((b"x-fal-request-id", request_id.encode()))
        if runner is not None:
            extra.append((b"x-fal-served-from", runner.encode()))
    return WireResponse(reply, extra)


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.requests["run"] += 1
    rid = str(uuid.uuid4())
    found = em.auth_failure(request) or em.lookup(request.path_params["rest"])
    if isinstance(found, Reply):
        return respond(found, rid)
    app_id, path, handler = found
    timeout = start_timeout_of(request)  # validated only: direct runs start at once, never queue
    if isinstance(timeout, Reply):
        return respond(timeout, rid)
    arguments = await em.arguments_of(request)
    if isinstance(arguments, Reply):
        return respond(arguments, rid)
    em.stats.count_app(app_id, "run")
    if app_id == "local/fail":
        em.note_fault_request(rid, arguments, request.headers)
    call = Call(arguments, path, origin_of(request.scope), rid, 1, em)
    # If the caller hangs up, the app is cancelled (protocol §8.2), so hung apps do not pile up.
    work = asyncio.ensure_future(handler(call))
    await asyncio.sleep(0)  # most apps answer in their first step: then no watcher task is needed
    if not work.done():
        watch = asyncio.ensure_future(_until_disconnect(request.receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
    if work.cancelled():
        return respond(platform_error("client_disconnected", "the client disconnected", 499), rid)
    try:
        reply = work.result()
    except Exception as exc:  # an app bug becomes a fal-shaped 500, never a traceback
        reply = platform_error("internal_error", f"app raised {type(exc).__name__}: {exc}")
    return respond(reply, rid, "direct")


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
    op = {("GET", ()): "result", ("GET", ("response",)): "result", ("GET", ("status",)): "status",
          ("GET", ("status", "stream")): "stream", ("PUT", ("cancel",)): "cancel"}.get((request.method, tuple(tail)))  # fmt: skip
    if op is None:
        return respond(json_reply({"detail": f"Method {request.method} not allowed on /queue/{rest}"}, 405), rid)
    em.stats.requests[op] += 1
    denied = em.auth_failure(request)
    if denied is not None:
        return respond(denied, rid)
    job = em.queue.jobs.get(rid)
    if job is not None and not (job.endpoint_id == prefix or (job.endpoint_id.startswith(prefix + "/") and len(prefix) >= len(job.app_id))):
        job = None  # the id exists, but under another app
    if job is None:
        body = {"status": "NOT_FOUND"} if op == "cancel" else {"detail": f"Request {rid} not found"}
        return respond(json_reply(body, 404), rid)
    if op == "status":
        return respond(json_reply(status_body(em, job, request), 200 if job.state == COMPLETED else 202), rid)
    if op == "stream":
        return StreamingResponse(stream_status(em, job, request), media_type="text/event-stream",
                                 headers={"x-fal-request-id": rid, "cache-control": "no-cache"})
    if op == "cancel":
        if em.queue.cancel(job):
            return respond(json_reply({"status": "CANCELLATION_REQUESTED"}, 202), rid)
        return respond(json_reply({"status": "ALREADY_COMPLETED"}, 400), rid)
    if job.state != COMPLETED or job.reply is None:
        where = "in queue" if job.state == IN_QUEUE else "in progress"
        return respond(json_reply({"detail": f"Request is still {where}"}, 400), rid)
    return respond(job.reply, rid, job.runner)


async def submit(em: Emulator, request: Request, rest: str) -> WireResponse:
    em.stats.requests["submit"] += 1
    rid = str(uuid.uuid4())
    found = em.auth_failure(request) or em.lookup(rest)
    if isinstance(found, Reply):
        return respond(found, rid)
    app_id, path, handler = found
    timeout = start_timeout_of(request)
    if isinstance(timeout, Reply):
        return respond(timeout, rid)
    arguments = await em.arguments_of(request)
    if isinstance(arguments, Reply):
        return respond(arguments, rid)
    dropped: Reply | None = None
    if app_id == "local/fail":
        fault = faults.submit_fault(arguments, em.fault_counts)
        if fault is not None and not fault.reset:
            return respond(fault, rid)
        dropped = fault  # a reset: enqueue, then drop the connection instead of answering
    limit = request.query_params.get("fal_max_queue_length")
    if limit is not None and limit.isdigit() and em.queue.length > int(limit):
        return respond(platform_error("queue_full", f"More than {limit} requests are waiting", 429), rid)
    em.stats.count_app(app_id, "submit")
    em.stats.note_submit(rest.strip("/"), arguments)
    headers = request.headers
    job = Job(
        endpoint_id=em.shared("/".join(p for p in rest.split("/") if p)), app_id=em.shared(app_id),
        path=em.shared(path), handler=handler, arguments=arguments, origin=em.shared(origin_of(request.scope)),
        low=headers.get("x-fal-queue-priority", "").strip().lower() == "low",
        hint=headers.get("x-fal-runner-hint"),
        no_retry=headers.get("x-fal-no-retry", "").strip().lower() in TRUE_VALUES,
        start_timeout=timeout,
    )  # fmt: skip
    if app_id == "local/fail":
        em.note_fault_request(job.id, arguments, headers)
    position = em.queue.submit(job)
    if dropped is not None:
        return respond(dropped, job.id)
    base = f"{job.origin}/queue/{app_id}/requests/{job.id}"
    body = {"status": IN_QUEUE, "request_id": job.id, "response_url": base, "status_url": base + "/status",
            "cancel_url": base + "/cancel", "queue_position": position, "gateway_request_id": job.gateway_id}
    return respond(json_reply(body), job.id)


def status_body(em: Emulator, job: Job, request: Request) -> dict[str, Any]:
    base = f"{origin_of(request.scope)}/queue/{job.app_id}/requests/{job.id}"
    body: dict[str, Any] = {"status": em.fault_status.get(job.id, job.state), "request_id": job.id, "response_url": base,
                            "status_url": base + "/status", "cancel_url": base + "/cancel"}
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


async def stream_status(em: Emulator, job: Job, request: Request) -> AsyncIterator[bytes]:
    """`data: <status json>` on every change, `: keepalive` when idle, closes after COMPLETED."""
    last = b""
    while True:
        changed = em.queue.changed
        data = dumps(status_body(em, job, request))
        if data != last:
            yield b"data: " + data + b"\n\n"
            last = data
        if job.state == COMPLETED:
            return
        try:
            await asyncio.wait_for(changed.wait(), em.keepalive)
        except TimeoutError:
            yield b": keepalive\n\n"


async def files_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.requests["files"] += 1
    rest: str = request.path_params["rest"]
    key = image.parse_image_path(rest[len("images/") :]) if rest.startswith("images/") else None
    if key is None:
        return WireResponse(json_reply({"detail": f"File not found: /files/{rest}"}, 404), [])
    png = await asyncio.to_thread(image.render_png, *key)
    return WireResponse(Reply(200, png, (("content-type", "image/png"), ("cache-control", "max-age=86400"))), [])


async def stats_route(request: Request) -> WireResponse:
    return WireResponse(json_reply(request.app.state.emulator.snapshot()), [])


async def reset_route(request: Request) -> WireResponse:
    request.app.state.emulator.reset()
    return WireResponse(json_reply({"status": "OK"}), [])


async def _http_error(request: Request, exc: Exception) -> WireResponse:
    code = getattr(exc, "status_code", 500)
    return WireResponse(json_reply({"detail": str(getattr(exc, "detail", "Not Found"))}, code), [])


async def _internal_error(request: Request, exc: Exception) -> WireResponse:
    if isinstance(exc, FaultReset):
        raise exc
    return WireResponse(platform_error("internal_error", f"internal server error: {type(exc).__name__}"), [])


def create_app(
    *, runners: int = 2, require_key: bool = False, apps: dict[str, Callable[..., Any]] | None = None,
    result_ttl: float = 3600, max_results: int = 100_000, max_body: int = DEFAULT_MAX_BODY,
    keepalive: float = 15.0, retry_backoff: float = 0.05,
) -> Starlette:  # fmt: skip
    """The fal-compatible ASGI app. Works without lifespan events (e.g. under httpx.ASGITransport).

    `apps` maps "owner/alias" to a user function (arguments dict in, JSON-able dict out, optional
    `log` and `path` keyword parameters; sync or async). `keepalive` is the SSE comment interval
    and `retry_backoff` the first server-side retry delay (doubling), both in seconds.
    """
    emulator = Emulator(runners=runners, require_key=require_key, apps=apps, result_ttl=result_ttl,
                        max_results=max_results, max_body=max_body, keepalive=keepalive, retry_backoff=retry_backoff)
    routes = [
        Route("/run/{rest:path}", run_route, methods=ALL_METHODS),
        Route("/queue/{rest:path}", queue_route, methods=["GET", "POST", "PUT"]),
        Route("/files/{rest:path}", files_route, methods=["GET"]),
        Route("/_emulator/stats", stats_route, methods=["GET"]),
        Route("/_emulator/reset", reset_route, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error, Exception: _internal_error})
    app.state.emulator = emulator
    app.state.stats = emulator.snapshot  # a function: call it for the current counters
    return app


__all__ = ["JSON_HEADERS", "create_app", "Emulator", "split_endpoint"]
