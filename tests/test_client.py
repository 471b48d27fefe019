"""FalClient against the embedded server in-process: parameters on the wire, error classes, retries,
queue following, client timeouts, reattach, cancel and redaction."""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from client_helpers import FAST, Recorded, Recorder, planned

from batchrun.client.fal import FalClient, QueueHandle
from batchrun.load import load_spec
from batchrun.plan.planner import build_plan
from batchrun.redact import REDACTED, Redactor
from batchrun.server.app import create_app
from batchrun.spec.model import RetryPolicy

pytestmark = pytest.mark.anyio

KEY = "kid-c0ffee01:ksec-planted-7a9b3c"
ENV = {"PLANTED": "env-planted-5d6e7f", "HDR_TOKEN": "hdr-planted-1a2b3c"}
NO_RETRY = {"X-Fal-No-Retry": "1"}  # keep the server's own queue retries out of client tests


class Emulator:
    def __init__(self, *, no_stream: bool = False, runners: int = 2, override: Any = None) -> None:
        self.app = create_app(runners=runners, retry_backoff=0.0)
        self.recorder = Recorder(self.app, no_stream=no_stream, override=override)
        self.redactor = Redactor()
        self.client = FalClient(
            run_url="http://emulator/run/", queue_url="http://emulator/queue", auth=f"Key {KEY}",
            redactor=self.redactor, transport=httpx.ASGITransport(app=self.recorder), environ=ENV,
            poll_interval=0.01, rng=random.Random(1),
        )
        # The tests' own side channel to the same app (blockers, status peeks), not the client's.
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.recorder), headers={"Authorization": f"Key {KEY}"})

    def stats(self) -> dict[str, Any]:
        return self.app.state.stats()

    def requests(self) -> dict[str, int]:
        return {k: v for k, v in self.stats()["requests"].items() if v}


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    emulator = Emulator()
    async with emulator.client:
        yield emulator


@pytest.fixture
async def emu_polling() -> AsyncIterator[Emulator]:
    emulator = Emulator(no_stream=True)
    async with emulator.client:
        yield emulator


# ---- parameters on the wire ---------------------------------------------------------------------


async def test_run_sends_every_parameter(emu: Emulator) -> None:
    """A run call posts the resolved arguments to run/<endpoint>/<path> with every header."""
    request = planned(
        "local/echo", {"prompt": "a ${{ env.PLANTED }} b", "n": 2}, path="/sub/x", start_timeout=30, hint="h-1",
        headers={"X-Trace": "t1", "X-Token": "${{ env.HDR_TOKEN }}"}, timeout=10,
    )
    events = Recorded()
    outcome = await emu.client.call(request, events)
    assert outcome.ok is True
    assert outcome.result == {"echo": {"prompt": f"a {REDACTED} b", "n": 2}, "path": "/sub/x"}
    assert (outcome.attempts, outcome.served_from, outcome.queue_s, outcome.logs) == (1, "direct", None, None)
    assert outcome.request_id is not None and len(outcome.request_id) == 36
    [seen] = emu.recorder.seen
    assert (seen.method, seen.path) == ("POST", "/run/local/echo/sub/x")
    assert seen.headers["authorization"] == f"Key {KEY}"
    assert seen.headers["x-fal-request-timeout"] == "30.0"
    assert seen.headers["x-fal-runner-hint"] == "h-1"
    assert seen.headers["x-trace"] == "t1"
    assert seen.headers["x-token"] == ENV["HDR_TOKEN"]
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"].startswith("batchrun/")
    assert "x-fal-queue-priority" not in seen.headers
    assert events.calls == []


