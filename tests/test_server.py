"""The embedded server's protocol, in-process (httpx.ASGITransport): docs/fal-protocol.md §8.6."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from batchrun.server import create_app

pytestmark = pytest.mark.anyio
BASE = "http://testserver"


def urls(app_id: str, rid: str) -> dict[str, str]:
    base = f"{BASE}/queue/{app_id}/requests/{rid}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


async def wait_completed(client: httpx.AsyncClient, app_id: str, rid: str, timeout: float = 5.0) -> httpx.Response:
    """Poll until COMPLETED; bounded so a broken server fails the test instead of hanging it."""
    async with asyncio.timeout(timeout):
        while True:
            response = await client.get(f"/queue/{app_id}/requests/{rid}/status")
            if response.status_code == 200:
                return response
            await asyncio.sleep(0.01)


@pytest.fixture
async def client(server_app: Starlette) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app), base_url=BASE) as c:
        yield c


async def test_direct_run_echo_with_sub_path(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/echo/sub/path", json={"a": 1, "b": [1, 2]})
    assert response.status_code == 200
    assert response.json() == {"echo": {"a": 1, "b": [1, 2]}, "path": "/sub/path"}
    assert uuid.UUID(response.headers["x-fal-request-id"]).version == 4
    assert response.headers["x-fal-served-from"] == "direct"


async def test_direct_run_without_sub_path_and_empty_body(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/echo")
    assert response.status_code == 200
    assert response.json() == {"echo": {}, "path": ""}


async def test_submit_response_has_all_fields(client: httpx.AsyncClient) -> None:
    response = await client.post("/queue/local/echo/x", json={"n": 1})
    assert response.status_code == 200
    body = response.json()
    rid = body["request_id"]
    assert uuid.UUID(rid).version == 4
    assert body == {"status": "IN_QUEUE", "request_id": rid, **urls("local/echo", rid), "queue_position": 0,
                    "gateway_request_id": rid}  # fmt: skip
    assert response.headers["x-fal-request-id"] == rid


async def test_status_then_result(client: httpx.AsyncClient) -> None:
    rid = (await client.post("/queue/local/echo/x", json={"n": 1})).json()["request_id"]
    done = await wait_completed(client, "local/echo", rid)
    body = done.json()
    assert body == {"status": "COMPLETED", "request_id": rid, **urls("local/echo", rid), "logs": None,
                    "metrics": {"inference_time": body["metrics"]["inference_time"]}}  # fmt: skip
    assert 0 <= body["metrics"]["inference_time"] < 1
    assert done.headers["x-fal-request-id"] == rid
    for suffix in ("", "/response"):
        for prefix in ("local/echo", "local/echo/x"):
            result = await client.get(f"/queue/{prefix}/requests/{rid}{suffix}")
            assert result.status_code == 200
            assert result.json() == {"echo": {"n": 1}, "path": "/x"}
            assert result.headers["x-fal-request-id"] == rid
            assert result.headers["x-fal-served-from"] in ("runner-0", "runner-1")


async def test_in_progress_status_has_logs_key_and_result_is_400(client: httpx.AsyncClient) -> None:
    rid = (await client.post("/queue/local/sleep", json={"seconds": 0.25})).json()["request_id"]
    await asyncio.sleep(0.12)
    plain = await client.get(f"/queue/local/sleep/requests/{rid}/status")
    assert plain.status_code == 202
    assert plain.json() == {"status": "IN_PROGRESS", "request_id": rid, **urls("local/sleep", rid), "logs": None}
    for flag in ("1", "true"):
        logged = (await client.get(f"/queue/local/sleep/requests/{rid}/status", params={"logs": flag})).json()
        assert logged["logs"][0]["message"] == "sleeping 0.25 s"
        assert set(logged["logs"][0]) == {"message", "level", "source", "timestamp"}
    early = await client.get(f"/queue/local/sleep/requests/{rid}")
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    await wait_completed(client, "local/sleep", rid)
    result = await client.get(f"/queue/local/sleep/requests/{rid}")
    assert (result.status_code, result.json()) == (200, {"slept": 0.25})


async def test_queue_positions_are_accurate_with_one_runner() -> None:
    app = create_app(runners=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        first = (await client.post("/queue/local/sleep", json={"seconds": 0.3})).json()
        rest = [(await client.post("/queue/local/echo", json={"i": i})).json() for i in range(3)]
        assert first["queue_position"] == 0
        assert [r["queue_position"] for r in rest] == [0, 1, 2]
        statuses = [(await client.get(r["status_url"])).json() for r in rest]
        assert [(s["status"], s["queue_position"]) for s in statuses] == [("IN_QUEUE", 0), ("IN_QUEUE", 1), ("IN_QUEUE", 2)]
        assert statuses[2] == {"status": "IN_QUEUE", "request_id": rest[2]["request_id"],
                               **urls("local/echo", rest[2]["request_id"]), "queue_position": 2}  # fmt: skip
        assert (await client.get("/_emulator/stats")).json()["queue_length"] == 3


async def test_low_priority_waits_behind_normal() -> None:
    app = create_app(runners=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        await client.post("/queue/local/sleep", json={"seconds": 0.2})
        low = (await client.post("/queue/local/echo", json={"p": "low"}, headers={"X-Fal-Queue-Priority": "low"})).json()
        normal = (await client.post("/queue/local/echo", json={"p": "normal"})).json()
        assert (low["queue_position"], normal["queue_position"]) == (0, 0)
        assert (await client.get(low["status_url"])).json()["queue_position"] == 1
        assert (await client.get(normal["status_url"])).json()["queue_position"] == 0


async def test_cancel_queued_in_progress_completed_and_unknown() -> None:
    app = create_app(runners=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        running = (await client.post("/queue/local/sleep", json={"seconds": 5})).json()
        queued = (await client.post("/queue/local/echo", json={})).json()
        cancel = await client.put(queued["cancel_url"])
        assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
        status = (await client.get(queued["status_url"])).json()
        assert status == {"status": "COMPLETED", "request_id": queued["request_id"], **urls("local/echo", queued["request_id"]),
                          "logs": None, "metrics": {}, "error": "Request cancelled by the client",
                          "error_type": "client_cancelled"}  # fmt: skip
        result = await client.get(queued["response_url"])
        assert result.status_code == 499
        assert result.json() == {"detail": "Request cancelled by the client", "error_type": "client_cancelled"}
        assert result.headers["x-fal-error-type"] == "client_cancelled"
        await asyncio.sleep(0.05)
        cancel = await client.put(running["cancel_url"])
        assert (cancel.status_code, cancel.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
        done = await wait_completed(client, "local/sleep", running["request_id"])
        assert done.json()["error_type"] == "client_cancelled"
        assert (await client.get(running["response_url"])).status_code == 499
        again = await client.put(running["cancel_url"])
        assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
        missing = await client.put(f"/queue/local/echo/requests/{uuid.uuid4()}/cancel")
        assert (missing.status_code, missing.json()) == (404, {"status": "NOT_FOUND"})
        stats = (await client.get("/_emulator/stats")).json()
        assert (stats["cancelled"], stats["runners_busy"], stats["queue_length"]) == (2, 0, 0)


async def test_unknown_request_and_wrong_app(client: httpx.AsyncClient) -> None:
    rid = (await client.post("/queue/local/echo", json={})).json()["request_id"]
    other = await client.get(f"/queue/local/sleep/requests/{rid}/status")
    assert (other.status_code, other.json()) == (404, {"detail": f"Request {rid} not found"})


async def test_namespaced_ids(client: httpx.AsyncClient) -> None:
    missing = await client.post("/run/workflows/local/echo", json={})
    assert (missing.status_code, missing.json()) == (404, {"detail": "Application 'workflows/local/echo' not found"})


async def test_user_app_in_namespace() -> None:
    app = create_app(apps={"workflows/me/flow": lambda args: {"got": args}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        submitted = (await client.post("/queue/workflows/me/flow/step", json={"a": 1})).json()
        rid = submitted["request_id"]
        assert submitted["status_url"] == f"{BASE}/queue/workflows/me/flow/requests/{rid}/status"
        await wait_completed(client, "workflows/me/flow", rid)
        assert (await client.get(submitted["response_url"])).json() == {"got": {"a": 1}}
