"""Fixtures that start the embedded fal-compatible server (star-imported by conftest.py).

    server_app          a fresh ASGI app (2 runners), for in-process use
    asgi_client_parts   (transport, run_url, queue_url) over httpx.ASGITransport, origin http://testserver
    loopback_server     one real server for the whole session on 127.0.0.1, port 0, 2 runners
    make_server         factory for special configurations: `with make_server(runners=1) as srv:`

and one helper, `queue_attempts`: submit to an app's queue and wait for the end, counting attempts.

Started servers expose .origin, .run_url, .queue_url, .port and .app (see batchrun.server).
Every fixture stops its server; start-up is bounded (10 s), so a broken server fails, never hangs.
The session server is shared: tests using it must not depend on its counters or queue being empty
(use make_server for that).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from batchrun.server import ServerThread, create_app

TESTSERVER = "http://testserver"


@dataclasses.dataclass
class QueueEnd:
    attempts: int  # attempts the server made (its first and its own retries, fallbacks included)
    status: httpx.Response  # the final status answer
    result: httpx.Response  # the result answer


async def queue_attempts(client: httpx.AsyncClient, endpoint: str, arguments: dict[str, Any],
                         headers: dict[str, str] | None = None,
                         status_params: dict[str, str] | None = None) -> QueueEnd:  # fmt: skip
    """Submit `arguments` to `endpoint` on the server behind `client`, poll its status (with
    `status_params`, e.g. logs) until the request ended (5 s at most) and fetch the result;
    attempts counted by the emulator's stats."""
    before = (await client.get("/_emulator/stats")).json()["attempts"]
    submitted = (await client.post(f"/queue/{endpoint}", json=arguments, headers=headers or {})).json()
    async with asyncio.timeout(5):
        while (status := await client.get(submitted["status_url"], params=status_params)).status_code != 200:
            await asyncio.sleep(0.005)
    after = (await client.get("/_emulator/stats")).json()["attempts"]
    return QueueEnd(after - before, status, await client.get(submitted["response_url"]))


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
