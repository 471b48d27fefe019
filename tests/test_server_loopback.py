"""The server over real loopback sockets: SSE status streams, connection resets, serve_local, and
the `batchrun serve` command as a subprocess."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchrun.cli import main
from batchrun.server import ServerThread, serve_local

ServerFactory = Callable[..., AbstractContextManager[ServerThread]]


def read_stream(url: str, *, logs: bool = False, timeout: float = 10.0) -> list[bytes]:
    """Every SSE line (data and comments, without blank separators) until the server closes."""
    lines = []
    params = {"logs": "1"} if logs else {}
    with httpx.stream("GET", url + "/stream", params=params, timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line:
                lines.append(line.encode())
    return lines


def events(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line[len(b"data: ") :]) for line in lines if line.startswith(b"data: ")]


def test_stream_reports_each_change_and_closes(make_server: ServerFactory) -> None:
    with make_server(runners=1) as server:
        blocker = httpx.post(server.queue_url + "/local/fail", json={"hang": True}).json()
        submitted = httpx.post(server.queue_url + "/local/sleep", json={"seconds": 0.35}).json()
        lines: list[bytes] = []
        with httpx.stream("GET", submitted["status_url"] + "/stream", params={"logs": "1"}, timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line:
                    lines.append(line.encode())
                if len(lines) == 1:
                    httpx.put(blocker["cancel_url"])  # the stream is open: let the request start
        seen = events(lines)
    assert seen[0] == {"status": "IN_QUEUE", "request_id": submitted["request_id"], "response_url": submitted["response_url"],
                       "status_url": submitted["status_url"], "cancel_url": submitted["cancel_url"], "queue_position": 0}  # fmt: skip
    assert [e["status"] for e in seen].count("COMPLETED") == 1 and seen[-1]["status"] == "COMPLETED"
    log_counts = [len(e["logs"]) for e in seen if e["status"] == "IN_PROGRESS"]
    assert log_counts and log_counts == sorted(log_counts)  # new log lines arrive as events
    assert [line["message"] for line in seen[-1]["logs"]][:2] == ["sleeping 0.35 s", "slept 0.1 of 0.35 s"]
    assert seen[-1]["metrics"]["inference_time"] >= 0.35


def test_stream_without_logs_has_null_logs(loopback_server: ServerThread) -> None:
    submitted = httpx.post(loopback_server.queue_url + "/local/sleep", json={"seconds": 0.25}).json()
    seen = events(read_stream(submitted["status_url"]))
    assert {e["status"] for e in seen} <= {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert all(e["logs"] is None for e in seen if e["status"] != "IN_QUEUE")


def stream_events(url: str, react: Callable[[int, dict[str, Any]], None], timeout: float = 10.0) -> list[bytes]:
    """Read a status stream, calling react(index, event) after each data event, until it closes."""
    lines, seen = [], 0
    with httpx.stream("GET", url + "/stream", timeout=timeout) as response:
        for line in response.iter_lines():
            if not line:
                continue
            lines.append(line.encode())
            if line.startswith("data: "):
                react(seen, json.loads(line[len("data: ") :]))
                seen += 1
    return lines


def test_stream_shows_queue_positions_and_keepalives(make_server: ServerFactory) -> None:
    with make_server(runners=1, keepalive=0.05) as server:
        # Two blockers that hang until cancelled make every step deterministic, even on a busy machine.
        blockers = [httpx.post(server.queue_url + "/local/fail", json={"hang": True, "n": i}).json() for i in range(2)]
        third = httpx.post(server.queue_url + "/local/echo", json={}).json()
        assert third["queue_position"] == 1

        def react(index: int, event: dict[str, Any]) -> None:
            if event["status"] == "IN_QUEUE" and index < 2:
                time.sleep(0.2)  # idle long enough for keep-alive comments
                assert httpx.put(blockers[index]["cancel_url"]).status_code == 202

        lines = stream_events(third["status_url"], react)
        assert b": keepalive" in lines
        seen = events(lines)
        assert [(e["status"], e.get("queue_position")) for e in seen][:2] == [("IN_QUEUE", 1), ("IN_QUEUE", 0)]
        assert seen[-1]["status"] == "COMPLETED"


def test_stream_shows_retry_going_back_to_in_queue(make_server: ServerFactory) -> None:
    with make_server(runners=1, retry_backoff=0.3) as server:
        blocker = httpx.post(server.queue_url + "/local/fail", json={"hang": True}).json()
        args = {"times": 1, "key": "sse", "error_type": "runner_disconnected", "delay": 0.3}
        submitted = httpx.post(server.queue_url + "/local/fail", json=args).json()

        def react(index: int, event: dict[str, Any]) -> None:
            if index == 0:
                assert httpx.put(blocker["cancel_url"]).status_code == 202

        statuses = [e["status"] for e in events(stream_events(submitted["status_url"], react))]
        assert statuses == ["IN_QUEUE", "IN_PROGRESS", "IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
        assert httpx.get(submitted["response_url"]).status_code == 200


def test_stream_of_completed_request_sends_one_event(loopback_server: ServerThread) -> None:
    submitted = httpx.post(loopback_server.queue_url + "/local/echo", json={}).json()
    with httpx.Client() as client:
        for _ in range(100):
            if client.get(submitted["status_url"]).status_code == 200:
                break
    seen = events(read_stream(submitted["status_url"]))
    assert [e["status"] for e in seen] == ["COMPLETED"]


def test_reset_drops_the_connection(loopback_server: ServerThread) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(loopback_server.run_url + "/local/fail", json={"reset": True})
    assert httpx.post(loopback_server.run_url + "/local/echo", json={}).status_code == 200


def test_hang_is_bounded_by_the_client_timeout(loopback_server: ServerThread) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(loopback_server.run_url + "/local/fail", json={"hang": True}, timeout=0.2)


def test_stats_over_http(make_server: ServerFactory) -> None:
    with make_server() as server:
        httpx.post(server.run_url + "/local/echo", json={})
        stats = httpx.get(server.origin + "/_emulator/stats").json()
        assert stats["requests"] == {"run": 1, "submit": 0, "status": 0, "stream": 0, "result": 0, "cancel": 0, "files": 0}
        assert (stats["runners"], stats["runners_busy"], stats["queue_length"]) == (2, 0, 0)


@pytest.mark.anyio
async def test_serve_local_in_the_running_loop() -> None:
    async with serve_local(runners=1) as server:
        assert server.run_url == server.origin + "/run"
        async with httpx.AsyncClient() as client:
            response = await client.post(server.run_url + "/local/echo/p", json={"x": 1})
            assert response.json() == {"echo": {"x": 1}, "path": "/p"}
            submitted = (await client.post(server.queue_url + "/local/echo", json={})).json()
            assert submitted["status_url"].startswith(server.origin + "/queue/local/echo/requests/")
    with pytest.raises(httpx.ConnectError):
        httpx.post(server.run_url + "/local/echo", json={})


@contextlib.contextmanager
def _serving(args: list[str], cwd: Path | None = None, scheme: str = "http") -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`batchrun serve` in a subprocess: (process, run_url, queue_url); killed if still running at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "batchrun", "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    try:
        assert proc.stdout is not None
        run_line, queue_line = proc.stdout.readline(), proc.stdout.readline()
        assert run_line.startswith(f"run_url: {scheme}://127.0.0.1:"), run_line + (proc.stderr.read() if proc.poll() else "")
        assert queue_line.startswith(f"queue_url: {scheme}://127.0.0.1:")
        yield proc, run_line.split(": ", 1)[1].strip(), queue_line.split(": ", 1)[1].strip()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    """Signal the server and wait for it: (exit status, stdout, stderr)."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


