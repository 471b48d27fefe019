"""Helpers for the client tests: planned requests, an event recorder, and a recording front door.

`Recorder` is an ASGI wrapper in front of the embedded server: it writes down what reached the
server (method, path, query, headers), since the server's apps only see arguments; with
`no_stream=True` it answers the SSE status stream with a 404, like a server that offers none, and
`override(method, path)` may answer in the server's place (status, content type, body) to play
protocol breakage the server itself never produces.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from batchrun.client.fal import QueueHandle
from batchrun.plan.planner import PlannedRequest
from batchrun.spec.model import Job, RetryPolicy

FAST = RetryPolicy(initial_delay=0)


def planned(endpoint: str, arguments: dict[str, Any] | None = None, *, mode: str = "run", **job: Any) -> PlannedRequest:
    job.setdefault("retries", FAST)
    spec_job = Job(name="j", endpoint=endpoint, mode=mode, **job)  # type: ignore[arg-type]
    return PlannedRequest(id="req-1", index=0, job=spec_job, arguments=arguments or {}, matrix={}, row=None, repeat=0)


class Recorded:
    """Events that remember every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.handles: list[QueueHandle] = []

    async def submitted(self, request: PlannedRequest, handle: QueueHandle) -> None:
        self.handles.append(handle)
        self.calls.append(("submitted", handle.request_id))

    def status(self, request: PlannedRequest, status: str, queue_position: int | None) -> None:
        self.calls.append(("status", status, queue_position))

    def log(self, request: PlannedRequest, entry: dict[str, Any]) -> None:
        self.calls.append(("log", entry["message"]))

    def retrying(self, request: PlannedRequest, attempt: int, delay: float, reason: str, *, rate_limited: bool) -> None:
        self.calls.append(("retrying", attempt, delay, reason, rate_limited))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]


class Recorder:
    def __init__(self, app: Any, *, no_stream: bool = False,
                 override: Callable[[str, str], tuple[int, str, bytes] | None] | None = None) -> None:  # fmt: skip
        self.app = app
        self.state = getattr(app, "state", None)  # ServerThread reaches the emulator through app.state
        self.no_stream = no_stream
        self.override = override
        self.seen: list[Seen] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            self.seen.append(Seen(scope["method"], scope["path"], scope["query_string"].decode(), headers))
            answer = self.override(scope["method"], scope["path"]) if self.override else None
            if answer is None and self.no_stream and scope["path"].endswith("/status/stream"):
                answer = (404, "application/json", json.dumps({"detail": "Not Found"}).encode())
            if answer is not None:
                status, content_type, body = answer
                headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def ops(self) -> list[str]:
        """Each request as "METHOD what": the path, or for queue URLs the part after the request id
        ("result", "status", "status/stream", "cancel")."""
        out = []
        for s in self.seen:
            if "/requests/" in s.path:
                tail = s.path.split("/requests/", 1)[1].partition("/")[2]
                out.append(f"{s.method} {tail or 'result'}")
            else:
                out.append(f"{s.method} {s.path}")
        return out