async def test_templated_path_hint_and_headers_reach_the_wire(emu: Emulator, tmp_path: Path) -> None:
    """Per-request path, hint and header values rendered by the planner are what is sent, not the job's templates."""
    spec_file = tmp_path / "t.yaml"
    spec_file.write_text(
        "version: 1\nname: t\ntarget: local\njobs:\n"
        "  - name: j\n    endpoint: local/echo\n    mode: run\n    path: 'p${{ matrix.n }}'\n"
        "    hint: 'h-${{ matrix.n }}'\n    headers: {X-Trace: 't${{ matrix.n }}', X-Token: '${{ env.HDR_TOKEN }}'}\n"
        "    matrix: {n: [7]}\n"
    )
    [request] = build_plan(load_spec(spec_file))
    outcome = await emu.client.call(request, Recorded())
    assert outcome.ok is True
    [seen] = emu.recorder.seen
    assert seen.path == "/run/local/echo/p7"
    assert (seen.headers["x-fal-runner-hint"], seen.headers["x-trace"]) == ("h-7", "t7")
    assert seen.headers["x-token"] == ENV["HDR_TOKEN"]


@pytest.mark.parametrize("path", ["../../other/app", "sub/./x", ".."])
async def test_a_path_with_dot_segments_is_an_input_error_and_nothing_is_sent(emu: Emulator, path: str) -> None:
    """A (templated) path cannot climb out of its endpoint to call another app."""
    outcome = await emu.client.call(planned("local/echo", {"x": 1}, path=path), Recorded())
    assert outcome.ok is False and outcome.attempts == 0
    assert outcome.error == {
        "type": "input_error", "status_code": None, "retryable": False,
        "detail": f"path {path!r}: '.' and '..' segments are not allowed (they would leave the endpoint)",
    }
    assert emu.recorder.seen == []


async def test_subscribe_sends_every_parameter_in_three_requests(emu: Emulator) -> None:
    """A subscribe submits with priority/hint/timeout headers, journals, streams, fetches: 3 requests."""
    request = planned(
        "local/echo", {"x": 1}, mode="subscribe", path="deep/er", priority="low", hint="h-2", client_timeout=20,
        headers={"X-Trace": "t2"},
    )
    events = Recorded()
    outcome = await emu.client.call(request, events)
    assert outcome.ok is True
    assert outcome.result == {"echo": {"x": 1}, "path": "/deep/er"}
    assert outcome.attempts == 1
    assert outcome.served_from == "runner-0"
    assert outcome.metrics is not None and set(outcome.metrics) == {"inference_time"}
    assert outcome.queue_s is not None and outcome.queue_s >= 0
    assert emu.recorder.ops() == ["POST /queue/local/echo/deep/er", "GET status/stream", "GET result"]
    submit = emu.recorder.seen[0].headers
    assert submit["x-fal-queue-priority"] == "low"
    assert submit["x-fal-runner-hint"] == "h-2"
    assert submit["x-fal-request-timeout"] == "20.0"  # client_timeout implies start_timeout
    assert submit["x-trace"] == "t2"
    assert all(s.headers["authorization"] == f"Key {KEY}" for s in emu.recorder.seen)
    assert emu.requests() == {"submit": 1, "stream": 1, "result": 1}
    [handle] = events.handles
    assert outcome.request_id == handle.request_id
    assert handle.status_url == f"http://emulator/queue/local/echo/requests/{handle.request_id}/status"
    assert events.calls[0] == ("submitted", handle.request_id)
    assert events.calls[1] == ("status", "IN_QUEUE", 0)
    assert events.calls[-1] == ("status", "COMPLETED", None)


async def test_subscribe_logs_deduplicated(emu: Emulator) -> None:
    """with_logs asks for logs=1 and reports each runner log line once, in order."""
    request = planned("local/sleep", {"seconds": 0.25}, mode="subscribe", with_logs=True)
    events = Recorded()
    outcome = await emu.client.call(request, events)
    assert outcome.ok is True and outcome.result == {"slept": 0.25}
    messages = [entry["message"] for entry in outcome.logs or []]
    assert messages[0] == "sleeping 0.25 s"
    assert 2 <= len(messages) <= 4 and all(m.startswith("slept 0.") for m in messages[1:])  # load-tolerant
    assert [c[1] for c in events.of("log")] == messages  # each line reported exactly once
    assert emu.recorder.seen[1].query == "logs=1"


