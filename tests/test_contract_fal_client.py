"""Contract tests: the official, unmodified `fal-client` against the embedded server.

fal-client only speaks https and reads FAL_RUN_HOST / FAL_QUEUE_RUN_HOST when it is imported, so
the server serves TLS with a throwaway CA (trustme) and one subprocess, started with those
variables and SSL_CERT_FILE pointing at the CA, runs every case and prints the outcomes as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import trustme

from batchrun.server import ServerThread

PRELUDE = r'''
import json, os, struct, sys, threading, time, traceback, zlib
import httpx
import fal_client

out = {}

def case(func):
    try:
        out[func.__name__] = func()
    except Exception as exc:
        out[func.__name__] = {"unexpected": traceback.format_exc()}
    return func

def http_error(call):
    try:
        call()
    except fal_client.FalClientHTTPError as exc:
        return {"status": exc.status_code, "message": exc.message, "error_type": exc.error_type,
                "timeout_type": exc.response_headers.get("x-fal-request-timeout-type"),
                "request_id": exc.response_headers.get("x-fal-request-id")}
    return {"status": None}

def wait_for(handle, kind):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if isinstance(handle.status(), kind):
            return
        time.sleep(0.02)
    raise AssertionError(f"never reached {kind.__name__}")

def server_stats():
    return httpx.get("https://" + os.environ["FAL_RUN_HOST"][: -len("/run")] + "/_emulator/stats").json()
'''

CASES = r'''
@case
def run():
    return fal_client.run("local/echo", {"a": 1}, path="/sub/path")

@case
def subscribe_with_logs():
    enqueued, updates = [], []
    result = fal_client.subscribe("local/sleep", {"seconds": 0.35}, with_logs=True,
                                  on_enqueue=enqueued.append, on_queue_update=updates.append)
    logs = []
    for update in updates:
        for line in (getattr(update, "logs", None) or []):
            if line["message"] not in logs:
                logs.append(line["message"])
    return {"result": result, "enqueued": enqueued, "kinds": sorted({type(u).__name__ for u in updates}),
            "logs": logs}

@case
def queue_positions():
    first = fal_client.submit("local/sleep", {"seconds": 0.6})
    second = fal_client.submit("local/sleep", {"seconds": 0.4})
    positions = []
    def on_update(status):
        if isinstance(status, fal_client.Queued) and (not positions or positions[-1] != status.position):
            positions.append(status.position)
    result = fal_client.subscribe("local/echo", {"third": True}, on_queue_update=on_update)
    return {"positions": positions, "result": result, "first": first.get(), "second": second.get()}

@case
def cancel():
    handle = fal_client.submit("local/sleep", {"seconds": 5})
    wait_for(handle, fal_client.InProgress)
    handle.cancel()
    wait_for(handle, fal_client.Completed)
    return {"result": http_error(handle.get), "again": http_error(handle.cancel)}

@case
def start_timeout():
    blocker = fal_client.submit("local/sleep", {"seconds": 6})
    wait_for(blocker, fal_client.InProgress)
    began = time.monotonic()
    outcome = http_error(lambda: fal_client.subscribe("local/echo", {}, start_timeout=1.2))
    outcome["elapsed"] = time.monotonic() - began
    blocker.cancel()
    return outcome

@case
def model_error_422():
    direct = http_error(lambda: fal_client.run("local/fail", {"status": 422}))
    queued = http_error(lambda: fal_client.subscribe("local/fail", {"status": 422}))
    return {"run": direct, "subscribe": queued}

@case
def platform_error_500():
    return http_error(lambda: fal_client.run("local/fail", {"error_type": "runner_server_error"}))

@case
def ingress_retry():
    # 503 without x-fal-request-id and an nginx body: fal-client retries, the second attempt succeeds.
    return fal_client.run("local/fail", {"status": 503, "ingress": True, "times": 1, "key": "contract"})

@case
def image():
    result = fal_client.subscribe("local/image", {"prompt": "a lighthouse", "image_size": "square", "seed": 3})
    png = httpx.get(result["images"][0]["url"]).content
    width, height = struct.unpack(">II", png[16:24])
    return {"result": result, "signature": png[:8].hex(), "ihdr": png[12:16].decode(), "size": [width, height]}

@case
def status_and_result_by_id():
    handle = fal_client.submit("local/echo", {"k": "v"}, path="/deep")
    for _ in range(200):
        if isinstance(fal_client.status("local/echo", handle.request_id, with_logs=True), fal_client.Completed):
            break
        time.sleep(0.02)
    return fal_client.result("local/echo", handle.request_id)
'''

# Against a server with a concurrency limit of 1 per key and 2 runners.
LIMITED_CASES = r'''
@case
def run_over_the_limit_is_retried():
    # Two direct runs at once: the second gets 429 + X-Fal-Needs-Retry, which fal-client retries.
    results = [None, None]
    def call(index):
        results[index] = fal_client.run("local/sleep", {"seconds": 0.3})
    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"results": results, "concurrency": server_stats()["concurrency"]}

@case
def queued_request_waits_for_the_limit():
    blocker = fal_client.submit("local/sleep", {"seconds": 0.5})
    wait_for(blocker, fal_client.InProgress)
    positions = []
    def on_update(status):
        if isinstance(status, fal_client.Queued) and (not positions or positions[-1] != status.position):
            positions.append(status.position)
    result = fal_client.subscribe("local/echo", {"after": "blocker"}, on_queue_update=on_update)
    return {"positions": positions, "result": result, "blocker": blocker.get()}

@case
def retry_config_header():
    before = server_stats()["attempts"]
    outcome = http_error(lambda: fal_client.subscribe("local/fail", {"error_type": "runner_disconnected"},
                                                      headers={"X-Fal-Retry-Config": '{"server_error": {"retries": 1}}'}))
    outcome["attempts"] = server_stats()["attempts"] - before
    return outcome
'''

EPILOGUE = """
print(json.dumps(out))
"""


def run_cases(tmp_path_factory: pytest.TempPathFactory, cases: str, **server_options: Any) -> dict[str, Any]:
    """Run every case once, in one fal-client subprocess, against one TLS server; {case: outcome}."""
    folder = tmp_path_factory.mktemp("fal_contract")
    ca = trustme.CA()
    ca_file, cert_file = folder / "ca.pem", folder / "server.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    script = folder / "cases.py"
    script.write_text(PRELUDE + cases + EPILOGUE)
    with ServerThread(ssl_certfile=str(cert_file), ssl_keyfile=str(cert_file), **server_options) as server:
        host = f"127.0.0.1:{server.port}"
        env = {**os.environ, "FAL_RUN_HOST": host + "/run", "FAL_QUEUE_RUN_HOST": host + "/queue",
               "FAL_KEY": "dummy-id:dummy-secret", "SSL_CERT_FILE": str(ca_file)}  # fmt: skip
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=100,
                              cwd=Path(folder))  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The main cases against a server with one runner."""
    return run_cases(tmp_path_factory, CASES, runners=1)


