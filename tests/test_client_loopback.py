"""FalClient over real loopback sockets with its default transport (httpx-aiohttp): streaming status,
request counts, dropped connections, timeouts, refused connections and lost submit answers."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from client_helpers import Recorded, Recorder, planned
from httpx_aiohttp import AiohttpTransport

from batchrun.client.fal import STREAM_DRAIN_S, FalClient, Outcome
from batchrun.client.queue import QueueHandle
from batchrun.plan.planner import PlannedRequest
from batchrun.redact import Redactor
from batchrun.server import ServerThread, create_app
from batchrun.spec.model import RetryPolicy

pytestmark = pytest.mark.anyio

MakeServer = Callable[..., AbstractContextManager[ServerThread]]


@asynccontextmanager
async def client_for(server: Any, **options: Any) -> AsyncIterator[FalClient]:
    async with FalClient(run_url=server.run_url, queue_url=server.queue_url, auth=None, redactor=Redactor(),
                         poll_interval=0.01, **options) as client:  # fmt: skip
        yield client


def requests_of(server: ServerThread) -> dict[str, int]:
    stats = httpx.get(server.origin + "/_emulator/stats").json()
    return {k: v for k, v in stats["requests"].items() if v}


async def test_stream_is_live_and_three_requests_per_job(make_server: MakeServer) -> None:
    """Over real sockets the SSE stream delivers progress as it happens; each job costs 3 requests."""
    with make_server(runners=4) as server:
        async with client_for(server) as client:
            events = Recorded()
            outcome = await client.call(planned("local/sleep", {"seconds": 0.3}, mode="subscribe", with_logs=True), events)
            assert outcome.ok and outcome.result == {"slept": 0.3}
            kinds = [c[0] if c[0] != "status" else c[1] for c in events.calls]
            assert kinds[:3] == ["submitted", "IN_QUEUE", "IN_PROGRESS"]
            assert kinds[-1] == "COMPLETED"
            assert kinds.index("log") < kinds.index("COMPLETED")  # logs arrived while it ran
            assert outcome.queue_s is not None and outcome.queue_s < 0.2
            assert requests_of(server) == {"submit": 1, "stream": 1, "result": 1}

            results: list[Outcome] = []

            async def one(i: int) -> None:
                results.append(await client.call(planned("local/echo", {"i": i, "delay": 0.05}, mode="subscribe"), Recorded()))

            async with anyio.create_task_group() as tg:
                for i in range(24):
                    tg.start_soon(one, i)
            assert sorted(r.result["echo"]["i"] for r in results if r.result) == list(range(24))
            assert requests_of(server) == {"submit": 25, "stream": 25, "result": 25}


async def test_dropped_connection_on_run(loopback_server: ServerThread) -> None:
    """A run whose connection drops mid-answer is retried; without recovery it is a connection_error."""
    async with client_for(loopback_server) as client:
        once = await client.call(planned("local/fail", {"reset": True, "times": 1, "key": "lb-reset-1"}), Recorded())
        assert once.ok is True and once.attempts == 2
        events = Recorded()
        always = await client.call(
            planned("local/fail", {"reset": True}, retries=RetryPolicy(max_attempts=3, initial_delay=0)), events
        )
    assert always.error is not None
    assert (always.error["type"], always.error["status_code"], always.error["retryable"]) == ("connection_error", None, True)
    assert always.attempts == 3
    assert [c[3] for c in events.of("retrying")] == ["connection_error", "connection_error"]


async def test_run_timeout(loopback_server: ServerThread) -> None:
    """job.timeout bounds a run call; it is retried unless X-Fal-Request-Timeout was sent."""
    policy = RetryPolicy(max_attempts=2, initial_delay=0)
    async with client_for(loopback_server) as client:
        retried = await client.call(planned("local/sleep", {"seconds": 5}, timeout=0.2, retries=policy), Recorded())
        final = await client.call(
            planned("local/sleep", {"seconds": 5}, timeout=0.2, start_timeout=5, retries=policy), Recorded()
        )
    for outcome, attempts in ((retried, 2), (final, 1)):
        assert outcome.error is not None
        assert (outcome.error["type"], outcome.error["status_code"], outcome.error["retryable"]) == ("http_timeout", None, True)
        assert outcome.attempts == attempts


async def test_connection_refused() -> None:
    """Nothing listening: connection_error after max_attempts, safe to retry even for a submit."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    async with FalClient(run_url=origin, queue_url=origin, auth=None, redactor=Redactor()) as client:
        policy = RetryPolicy(max_attempts=3, initial_delay=0)
        for mode in ("run", "subscribe"):
            outcome = await client.call(planned("local/echo", {}, mode=mode, retries=policy), Recorded())
            assert outcome.error is not None
            assert (outcome.error["type"], outcome.error["retryable"], outcome.attempts) == ("connection_error", True, 3)
            assert outcome.error["detail"].startswith("ClientConnectorError: Cannot connect to host 127.0.0.1:")