async def test_polling_fallback_without_stream(emu_polling: Emulator) -> None:
    """When the stream answers 404 the client polls status (logs=1) and still gets result and logs."""
    request = planned("local/sleep", {"seconds": 0.2}, mode="subscribe", with_logs=True)
    events = Recorded()
    outcome = await emu_polling.client.call(request, events)
    assert outcome.ok is True and outcome.result == {"slept": 0.2}
    ops = emu_polling.recorder.ops()
    assert ops[:2] == ["POST /queue/local/sleep", "GET status/stream"]
    assert ops[-1] == "GET result"
    polls = ops[2:-1]
    assert len(polls) >= 2 and set(polls) == {"GET status"}
    assert all(s.query == "logs=1" for s in emu_polling.recorder.seen[2:-1])
    assert [e["message"] for e in outcome.logs or []][0] == "sleeping 0.2 s"
    assert [c[1] for c in events.of("log")] == [e["message"] for e in outcome.logs or []]
    assert ("status", "IN_PROGRESS", None) in events.calls
    assert events.calls[-1] == ("status", "COMPLETED", None)
    assert emu_polling.stats()["requests"]["stream"] == 0  # the 404 came from the front door


# ---- error classes and attempts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "retries", "type_", "status_code", "attempts", "retryable"),
    [
        pytest.param({"status": 503, "ingress": True, "times": 2, "key": "i1"}, FAST, None, None, 3, None, id="ingress-then-ok"),
        pytest.param({"status": 502, "ingress": True}, RetryPolicy(max_attempts=3, initial_delay=0), "http_error", 502, 3, True, id="ingress-exhausted"),
        pytest.param({"status": 422}, FAST, "validation_error", 422, 1, False, id="422"),
        pytest.param({"status": 400}, FAST, "http_error", 400, 1, False, id="400"),
        pytest.param({"status": 404}, FAST, "http_error", 404, 1, False, id="404"),
        pytest.param({"error_type": "runner_server_error"}, FAST, "runner_server_error", 500, 1, True, id="runner-500-not-retried"),
        pytest.param({"error_type": "runner_scheduling_failure", "times": 2, "key": "s1"},
                     RetryPolicy(initial_delay=0, server_errors=True), None, None, 3, None, id="server-errors-opt-in"),
        pytest.param({"status": 429, "times": 1, "key": "r1"}, FAST, None, None, 2, None, id="429-then-ok"),
        pytest.param({"status": 408, "times": 1, "key": "t1"}, FAST, None, None, 2, None, id="408-then-ok"),
        pytest.param({"status": 409}, RetryPolicy(max_attempts=2, initial_delay=0), "http_error", 409, 2, True, id="409-exhausted"),
        pytest.param({"bad_json": True}, FAST, "invalid_response", 200, 1, False, id="bad-json"),
        pytest.param({"not_object": True}, FAST, "invalid_response", 200, 1, False, id="not-object"),
    ],
)
async def test_run_error_classes(emu: Emulator, arguments, retries, type_, status_code, attempts, retryable) -> None:
    """Each failure class gets fal-client's retry decision, the record's error and the attempt count."""
    outcome = await emu.client.call(planned("local/fail", arguments, retries=retries), Recorded())
    assert outcome.attempts == attempts
    assert emu.stats()["apps"]["local/fail"]["run"] == attempts
    if type_ is None:
        assert outcome.ok is True and outcome.error is None
        assert outcome.result == {"echo": arguments, "path": ""}
    else:
        assert outcome.ok is False and outcome.result is None
        assert outcome.error is not None
        assert (outcome.error["type"], outcome.error["status_code"], outcome.error["retryable"]) == (type_, status_code, retryable)


async def test_422_detail_and_ingress_detail(emu: Emulator) -> None:
    """A 422 keeps fal's detail list; an nginx page becomes a short line."""
    outcome = await emu.client.call(planned("local/fail", {"status": 422}), Recorded())
    assert outcome.error is not None
    assert outcome.error["detail"] == [{
        "loc": ["body", "num_images"], "msg": "Input should be less than or equal to 4", "type": "less_than_equal",
        "url": "https://docs.fal.ai/errors/#less_than_equal", "ctx": {"le": 4}, "input": 5,
    }]  # fmt: skip
    ingress = await emu.client.call(
        planned("local/fail", {"status": 504, "ingress": True}, retries=RetryPolicy(max_attempts=1)), Recorded()
    )
    assert ingress.error == {
        "type": "http_error", "status_code": 504, "retryable": True,
        "detail": "HTTP 504: <html> <head><title>504 Gateway Time-out</title></head> <body> <center><h1>504 Gateway "
                  "Time-out</h1></center> <hr><center>nginx</center> </body> </html>",
    }  # fmt: skip
    assert ingress.request_id is None  # ingress errors carry no x-fal-request-id


