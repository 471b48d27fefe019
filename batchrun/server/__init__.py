"""The embedded fal-compatible server (protocol: docs/fal-protocol.md).

    create_app(...)      the ASGI app (Starlette); works under httpx.ASGITransport without lifespan
    serve_local(...)     async context manager: a real server in the current event loop
    ServerThread(...)    context manager: a real server in its own thread (for sync code and tests)

Each started server exposes .origin, .run_url (origin + "/run"), .queue_url (origin + "/queue"),
.port and .app. GET {origin}/_emulator/stats returns request counters; POST /_emulator/reset clears
them. In-process, `app.state.stats()` returns the same dict.
"""

from __future__ import annotations

from batchrun.server.app import create_app
from batchrun.server.runtime import (
    RunningServer,
    ServerStartError,
    ServerThread,
    serve_local,
)

__all__ = ["RunningServer", "ServerStartError", "ServerThread", "create_app", "serve_local"]