async def test_client_timeout_cancels_over_sockets(make_server: MakeServer) -> None:
    """client_timeout cancels the remote request through the real transport."""
    with make_server(runners=1) as server:
        async with client_for(server) as client:
            events = Recorded()
            outcome = await client.call(planned("local/sleep", {"seconds": 20}, mode="subscribe", client_timeout=0.3), events)
        assert outcome.error is not None and outcome.error["type"] == "client_timeout"
        assert outcome.request_id == events.handles[0].request_id
        stats = httpx.get(server.origin + "/_emulator/stats").json()
        assert stats["cancelled"] == 1
        assert stats["requests"]["cancel"] == 1


class LoseFirstSubmitAnswers:
    """In front of the server: the first `n` queue submits reach it (and are queued), but their
    answers are cut off mid-body, as when a connection dies after the request was sent."""

    def __init__(self, app: Any, n: int) -> None:
        self.app, self.left = app, n
        self.state = app.state  # ServerThread reaches the emulator through app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith("/queue/") or self.left <= 0:
            await self.app(scope, receive, send)
            return
        self.left -= 1
        messages: list[Any] = []

        async def keep(message: Any) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        start = dict(messages[0], headers=[(b"content-length", b"4096")])
        await send(start)
        await send({"type": "http.response.body", "body": b'{"request_id": ', "more_body": True})
        raise ConnectionAbortedError("answer lost on purpose")


async def submit_with_lost_answer(policy: RetryPolicy) -> tuple[Outcome, dict[str, Any], PlannedRequest]:
    app = LoseFirstSubmitAnswers(create_app(runners=1, keepalive=0.2), 1)
    with ServerThread(app=app) as server:  # type: ignore[arg-type]
        request = planned("local/echo", {"n": 1}, mode="subscribe", retries=policy)
        async with client_for(server) as client:
            outcome = await client.call(request, Recorded())
        stats = httpx.get(server.origin + "/_emulator/stats").json()
    return outcome, stats, request


async def test_lost_submit_answer_is_outcome_unknown() -> None:
    """A submit that reached the queue but lost its answer is not resubmitted by default."""
    outcome, stats, _ = await submit_with_lost_answer(RetryPolicy(initial_delay=0))
    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["status_code"], outcome.error["retryable"]) == ("outcome_unknown", None, True)
    assert outcome.error["detail"].startswith("the queue submit was sent but its answer was lost (")
    assert outcome.attempts == 1
    assert (stats["requests"]["submit"], stats["duplicate_submits"]) == (1, 0)


async def test_lost_submit_answer_resubmitted_on_opt_in() -> None:
    """With retries.unknown_outcome the submit is sent again (the server sees the duplicate)."""
    outcome, stats, _ = await submit_with_lost_answer(RetryPolicy(initial_delay=0, unknown_outcome=True))
    assert outcome.ok is True and outcome.result == {"echo": {"n": 1}, "path": ""}
    assert outcome.attempts == 2
    assert (stats["requests"]["submit"], stats["duplicate_submits"]) == (2, 1)


