"""fal's backup domains (docs/fal-protocol.md §9.6, batchrun.client.failover) over real loopback
sockets: a primary that refuses connections stands in for an unreachable fal.run, a second port
for falrun.com. Only a failure to connect fails over; anything that may have reached the server
is never replayed."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from client_helpers import Recorded, planned

from batchrun.client.failover import BACKUP_CONNECT_TIMEOUT, BACKUP_HOSTS, backups_for
from batchrun.client.fal import FalClient
from batchrun.redact import Redactor
from batchrun.server import ServerThread, create_app
from batchrun.spec.model import RetryPolicy

pytestmark = pytest.mark.anyio

MakeServer = Callable[..., AbstractContextManager[ServerThread]]


def dead_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@asynccontextmanager
async def failing_over(primary: int, backup: int) -> AsyncIterator[FalClient]:
    async with FalClient(run_url=f"http://127.0.0.1:{primary}/run", queue_url=f"http://127.0.0.1:{primary}/queue",
                         auth="Key secret-key-123", redactor=Redactor(), poll_interval=0.01,
                         backup_hosts={f"127.0.0.1:{primary}": f"127.0.0.1:{backup}"}) as client:  # fmt: skip
        yield client


def requests_of(server: ServerThread) -> dict[str, int]:
    stats = httpx.get(server.origin + "/_emulator/stats").json()
    return {k: v for k, v in stats["requests"].items() if v}


async def test_an_unreachable_primary_fails_over_for_run_and_queue_calls(
    make_server: MakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with make_server() as backup:
        async with failing_over(dead_port(), backup.port) as client:
            ran = await client.call(planned("local/echo", {"a": 1}), Recorded())
            queued = await client.call(planned("local/echo", {"b": 2}, mode="subscribe"), Recorded())
            again = await client.call(planned("local/echo", {"c": 3}), Recorded())
        assert (ran.ok, ran.result, ran.attempts) == (True, {"echo": {"a": 1}, "path": ""}, 1)
        assert (queued.ok, queued.result, again.ok) == (True, {"echo": {"b": 2}, "path": ""}, True)
        # the queue's answers name the backup's URLs, which are followed (they are fal's own host)
        assert requests_of(backup) == {"run": 2, "submit": 1, "stream": 1, "result": 1}
    warnings = [line for line in capsys.readouterr().err.splitlines() if "backup domain" in line]
    assert len(warnings) == 1, warnings  # once per host, not once per request
    assert warnings[0].startswith("batchrun: warning: cannot connect to http://127.0.0.1:")
    assert "secret-key-123" not in warnings[0]


async def test_when_the_backup_is_unreachable_too_the_primary_error_is_retried() -> None:
    primary = dead_port()
    async with failing_over(primary, dead_port()) as client:
        outcome = await client.call(planned("local/echo", retries=RetryPolicy(max_attempts=3, initial_delay=0)),
                                    Recorded())
    assert outcome.error is not None
    assert (outcome.ok, outcome.error["type"], outcome.attempts) == (False, "connection_error", 3)
    assert f"127.0.0.1:{primary}" in outcome.error["detail"]  # the primary's error, not the backup's


@pytest.mark.parametrize(("arguments", "mode", "error"), [
    ({"status": 503}, "run", "http_error"),  # an HTTP answer
    ({"reset": True}, "run", "connection_error"),  # dropped after the headers: it ran
    ({"reset": True}, "subscribe", "runner_disconnected"),
    ({"trickle": 0.5}, "run", "http_timeout"),  # a deadline while reading
])  # fmt: skip
async def test_what_may_have_reached_the_server_never_fails_over(
    make_server: MakeServer, arguments: dict[str, Any], mode: str, error: str
) -> None:
    job: dict[str, Any] = {"retries": RetryPolicy(max_attempts=1)}
    if mode == "run":
        job["timeout"] = 0.3
    # A fast first server-side retry: the queue retries a runner that disconnected (5 times, doubling)
    with make_server(retry_backoff=0.005) as primary, make_server() as backup:
        async with failing_over(primary.port, backup.port) as client:
            outcome = await client.call(planned("local/fail", arguments, mode=mode, **job), Recorded())
        assert outcome.error is not None and outcome.error["type"] == error, outcome.error
        assert requests_of(backup) == {}


def test_only_fal_hosts_have_backups() -> None:
    origins = ["https://fal.run", "https://queue.fal.run", "http://127.0.0.1:8765", "https://rest.fal.ai",
               "https://v3.fal.media", "https://fal.run:8443"]
    assert backups_for(origins, BACKUP_HOSTS) == {"https://fal.run": "https://falrun.com",
                                                  "https://queue.fal.run": "https://queue.falrun.com"}


class _Recording(httpx.ASGITransport):
    """The embedded server in-process, noting the timeout each request was sent with."""

    def __init__(self, **options: Any) -> None:
        super().__init__(app=create_app(**options))
        self.timeouts: list[dict[str, Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.timeouts.append(dict(request.extensions["timeout"]))
        return await super().handle_async_request(request)


@pytest.mark.parametrize("mapped", [True, False])
async def test_a_mapped_host_connects_within_five_seconds_and_run_has_no_read_timeout(mapped: bool) -> None:
    """fal-client caps connecting to fal's hosts at 5 s, even when a call has no timeout at all, and
    its `run()` sets no read timeout (long generations are unbounded): both, as batchrun does."""
    transport = _Recording()
    hosts = {"testserver": "backup.invalid"} if mapped else {}
    async with FalClient(run_url="http://testserver/run", queue_url="http://testserver/queue", auth=None,
                         redactor=Redactor(), transport=transport, backup_hosts=hosts) as client:  # fmt: skip
        assert (await client.call(planned("local/echo"), Recorded())).ok
        assert (await client.call(planned("local/echo", timeout=42.0), Recorded())).ok
    connect = BACKUP_CONNECT_TIMEOUT if mapped else 30.0
    # (the 42 s is the exchange's deadline, not a per-read timer: tests/test_transport_promises.py)
    assert [(t["connect"], t["read"]) for t in transport.timeouts] == [(connect, None), (connect, None)]