def test_serve_command_prints_urls_answers_and_stops_on_sigint() -> None:
    with _serving(["--runners", "1"]) as (proc, run_url, queue_url):
        assert run_url.endswith("/run") and queue_url == run_url[: -len("/run")] + "/queue"
        assert httpx.post(run_url + "/local/echo", json={"a": 1}, timeout=5).json() == {"echo": {"a": 1}, "path": ""}
        assert httpx.post(queue_url + "/local/echo", json={}, timeout=5).json()["status"] == "IN_QUEUE"
        assert _stop(proc) == (130, "", "")  # Ctrl-C is the shell's 130 (test_serve_exit_code_says_how_it_stopped)


def test_serve_command_with_a_user_app_and_require_key(tmp_path: Path) -> None:
    (tmp_path / "myapp.py").write_text(textwrap.dedent("""
        def predict(arguments, log):
            log("predicting")
            return {"label": arguments["text"].upper()}
    """))
    with _serving(["--app", "me/upper=myapp:predict", "--require-key"], cwd=tmp_path) as (proc, run_url, _):
        assert httpx.post(run_url + "/me/upper", json={"text": "hi"}, timeout=5).status_code == 401
        answer = httpx.post(run_url + "/me/upper", json={"text": "hi"}, headers={"Authorization": "Key secret-123"}, timeout=5)
        assert answer.json() == {"label": "HI"}
        code, out, err = _stop(proc, signal.SIGTERM)
        assert code == 0
        assert "secret-123" not in out + err