async def test_headers_on_the_wire_with_the_default_transport() -> None:
    """The aiohttp transport sends our headers unchanged (one User-Agent, auth on every call)."""
    recorder = Recorder(create_app(runners=1, keepalive=0.2))
    with ServerThread(app=recorder) as server:  # type: ignore[arg-type]
        async with FalClient(run_url=server.run_url, queue_url=server.queue_url, auth="Key lb-key",
                             redactor=Redactor()) as client:  # fmt: skip
            request = planned("local/echo", {"a": 1}, mode="subscribe", path="p", priority="low", hint="hh",
                              start_timeout=7, headers={"X-Trace": "lb"}, with_logs=True)  # fmt: skip
            outcome = await client.call(request, Recorded())
    assert outcome.ok and outcome.result == {"echo": {"a": 1}, "path": "/p"}
    assert [s.method + " " + s.path.rsplit("/", 1)[-1] for s in recorder.seen] == ["POST p", "GET stream", f"GET {outcome.request_id}"]
    submit = recorder.seen[0].headers
    assert {k: submit[k] for k in ("authorization", "x-fal-queue-priority", "x-fal-runner-hint", "x-fal-request-timeout", "x-trace", "content-type")} == {
        "authorization": "Key lb-key", "x-fal-queue-priority": "low", "x-fal-runner-hint": "hh",
        "x-fal-request-timeout": "7.0", "x-trace": "lb", "content-type": "application/json",
    }  # fmt: skip
    assert submit["user-agent"].startswith("batchrun/") and "aiohttp" not in submit["user-agent"]
    assert recorder.seen[1].query == "logs=1"
    assert all(s.headers["authorization"] == "Key lb-key" for s in recorder.seen)


async def test_polling_over_sockets_sends_its_query(make_server: MakeServer) -> None:
    """Without a stream the client polls status with `?logs=1` (direct aiohttp way, query and all)
    and still gets the runner's logs and the result."""
    with ServerThread(app=Recorder(create_app(runners=2), no_stream=True)) as server:
        async with client_for(server) as client:
            request = planned("local/sleep", {"seconds": 0.25}, mode="subscribe", with_logs=True)
            outcome = await client.call(request, Recorded())
            assert outcome.ok and outcome.result == {"slept": 0.25}
            assert [e["message"] for e in outcome.logs or []][0] == "sleeping 0.25 s"
            counts = requests_of(server)
            assert counts["submit"] == 1 and counts["result"] == 1 and counts["status"] >= 2


async def test_a_stream_left_open_after_completed_costs_at_most_the_drain(make_server: MakeServer) -> None:
    """The client reads the stream to its end after COMPLETED (fal closes it at once), but a server
    that keeps it open delays the result by STREAM_DRAIN_S at most: no hang, no polling."""
    with make_server(runners=2, stream_linger=30) as server:
        async with client_for(server) as client:
            started = anyio.current_time()
            outcome = await client.call(planned("local/sleep", {"seconds": 0.1}, mode="subscribe"), Recorded())
            elapsed = anyio.current_time() - started
        assert outcome.ok and outcome.result == {"slept": 0.1}
        assert 0.1 + STREAM_DRAIN_S <= elapsed < 0.1 + STREAM_DRAIN_S + 2.0
        assert requests_of(server) == {"submit": 1, "stream": 1, "result": 1}


@pytest.mark.parametrize("url", ["ftp://nowhere/x", "not a url", "http://[::1/x", "/queue/relative"])
async def test_garbage_handle_urls_fail_at_once_on_both_ways(loopback_server: ServerThread, url: str) -> None:
    """A journal (or server) may hold any URL: following or cancelling it is a final
    refused_url error at once on the aiohttp transport as on httpx's own; nothing is retried."""
    verdicts = []
    for transport in (None, AiohttpTransport()):
        async with client_for(loopback_server, transport=transport) as client:
            with anyio.fail_after(5):
                request = planned("local/echo", {}, mode="subscribe", retries=RetryPolicy(max_attempts=5))
                outcome = await client.reattach(request, QueueHandle("r", url, url, url), events := Recorded())
                cancelled = await client.cancel(QueueHandle("r", url, url, url))
        assert outcome.error is not None and not events.of("retrying")
        verdicts.append((outcome.error["type"], outcome.error["retryable"], cancelled))
    assert verdicts == [("refused_url", False, False)] * 2


async def test_server_urls_with_credentials_are_refused_on_both_ways(loopback_server: ServerThread) -> None:
    """A handle URL with user:password@ is neither followed (httpx would send those credentials
    instead of the key; aiohttp raises) nor quoted: a final error without the password."""
    url = loopback_server.queue_url.replace("http://", "http://user:hunter22@") + "/local/echo/requests/r1/status"
    for transport in (None, AiohttpTransport()):
        async with client_for(loopback_server, transport=transport) as client:
            with anyio.fail_after(5):
                outcome = await client.reattach(planned("local/echo", {}, mode="subscribe"),
                                                QueueHandle("r1", url, url, url), Recorded())
                assert await client.cancel(QueueHandle("r1", url, url, url)) is False
        assert outcome.error is not None and outcome.error["retryable"] is False
        assert "credentials (user:password@)" in outcome.error["detail"] and "hunter22" not in str(outcome)
