"""Fixtures that start the embedded fal-compatible server (star-imported by conftest.py).

    server_app          a fresh ASGI app (2 runners), for in-process use
    asgi_client_parts   (transport, run_url, queue_url) over httpx.ASGITransport, origin http://testserver
    loopback_server     one real server for the whole session on 127.0.0.1, port 0, 2 runners
    make_server         factory for special configurations: `with make_server(runners=1) as srv:`

Started servers expose .origin, .run_url, .queue_url, .port and .app (see batchrun.server).
Every fixture stops its server; start-up is bounded (10 s), so a broken server fails, never hangs.
The session server is shared: tests using it must not depend on its counters or queue being empty
(use make_server for that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from batchrun.server import ServerThread, create_app

TESTSERVER = "http://testserver"


@pytest.fixture
def server_app() -> Starlette:
    """A fresh server app with 2 runners and short SSE keep-alives (0.2 s); nothing listens."""
    return create_app(runners=2, keepalive=0.2)


@pytest.fixture
def asgi_client_parts(server_app: Starlette) -> tuple[httpx.ASGITransport, str, str]:
    """(transport, run_url, queue_url) for `httpx.AsyncClient(transport=transport)`.

    In-process: no sockets, but the transport buffers whole bodies, so SSE needs loopback_server.
    The app behind it is the `server_app` fixture (request both to inspect its counters).
    """
    transport = httpx.ASGITransport(app=server_app)
    return transport, f"{TESTSERVER}/run", f"{TESTSERVER}/queue"


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[ServerThread]:
    """A real server (plain http on 127.0.0.1, ephemeral port, 2 runners) shared by the session."""
    with ServerThread(runners=2, keepalive=0.2) as server:
        yield server


ServerFactory = Callable[..., AbstractContextManager[ServerThread]]  # the make_server fixture's type


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    """Factory: `with make_server(runners=1, require_key=True) as srv:` starts a dedicated server.

    Accepts ServerThread's keyword arguments (runners, require_key, apps, ssl_certfile, ssl_keyfile,
    keepalive, retry_backoff, result_ttl, max_results, max_body, ...). Servers still running when
    the test ends are stopped.
    """
    started: list[ServerThread] = []

    def factory(**options: Any) -> ServerThread:
        options.setdefault("keepalive", 0.2)
        server = ServerThread(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