async def test_retry_after_and_rate_limited_event(emu: Emulator) -> None:
    """A 429's Retry-After sets the delay and the retrying event is marked rate_limited."""
    events = Recorded()
    outcome = await emu.client.call(planned("local/fail", {"status": 429, "retry_after": 0.01, "times": 2, "key": "ra"}), events)
    assert outcome.ok is True and outcome.attempts == 3
    assert events.of("retrying") == [
        ("retrying", 1, 0.01, "concurrent_requests_limit (HTTP 429)", True),
        ("retrying", 2, 0.01, "concurrent_requests_limit (HTTP 429)", True),
    ]


async def test_backoff_delays_follow_policy(emu: Emulator) -> None:
    """Retry delays follow min(initial * 2**(n-1), max) * U(0.5, 1.5) from the injected rng."""
    events = Recorded()
    policy = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002)
    await emu.client.call(planned("local/fail", {"status": 503, "ingress": True}, retries=policy), events)
    rng = random.Random(1)
    expected = [min(0.001 * rng.uniform(0.5, 1.5), 0.002), min(0.002 * rng.uniform(0.5, 1.5), 0.002)]
    assert [c[2] for c in events.of("retrying")] == pytest.approx(expected)


async def test_subscribe_model_error_is_fetched(emu: Emulator) -> None:
    """A COMPLETED status with an error still fetches the result, which becomes the error."""
    request = planned("local/fail", {"status": 422}, mode="subscribe")
    outcome = await emu.client.call(request, Recorded())
    assert outcome.error is not None and outcome.error["type"] == "validation_error"
    assert outcome.request_id is not None and outcome.attempts == 1
    assert emu.requests() == {"submit": 1, "stream": 1, "result": 1}


async def test_subscribe_server_error_resubmitted_only_on_opt_in(emu: Emulator) -> None:
    """A runner_* result is final by default; with server_errors it is submitted again."""
    arguments = {"error_type": "runner_server_error", "times": 1, "key": "sub-5xx"}
    default = await emu.client.call(planned("local/fail", arguments, mode="subscribe", headers=NO_RETRY), Recorded())
    assert default.error == {"type": "runner_server_error", "status_code": 500, "detail": "injected runner_server_error", "retryable": True}
    assert default.attempts == 1
    events = Recorded()
    arguments["key"] = "sub-5xx-2"
    policy = RetryPolicy(initial_delay=0, server_errors=True)
    retried = await emu.client.call(planned("local/fail", arguments, mode="subscribe", headers=NO_RETRY, retries=policy), events)
    assert retried.ok is True and retried.attempts == 2
    assert len(events.handles) == 2 and retried.request_id == events.handles[1].request_id
    assert events.of("retrying") == [("retrying", 1, 0.0, "runner_server_error (HTTP 500)", False)]


async def test_subscribe_ingress_submit_retried(emu: Emulator) -> None:
    """An ingress 503 on the queue submit is retried; the request is queued once."""
    events = Recorded()
    outcome = await emu.client.call(planned("local/fail", {"ingress": True, "times": 2, "key": "qi"}, mode="subscribe"), events)
    assert outcome.ok is True and outcome.attempts == 3
    assert emu.stats()["requests"]["submit"] == 3
    assert emu.stats()["apps"]["local/fail"]["submit"] == 1
    assert len(events.handles) == 1