@pytest.fixture(scope="module")
def limited_outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The concurrency-limit and retry-config cases: at most 1 request per key in progress, 2 runners."""
    return run_cases(tmp_path_factory, LIMITED_CASES, runners=2, max_concurrency=1, retry_backoff=0.01)


def test_run(outcomes: dict[str, Any]) -> None:
    assert outcomes["run"] == {"echo": {"a": 1}, "path": "/sub/path"}


def test_subscribe_with_logs_and_callbacks(outcomes: dict[str, Any]) -> None:
    got = outcomes["subscribe_with_logs"]
    assert got["result"] == {"slept": 0.35}
    assert len(got["enqueued"]) == 1 and uuid.UUID(got["enqueued"][0])
    assert "InProgress" in got["kinds"] and "Completed" in got["kinds"]
    assert got["logs"][:2] == ["sleeping 0.35 s", "slept 0.1 of 0.35 s"]


def test_queue_positions_with_one_runner(outcomes: dict[str, Any]) -> None:
    got = outcomes["queue_positions"]
    assert got["positions"] == [1, 0]
    assert (got["result"], got["first"], got["second"]) == ({"echo": {"third": True}, "path": ""}, {"slept": 0.6}, {"slept": 0.4})


def test_cancel(outcomes: dict[str, Any]) -> None:
    got = outcomes["cancel"]
    assert got["result"]["status"] == 499
    assert (got["result"]["error_type"], got["result"]["message"]) == ("client_cancelled", "Request cancelled by the client")
    assert (got["again"]["status"], json.loads(got["again"]["message"])) == (400, {"status": "ALREADY_COMPLETED"})


def test_start_timeout_is_504_user(outcomes: dict[str, Any]) -> None:
    got = outcomes["start_timeout"]
    assert "unexpected" not in got, got.get("unexpected")
    assert (got["status"], got["timeout_type"], got["error_type"]) == (504, "user", "startup_timeout")
    assert 1.2 <= got["elapsed"] < 5.5  # fal-client does not retry a user start-timeout


def test_422_model_errors(outcomes: dict[str, Any]) -> None:
    detail = [{"loc": ["body", "num_images"], "msg": "Input should be less than or equal to 4", "type": "less_than_equal",
               "url": "https://docs.fal.ai/errors/#less_than_equal", "ctx": {"le": 4}, "input": 5}]  # fmt: skip
    for mode in ("run", "subscribe"):
        got = outcomes["model_error_422"][mode]
        assert (got["status"], got["message"], got["error_type"]) == (422, detail, None)
        assert got["request_id"]


def test_platform_error_is_not_retried_by_the_client(outcomes: dict[str, Any]) -> None:
    got = outcomes["platform_error_500"]
    assert (got["status"], got["error_type"], got["message"]) == (500, "runner_server_error", "injected runner_server_error")


def test_ingress_error_is_retried_by_the_client(outcomes: dict[str, Any]) -> None:
    assert outcomes["ingress_retry"] == {"echo": {"status": 503, "ingress": True, "times": 1, "key": "contract"}, "path": ""}


def test_image_result_is_downloadable_png(outcomes: dict[str, Any]) -> None:
    got = outcomes["image"]
    assert (got["signature"], got["ihdr"], got["size"]) == ("89504e470d0a1a0a", "IHDR", [512, 512])
    image = got["result"]["images"][0]
    assert (image["width"], image["height"], image["content_type"]) == (512, 512, "image/png")
    assert image["url"].startswith("https://127.0.0.1:")
    assert (got["result"]["seed"], got["result"]["prompt"], got["result"]["has_nsfw_concepts"]) == (3, "a lighthouse", [False])


def test_status_and_result_rebuilt_from_the_id(outcomes: dict[str, Any]) -> None:
    assert outcomes["status_and_result_by_id"] == {"echo": {"k": "v"}, "path": "/deep"}


def test_run_over_the_concurrency_limit_is_429_that_fal_client_retries(limited_outcomes: dict[str, Any]) -> None:
    got = limited_outcomes["run_over_the_limit_is_retried"]
    assert got["results"] == [{"slept": 0.3}, {"slept": 0.3}]
    assert got["concurrency"]["refused"] >= 1
    assert (got["concurrency"]["limit"], got["concurrency"]["peak"], got["concurrency"]["in_progress"]) == (1, 1, 0)


def test_queued_request_waits_for_the_concurrency_limit(limited_outcomes: dict[str, Any]) -> None:
    got = limited_outcomes["queued_request_waits_for_the_limit"]
    assert got["positions"] == [0]  # a runner was free: only the key's limit held it in the queue
    assert (got["result"], got["blocker"]) == ({"echo": {"after": "blocker"}, "path": ""}, {"slept": 0.5})


def test_retry_config_sent_through_fal_client_headers(limited_outcomes: dict[str, Any]) -> None:
    got = limited_outcomes["retry_config_header"]
    assert (got["status"], got["error_type"], got["attempts"]) == (503, "runner_disconnected", 2)
