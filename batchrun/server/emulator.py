"""What every route shares: the Emulator (configuration, app registry, queue, counters), endpoint
id parsing, request checks (auth, body, timeout headers) and the ASGI response for a Reply.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from batchrun.server import faults
from batchrun.server.apps import Handler, builtin_apps, fallback_map, wrap_user_function
from batchrun.server.concurrency import KeyLimits
from batchrun.server.queue import Queue
from batchrun.server.stats import Stats
from batchrun.server.wire import (
    Reply,
    json_reply,
    loads,
    model_error,
    model_error_item,
    platform_error,
    trim_oldest,
)

NAMESPACES = ("workflows", "comfy")
DEFAULT_MAX_BODY = 50 * 1024 * 1024
TRUE_VALUES = ("1", "true", "yes")
FALLBACK_ENDPOINT_HEADER = b"x-fal-fallback-endpoint"
# Both names documented for turning fallbacks off (docs/fal-protocol.md §9.4) are honoured.
DISABLE_FALLBACK_HEADERS = ("x-fal-disable-fallbacks", "x-app-fal-disable-fallback")


class FaultReset(Exception):
    """Raised after a partial response to make the server drop the connection (local/fail reset)."""


CHUNK = 64 * 1024  # piece size of a chunked fault body


class WireResponse:
    """A minimal ASGI response for a Reply (Starlette's Response does more work than we need)."""

    __slots__ = ("status", "headers", "body", "reset", "chunked", "trickle")

    def __init__(self, reply: Reply, extra: list[tuple[bytes, bytes]]) -> None:
        self.status = reply.status
        self.headers = [(k.encode(), v.encode()) for k, v in reply.headers] + extra
        self.body = reply.body
        self.reset = reply.reset
        self.chunked = reply.chunked
        self.trickle = reply.trickle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.reset:
            headers = self.headers + [(b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": self.body, "more_body": True})
            raise FaultReset("local/fail reset: connection dropped on purpose")
        if self.chunked or self.trickle:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            step = 1 if self.trickle else CHUNK
            for at in range(0, len(self.body), step):
                await send({"type": "http.response.body", "body": self.body[at:at + step], "more_body": True})
                if self.trickle:
                    await asyncio.sleep(self.trickle)
            await send({"type": "http.response.body", "body": b""})
            return
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
            return platform_error(
                "bad_request", f"Invalid {name} header {raw!r}: expected a number of seconds greater than 0.1"
            )
        return value
    return None


class Accepted:
    """A run or submit that passed the checks both share: what its route goes on with."""

    __slots__ = ("request_id", "app_id", "path", "handler", "start_timeout", "arguments", "media_lifetime")

    def __init__(self, request_id: str, app_id: str, path: str, handler: Handler, start_timeout: float | None,
                 arguments: dict[str, Any], media_lifetime: int | None = None) -> None:  # fmt: skip
        self.request_id, self.app_id, self.path, self.handler = request_id, app_id, path, handler
        self.start_timeout, self.arguments, self.media_lifetime = start_timeout, arguments, media_lifetime


class Emulator:
    """Everything the routes share: configuration, the app registry, the queue and the counters."""

    def __init__(
        self, *, runners: int, require_key: bool, apps: dict[str, Callable[..., Any]] | None, result_ttl: float,
        max_results: int, max_body: int, keepalive: float, retry_backoff: float, max_concurrency: int | None = None,
        stream_linger: float = 0.0, storage_faults: dict[str, int] | None = None,
        fallbacks: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        from batchrun.server.storage import Storage  # it imports this module's routing helpers

        self.storage = Storage(storage_faults)
        self.require_key, self.max_body, self.keepalive = require_key, max_body, keepalive
        self.stream_linger = stream_linger
        self.handlers: dict[str, Handler] = builtin_apps()
        # the functions themselves too: the platform routes describe them (batchrun.server.catalog)
        self.user_functions = {name.strip("/"): func for name, func in (apps or {}).items()}
        for name, func in (apps or {}).items():
            self.handlers[name.strip("/")] = wrap_user_function(func, name)
        self.fallbacks = fallback_map(fallbacks or {}, self.handlers)  # app id -> its alternative's app id
        self.stats = Stats()
        self.limits = KeyLimits(max_concurrency)
        self.fault_counts: dict[str, int] = {}
        self._strings: dict[str, str] = {}
        self.closing = False
        self.direct_runs: set[asyncio.Task[Reply]] = set()  # direct runs that did not answer at once
        # local/fail by request id: headers to echo back (echo_request), a fake status (status_value).
        self.request_headers: dict[str, dict[str, str]] = {}
        self.fault_status: dict[str, str] = {}
        self.queue = Queue(
            runners=runners,
            stats=self.stats,
            state=self,
            result_ttl=result_ttl,
            max_results=max_results,
            retry_backoff=retry_backoff,
            limits=self.limits,
        )

    def shared(self, text: str) -> str:
        """One copy of each endpoint id / origin string, however many stored results use it."""
        found = self._strings.get(text)
        if found is None:
            if len(self._strings) > 10_000:
                self._strings.clear()
            found = self._strings[text] = text
        return found

    def close(self) -> None:
        """Before the server stops: end hung direct runs and open status streams, so connections
        close at once instead of running into uvicorn's graceful-shutdown timeout."""
        self.closing = True
        for task in list(self.direct_runs):
            task.cancel()
        self.queue.close()
        self.storage.close()

    def reset(self) -> None:
        self.stats.reset()
        self.limits.reset()
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
        snap.update(
            queue_length=self.queue.length,
            runners=len(self.queue.runner_ids),
            runners_busy=self.queue.busy,
            stored_requests=len(self.queue.jobs),
            concurrency=self.limits.snapshot(),
        )
        return snap

    # -- shared checks -------------------------------------------------------------------------
    async def accept(self, request: Request, rest: str, operation: str) -> Accepted | WireResponse:
        """What a direct run and a queue submit share: count the request, give it an id, then check
        auth, the endpoint id, the timeout headers and the body, in that order, and count its
        X-Fal-Tags. A failed check comes back as the response to send (carrying the new request id)."""
        self.stats.requests[operation] += 1
        request_id = str(uuid.uuid4())
        found = self.auth_failure(request) or self.lookup(rest)
        if isinstance(found, Reply):
            return respond(found, request_id)
        timeout = start_timeout_of(request)
        if isinstance(timeout, Reply):
            return respond(timeout, request_id)
        arguments = await self.arguments_of(request)
        if isinstance(arguments, Reply):
            return respond(arguments, request_id)
        tags = request.headers.get("x-fal-tags")
        if tags is not None:
            self.stats.note_tags(tags)
        return Accepted(request_id, *found, timeout, arguments, media_lifetime_of(request))

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
            return model_error(
                [
                    model_error_item(
                        ["body"], "Input should be a valid dictionary (a JSON object)", "dict_type", input_=value
                    )
                ]
            )
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


def media_lifetime_of(request: Request) -> int | None:
    """X-Fal-Object-Lifecycle-Preference's `expiration_duration_seconds` (protocol §9.5): seconds > 0;
    None when absent, null ("no expiration") or not understood (fal's answer to a malformed one
    is UNCONFIRMED; the media are then kept)."""
    text = request.headers.get("x-fal-object-lifecycle-preference")
    if not text:
        return None
    try:
        seconds = loads(text.encode()).get("expiration_duration_seconds")
    except (ValueError, AttributeError):
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        return None
    return int(seconds)


def _remember(store: dict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    trim_oldest(store, faults.MAX_KEYS)


def respond(reply: Reply, request_id: str | None, runner: str | None = None,
            rerouted_to: str | None = None) -> WireResponse:  # fmt: skip
    extra: list[tuple[bytes, bytes]] = []
    if request_id is not None and not reply.ingress:
        extra.append((b"x-fal-request-id", request_id.encode()))
        if runner is not None:
            extra.append((b"x-fal-served-from", runner.encode()))
        if rerouted_to is not None:
            # fal names no such header (docs/fal-protocol.md §9.4); this one is the emulator's.
            extra.append((FALLBACK_ENDPOINT_HEADER, rerouted_to.encode()))
    return WireResponse(reply, extra)