async def test_start_timeout_504_not_retried(emu: Emulator) -> None:
    """A start timeout (504 + X-Fal-Request-Timeout-Type) is recorded, never retried."""
    blockers = [planned("local/fail", {"hang": True}, mode="subscribe") for _ in range(2)]
    handles = []
    for blocker in blockers:  # occupy both runners
        response = await emu.http.post("http://emulator/queue/local/fail", json=blocker.arguments)
        handles.append(QueueHandle(**{k: response.json()[k] for k in ("request_id", "status_url", "response_url", "cancel_url")}))
    request = planned("local/echo", {"x": 1}, mode="subscribe", start_timeout=0.2, retries=RetryPolicy(initial_delay=0, server_errors=True))
    outcome = await emu.client.call(request, Recorded())
    assert outcome.error is not None
    assert (outcome.error["type"], outcome.error["status_code"], outcome.attempts) == ("startup_timeout", 504, 1)
    assert outcome.error["detail"] == "No runner started the request within its start timeout of 0.2 s"
    assert outcome.queue_s is not None and outcome.queue_s >= 0.15
    for handle in handles:
        assert await emu.client.cancel(handle) is True


# ---- client timeout, cancel, reattach -----------------------------------------------------------


async def test_client_timeout_cancels_remotely(emu: Emulator) -> None:
    """client_timeout expiry cancels the queue request and records client_timeout with its id."""
    events = Recorded()
    outcome = await emu.client.call(planned("local/sleep", {"seconds": 30}, mode="subscribe", client_timeout=0.3), events)
    [handle] = events.handles
    assert outcome.ok is False
    assert outcome.error == {
        "type": "client_timeout", "status_code": None, "retryable": True,
        "detail": f"client_timeout of 0.3 s expired for request {handle.request_id}; cancel requested",
    }  # fmt: skip
    assert outcome.request_id == handle.request_id and outcome.attempts == 1
    assert emu.stats()["cancelled"] == 1
    assert emu.recorder.ops()[-1] == "PUT cancel"
    with anyio.fail_after(5):  # the runner sees the cancel at its next await
        while (status := (await emu.http.get(handle.status_url)).json())["status"] != "COMPLETED":
            await anyio.sleep(0.01)
    assert status["error_type"] == "client_cancelled"


async def test_cancel_answers(emu: Emulator) -> None:
    """cancel() is True for a running request, False once completed or unknown."""
    events = Recorded()
    done = await emu.client.call(planned("local/echo", {}, mode="subscribe"), events)
    assert done.ok
    assert await emu.client.cancel(events.handles[0]) is False
    response = await emu.http.post("http://emulator/queue/local/fail", json={"hang": True})
    body = response.json()
    handle = QueueHandle(body["request_id"], body["status_url"], body["response_url"], body["cancel_url"])
    assert await emu.client.cancel(handle) is True
    unknown = QueueHandle("nope", handle.status_url, handle.response_url, handle.cancel_url.replace(handle.request_id, "nope"))
    assert await emu.client.cancel(unknown) is False
    assert await emu.client.cancel(QueueHandle("x", "x", "x", "ftp://nowhere/cancel")) is False


async def test_reattach_never_submits(emu: Emulator) -> None:
    """reattach follows a journaled request to its result without submitting again."""
    response = await emu.http.post("http://emulator/queue/local/sleep", json={"seconds": 0.1})
    body = response.json()
    handle = QueueHandle(body["request_id"], body["status_url"], body["response_url"], body["cancel_url"])
    events = Recorded()
    outcome = await emu.client.reattach(planned("local/sleep", {"seconds": 0.1}, mode="subscribe"), handle, events)
    assert outcome.ok is True and outcome.result == {"slept": 0.1}
    assert (outcome.request_id, outcome.attempts) == (handle.request_id, 1)
    assert emu.stats()["requests"]["submit"] == 1
    assert events.handles == []
    gone = QueueHandle("gone", handle.status_url.replace(handle.request_id, "gone"), handle.response_url, handle.cancel_url)
    lost = await emu.client.reattach(planned("local/sleep", mode="subscribe"), gone, Recorded())
    assert lost.error is not None
    assert (lost.error["type"], lost.error["status_code"], lost.error["detail"]) == ("http_error", 404, "Request gone not found")


