"""The ASGI app: one port, direct runs under /run, the queue under /queue, files under /files.

    POST /run/{id}                                   direct run (id = [ns/]owner/alias[/sub/path])
    POST /queue/{id}                                 submit
    GET  /queue/{id}/requests/{rid}/status[?logs=1]  status (202 queued/in progress, 200 completed)
    GET  /queue/{id}/requests/{rid}/status/stream    SSE status stream
    GET  /queue/{id}/requests/{rid}[/response]       result (replays the model's answer)
    PUT  /queue/{id}/requests/{rid}/cancel           cancel
    GET  /files/images/...                           generated PNGs
    GET  /v1/models, /v1/models/pricing              fal's Platform API for these apps (platform_api)
    POST /storage/upload/initiate, /storage/auth/token, /cdn/...   fal storage uploads (storage)
    GET  /api/openapi/queue/openapi.json             one endpoint's OpenAPI document (platform_api)
    GET  /_emulator/stats, POST /_emulator/reset     counters for tests and benchmarks

Status/result/cancel accept owner/alias or the full id with its sub-path (protocol §1.3).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive

from batchrun.server import image
from batchrun.server.apps import Call
from batchrun.server.concurrency import key_of
from batchrun.server.emulator import (
    DEFAULT_MAX_BODY,
    Accepted,
    Emulator,
    FaultReset,
    WireResponse,
    origin_of,
    respond,
)
from batchrun.server.platform_api import models_route, openapi_route, pricing_route
from batchrun.server.queue_api import queue_route
from batchrun.server.storage import (
    initiate_route,
    multipart_create_route,
    multipart_route,
    signed_put_route,
    stored_file,
    token_route,
)
from batchrun.server.wire import Reply, json_reply, platform_error

ALL_METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    accepted = await em.accept(request, request.path_params["rest"], "run")
    if isinstance(accepted, WireResponse):
        return accepted
    key, limits = key_of(request.headers), em.limits
    if not limits.has_room(key):
        return respond(limits.refuse(), accepted.request_id)
    limits.take(key)
    try:
        return await _run(em, request, accepted)
    finally:
        limits.give(key)
        if em.limits.limit is not None and em.queue.waiting:
            em.queue.dispatch()  # the freed slot may let a queued request of the same key start


async def _run(em: Emulator, request: Request, accepted: Accepted) -> WireResponse:
    # Its start timeout is only validated: a direct run starts at once, it never queues.
    rid, app_id, arguments = accepted.request_id, accepted.app_id, accepted.arguments
    em.stats.count_app(app_id, "run")
    if app_id == "local/fail":
        em.note_fault_request(rid, arguments, request.headers)
    call = Call(arguments, accepted.path, origin_of(request.scope), rid, em, media_lifetime=accepted.media_lifetime)
    # If the caller hangs up, the app is cancelled (protocol §8.2), so hung apps do not pile up.
    work = asyncio.ensure_future(accepted.handler(call))
    await asyncio.sleep(0)  # most apps answer in their first step: then no watcher task is needed
    if not work.done():
        watch = asyncio.ensure_future(_until_disconnect(request.receive))
        em.direct_runs.add(work)
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            em.direct_runs.discard(work)
            watch.cancel()
            if not work.done():
                work.cancel()
    if work.cancelled():
        if em.closing:
            return respond(platform_error("runner_disconnected", "the server is shutting down"), rid)
        return respond(platform_error("client_disconnected", "the client disconnected", 499), rid)
    try:
        reply = work.result()
    except Exception as exc:  # an app bug becomes a fal-shaped 500, never a traceback
        reply = platform_error("internal_error", f"app raised {type(exc).__name__}: {exc}")
    return respond(reply, rid, "direct")


async def files_route(request: Request) -> WireResponse:
    em: Emulator = request.app.state.emulator
    em.stats.requests["files"] += 1
    rest: str = request.path_params["rest"]
    if rest.startswith("storage/"):
        return _stored(em, rest[len("storage/"):])
    key = image.parse_image_path(rest[len("images/") :]) if rest.startswith("images/") else None
    if key is None:
        return WireResponse(json_reply({"detail": f"File not found: /files/{rest}"}, 404), [])
    expires = request.query_params.get("expires", "")
    if expires.isdigit() and int(expires) <= time.time() * 1000:
        # fal deletes expired media for good (protocol §9.5); the status its CDN then answers is UNCONFIRMED
        em.stats.expired_fetches += 1
        return WireResponse(json_reply({"detail": f"File not found: /files/{rest} (expired)"}, 404), [])
    png = await asyncio.to_thread(image.render_png, *key)
    return WireResponse(Reply(200, png, (("content-type", "image/png"), ("cache-control", "max-age=86400"))), [])


def _stored(em: Emulator, key: str) -> Any:
    from starlette.responses import FileResponse

    path = stored_file(em, key)
    if path is None:
        return WireResponse(json_reply({"detail": f"File not found: {key}"}, 404), [])
    return FileResponse(path)  # streamed from disk: stored inputs are large


async def cdn_file_route(request: Request) -> Any:
    em: Emulator = request.app.state.emulator
    em.stats.requests["files"] += 1
    return _stored(em, f"{request.path_params['file_id']}/{request.path_params['name']}")


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
    keepalive: float = 15.0, retry_backoff: float = 0.05, max_concurrency: int | None = None,
    stream_linger: float = 0.0, storage_faults: dict[str, int] | None = None,
    fallbacks: dict[str, str] | None = None,
) -> Starlette:  # fmt: skip
    """The fal-compatible ASGI app. Works without lifespan events (e.g. under httpx.ASGITransport).

    `apps` maps "owner/alias" to a user function (arguments dict in, JSON-able dict out, optional
    `log` and `path` keyword parameters; sync or async). `keepalive` is the SSE comment interval
    and `retry_backoff` the first server-side retry delay (doubling), both in seconds.
    `max_concurrency` limits the requests of one Authorization key in progress at once, as fal's
    account limit does: over it a direct run gets 429 and a queued request waits (None: no limit).
    `stream_linger` keeps a status stream open that many seconds after its COMPLETED event (then
    sending nothing more), as a proxy holding connections might; fal closes it at once.
    `storage_faults` injects upload faults (batchrun.server.storage). `fallbacks` maps an endpoint id
    to its "equivalent alternative" (both served here): a queued request that keeps failing on the
    first is rerouted to the second, as fal's model fallbacks do (batchrun.server.queue).
    """
    emulator = Emulator(runners=runners, require_key=require_key, apps=apps, result_ttl=result_ttl,
                        max_results=max_results, max_body=max_body, keepalive=keepalive, retry_backoff=retry_backoff,
                        max_concurrency=max_concurrency, stream_linger=stream_linger, storage_faults=storage_faults,
                        fallbacks=fallbacks)
    routes = [
        Route("/run/{rest:path}", run_route, methods=ALL_METHODS),
        Route("/queue/{rest:path}", queue_route, methods=["GET", "POST", "PUT"]),
        Route("/files/{rest:path}", files_route, methods=["GET"]),
        Route("/storage/upload/initiate", initiate_route, methods=["POST"]),
        Route("/storage/auth/token", token_route, methods=["POST"]),
        Route("/_storage/signed/{signature}", signed_put_route, methods=["PUT"]),
        Route("/cdn/files/upload/multipart", multipart_create_route, methods=["POST"]),
        Route("/cdn/files/{file_id}/{name}/multipart/{upload_id}/{step}", multipart_route, methods=["PUT", "POST"]),
        Route("/cdn/files/{file_id}/{name}", cdn_file_route, methods=["GET"]),
        Route("/v1/models", models_route, methods=["GET"]),
        Route("/v1/models/pricing", pricing_route, methods=["GET"]),
        Route("/api/openapi/queue/openapi.json", openapi_route, methods=["GET"]),
        Route("/_emulator/stats", stats_route, methods=["GET"]),
        Route("/_emulator/reset", reset_route, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error, Exception: _internal_error})  # type: ignore[dict-item]  # WireResponse is an ASGI response, not a Response subclass
    app.router.redirect_slashes = False  # a fal-shaped 404 beats a redirect to a URL that 404s too
    app.state.emulator = emulator
    app.state.stats = emulator.snapshot  # a function: call it for the current counters
    return app


