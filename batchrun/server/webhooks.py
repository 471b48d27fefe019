"""`?fal_webhook=URL` on a queue submit: POST the outcome to URL when the request completes.

Body (protocol §8.4): {"request_id", "gateway_request_id", "status": "OK"|"ERROR", "payload"} plus,
on failure, "error": "Invalid status code: N"; a result that is not JSON gives "payload": null and
"payload_error". One attempt with a 15 s timeout (fal retries for 2 h; an emulator need not), and
no signature headers: the emulator has no signing key. Sent over the project's one HTTP stack
(httpx on the httpx-aiohttp transport); the server imports nothing else of batchrun, so it has its
own small client rather than batchrun's Sender.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from batchrun.server.wire import Reply, dumps, loads

TIMEOUT = 15.0
_pending: set[asyncio.Task[None]] = set()  # keep delivery tasks referenced until they finish


def payload_of(request_id: str, gateway_id: str, reply: Reply) -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": request_id, "gateway_request_id": gateway_id,
                            "status": "OK" if reply.status < 400 else "ERROR"}  # fmt: skip
    if reply.status >= 400:
        body["error"] = f"Invalid status code: {reply.status}"
    try:
        body["payload"] = loads(reply.body)
    except ValueError as exc:
        body["payload"] = None
        body["payload_error"] = f"the result is not JSON: {exc}"
    return body


def deliver(url: str, request_id: str, gateway_id: str, reply: Reply) -> None:
    """Start delivering in the background; failures are dropped (the result stays pollable)."""
    task = asyncio.get_running_loop().create_task(_post(url, dumps(payload_of(request_id, gateway_id, reply))))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _post(url: str, body: bytes) -> None:
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, transport=AiohttpTransport()) as client:
            await client.post(url, content=body, headers={"content-type": "application/json"})
    except (httpx.HTTPError, OSError):
        pass  # an unreachable webhook must not affect the queue