# ---- inputs and secrets -------------------------------------------------------------------------


async def test_missing_env_is_an_input_error(emu: Emulator) -> None:
    """An unset env template fails that request before anything is sent."""
    outcome = await emu.client.call(planned("local/echo", {"p": "${{ env.NOT_SET_ANYWHERE }}"}), Recorded())
    assert outcome.error == {
        "type": "input_error", "status_code": None, "retryable": False,
        "detail": "environment variable NOT_SET_ANYWHERE is not set (the spec uses ${{ env.NOT_SET_ANYWHERE }})",
    }  # fmt: skip
    assert outcome.attempts == 0 and emu.recorder.seen == []


async def test_file_inputs_sent_as_data_uri(emu: Emulator, tmp_path) -> None:
    """`{"$file": path}` is sent as a data URI and described in Outcome.inputs."""
    image = tmp_path / "pic.png"
    image.write_bytes(b"\x89PNG fake")
    outcome = await emu.client.call(planned("local/echo", {"images": [{"$file": str(image)}]}), Recorded())
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    assert outcome.result == {"echo": {"images": [uri]}, "path": ""}
    digest = hashlib.sha256(b"\x89PNG fake").hexdigest()
    assert outcome.inputs == {"$.images[0]": {"path": str(image), "bytes": 9, "sha256": digest}}
    missing = await emu.client.call(planned("local/echo", {"a": {"$file": str(tmp_path / "nope.png")}}), Recorded())
    assert missing.error is not None and missing.error["type"] == "input_error"
    assert missing.error["detail"].startswith(f"$.a: cannot read input file {tmp_path / 'nope.png'}: ")


async def test_secrets_never_reach_the_outcome() -> None:
    """The key and env values echoed back in results, errors and logs are redacted."""
    def leak(arguments: dict[str, Any], log: Any) -> dict[str, Any]:
        log(f"got {arguments['secret']} and {arguments['key']}")
        return {"seen": arguments}

    app = create_app(runners=1, apps={"test/leak": leak})
    client = FalClient(run_url="http://e/run", queue_url="http://e/queue", auth=f"Key {KEY}", redactor=Redactor(),
                       transport=httpx.ASGITransport(app=app), environ=ENV)
    arguments = {"secret": "${{ env.PLANTED }}", "key": KEY}
    async with client:
        ok = await client.call(planned("test/leak", arguments, mode="subscribe", with_logs=True), Recorded())
        failed = await client.call(
            planned("local/fail", {"status": 422, "detail": [{"loc": ["body"], "msg": "bad ${{ env.PLANTED }}", "type": "x", "input": KEY}]}),
            Recorded(),
        )
    assert ok.result == {"seen": {"secret": REDACTED, "key": REDACTED}}
    assert [e["message"] for e in ok.logs or []] == [f"got {REDACTED} and {REDACTED}"]
    assert failed.error is not None
    assert failed.error["detail"] == [{"loc": ["body"], "msg": f"bad {REDACTED}", "type": "x", "input": REDACTED}]
    text = repr(ok) + repr(failed)
    for secret in (KEY, *KEY.split(":"), ENV["PLANTED"]):
        assert secret not in text


# ---- protocol breakage, flaky polls, cancellation -----------------------------------------------


def first_n(n: int, suffix: str, answer: tuple[int, str, bytes]) -> Any:
    """An override answering the first n GETs whose path ends with `suffix`."""
    left = [n]

    def override(method: str, path: str) -> tuple[int, str, bytes] | None:
        if method == "GET" and path.endswith(suffix) and left[0] > 0:
            left[0] -= 1
            return answer
        return None

    return override


async def test_flaky_status_polls_are_retried() -> None:
    """Status polls that hit an ingress 503 are retried without counting as attempts."""
    nginx = (503, "text/html", b"<html><center>nginx</center></html>")
    emulator = Emulator(no_stream=True, override=first_n(2, "/status", nginx))
    events = Recorded()
    async with emulator.client:
        outcome = await emulator.client.call(planned("local/echo", {"delay": 0.05}, mode="subscribe"), events)
    assert outcome.ok is True and outcome.attempts == 1
    assert [c[1:4] for c in events.of("retrying")] == [
        (1, 0.0, "GET status: http_error (HTTP 503)"), (2, 0.0, "GET status: http_error (HTTP 503)")
    ]