def test_serve_command_with_a_concurrency_limit() -> None:
    with _serving(["--max-concurrency", "3"]) as (proc, run_url, _):
        key = {"Authorization": "Key the-key"}
        with httpx.Client(timeout=5, headers=key) as client, concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = sorted(pool.map(lambda _: client.post(run_url + "/local/sleep", json={"seconds": 1.0}).status_code, range(4)))
            stats = client.get(run_url[: -len("/run")] + "/_emulator/stats").json()
        assert codes == [200, 200, 200, 429]
        assert (stats["runners"], stats["concurrency"]) == (3, {"limit": 3, "in_progress": 0, "peak": 3, "refused": 1})
        assert _stop(proc, signal.SIGTERM)[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--app", "bad"], "expected owner/alias=module:function"), (["--app", "a/b=no_such_module_xyz:f"], "cannot import"),
     (["--runners", "0"], "--runners must be at least 1"), (["--tls-cert", "x.pem"], "--tls-cert and --tls-key go together"),
     (["--max-concurrency", "0"], "--max-concurrency must be at least 1")],
)  # fmt: skip
def test_serve_command_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_serve_command_with_tls(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert = str(tmp_path / "server.pem")
    with _serving(["--tls-cert", cert, "--tls-key", cert], scheme="https") as (proc, run_url, queue_url):
        context = ssl.create_default_context()
        ca.configure_trust(context)
        assert httpx.post(run_url + "/local/echo", json={}, verify=context, timeout=5).json() == {"echo": {}, "path": ""}
        submitted = httpx.post(queue_url + "/local/echo", json={}, verify=context, timeout=5).json()
        assert submitted["status_url"].startswith(queue_url + "/local/echo/requests/")
        assert _stop(proc, signal.SIGTERM)[0] == 0


def test_webhook_receives_the_outcome(make_server: ServerFactory) -> None:
    received: list[dict[str, Any]] = []

    def hook(arguments: dict[str, Any]) -> dict[str, Any]:
        received.append(arguments)
        return {}

    with make_server(apps={"me/hook": hook}) as server:
        hook_url = server.run_url + "/me/hook"
        ok = httpx.post(server.queue_url + "/local/echo", params={"fal_webhook": hook_url}, json={"a": 1}).json()
        bad = httpx.post(server.queue_url + "/local/fail", params={"fal_webhook": hook_url}, json={"status": 422}).json()
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    by_id = {r["request_id"]: r for r in received}
    assert by_id[ok["request_id"]] == {"request_id": ok["request_id"], "gateway_request_id": ok["request_id"],
                                       "status": "OK", "payload": {"echo": {"a": 1}, "path": ""}}  # fmt: skip
    assert by_id[bad["request_id"]]["status"] == "ERROR"
    assert by_id[bad["request_id"]]["error"] == "Invalid status code: 422"
    assert by_id[bad["request_id"]]["payload"]["detail"][0]["type"] == "less_than_equal"


def test_stop_ends_hung_runs_and_open_streams_at_once(make_server: ServerFactory) -> None:
    import threading

    outcomes: dict[str, Any] = {}
    server = make_server(runners=1)
    with server:
        submitted = httpx.post(server.queue_url + "/local/fail", json={"hang": True}).json()

        def run() -> None:
            outcomes["run"] = httpx.post(server.run_url + "/local/fail", json={"hang": True}, timeout=20).json()

        def stream() -> None:
            outcomes["stream"] = [e["status"] for e in events(read_stream(submitted["status_url"], timeout=20))]

        threads = [threading.Thread(target=run), threading.Thread(target=stream)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
    elapsed = time.monotonic() - started
    for thread in threads:
        thread.join(10)
    assert elapsed < 0.9  # well under uvicorn's graceful-shutdown timeout (1 s)
    assert outcomes == {"run": {"detail": "the server is shutting down", "error_type": "runner_disconnected"},
                        "stream": ["IN_PROGRESS"]}  # fmt: skip