@pytest.mark.parametrize(
    ("suffix", "answer", "detail"),
    [
        pytest.param("/status/stream", (200, "text/event-stream", b'data: {"status": "FAILED"}\n\n'),
                     "unknown queue status 'FAILED'", id="unknown-status"),
        pytest.param("/status/stream", (200, "text/event-stream", b'data: ["IN_QUEUE"]\n\n'),
                     "unknown queue status ['IN_QUEUE']", id="status-not-object"),
    ],
)
async def test_unknown_status_is_invalid_response(suffix: str, answer: tuple[int, str, bytes], detail: str) -> None:
    """A status body outside IN_QUEUE/IN_PROGRESS/COMPLETED is an invalid_response."""
    emulator = Emulator(override=first_n(1, suffix, answer))
    async with emulator.client:
        outcome = await emulator.client.call(planned("local/echo", {}, mode="subscribe"), Recorded())
    assert outcome.error == {"type": "invalid_response", "status_code": None, "detail": detail, "retryable": False}
    assert outcome.request_id is not None and outcome.attempts == 1


async def test_submit_answer_without_urls_is_invalid_response() -> None:
    """A submit answer lacking the request id or URLs is an invalid_response."""
    def override(method: str, path: str) -> tuple[int, str, bytes] | None:
        return (200, "application/json", b'{"status": "IN_QUEUE"}') if method == "POST" else None

    emulator = Emulator(override=override)
    async with emulator.client:
        outcome = await emulator.client.call(planned("local/echo", {}, mode="subscribe"), Recorded())
    assert outcome.error == {
        "type": "invalid_response", "status_code": 200, "retryable": False,
        "detail": "the queue submit answer lacks request_id, status_url, response_url, cancel_url",
    }  # fmt: skip
    assert outcome.attempts == 1


async def test_outer_cancellation_propagates_and_leaves_request_running(emu: Emulator) -> None:
    """Cancelling the caller (Ctrl-C) propagates; the journaled request is not cancelled remotely."""
    events = Recorded()
    with anyio.move_on_after(0.2) as scope:
        await emu.client.call(planned("local/sleep", {"seconds": 30}, mode="subscribe"), events)
    assert scope.cancelled_caught
    [handle] = events.handles
    assert emu.stats()["cancelled"] == 0
    status = (await emu.http.get(handle.status_url)).json()
    assert status["status"] == "IN_PROGRESS"
    assert await emu.client.cancel(handle) is True


async def test_reattach_client_timeout(emu: Emulator) -> None:
    """reattach honours client_timeout and cancels what it followed."""
    response = await emu.http.post("http://emulator/queue/local/sleep", json={"seconds": 30})
    body = response.json()
    handle = QueueHandle(body["request_id"], body["status_url"], body["response_url"], body["cancel_url"])
    outcome = await emu.client.reattach(planned("local/sleep", mode="subscribe", client_timeout=0.2), handle, Recorded())
    assert outcome.error is not None and outcome.error["type"] == "client_timeout"
    assert outcome.error["detail"] == f"client_timeout of 0.2 s expired for request {handle.request_id}; cancel requested"
    assert emu.stats()["cancelled"] == 1 and emu.stats()["requests"]["submit"] == 1


async def test_missing_key_is_a_final_401() -> None:
    """A server that wants a key answers 401 to a keyless client: recorded, not retried."""
    app = create_app(runners=1, require_key=True)
    async with FalClient(run_url="http://e/run", queue_url="http://e/queue", auth=None, redactor=Redactor(),
                         transport=httpx.ASGITransport(app=app)) as client:  # fmt: skip
        outcome = await client.call(planned("local/echo", {}, mode="subscribe"), Recorded())
    assert outcome.error == {
        "type": "http_error", "status_code": 401, "retryable": False,
        "detail": "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'",
    }  # fmt: skip
    assert outcome.attempts == 1
