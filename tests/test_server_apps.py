"""Built-in apps (fail, image, sleep), user apps, auth and bad requests, in-process."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fixtures_server import queue_attempts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from batchrun.server import create_app

pytestmark = pytest.mark.anyio
BASE = "http://testserver"


@pytest.fixture
async def client(server_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app), base_url=BASE) as c:
        yield c


def png_info(data: bytes) -> tuple[int, int, bytes]:
    """(width, height, decompressed pixel rows) of an 8-bit RGB PNG, checking every chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        assert struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])[0] == zlib.crc32(kind + body)
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + size
    width, height = struct.unpack(">II", header[:8])
    return width, height, zlib.decompress(idat)


async def test_ingress_503_has_nginx_html_and_no_request_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/fail", json={"status": 503, "ingress": True})
    assert response.status_code == 503
    assert "x-fal-request-id" not in response.headers
    assert response.headers["content-type"] == "text/html"
    assert "<center>nginx</center>" in response.text


async def test_ingress_fault_hits_the_queue_submit(client: httpx.AsyncClient) -> None:
    args = {"status": 502, "ingress": True, "times": 1, "key": "in"}
    first = await client.post("/queue/local/fail", json=args)
    assert (first.status_code, "x-fal-request-id" in first.headers) == (502, False)
    second = await client.post("/queue/local/fail", json=args)
    assert second.status_code == 200
    assert (await client.get("/_emulator/stats")).json()["duplicate_submits"] == 0


async def test_platform_error_has_request_id_and_error_type(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/fail", json={"error_type": "runner_server_error"})
    assert response.status_code == 500
    assert response.json() == {"detail": "injected runner_server_error", "error_type": "runner_server_error"}
    assert response.headers["x-fal-error-type"] == "runner_server_error"
    assert "x-fal-request-id" in response.headers
    other = await client.post("/run/local/fail", json={"error_type": "runner_scheduling_failure"})
    assert other.status_code == 503


async def test_429_concurrency_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/fail", json={"status": 429, "retry_after": 2})
    assert response.status_code == 429
    assert response.json() == {"detail": "Concurrent requests limit exceeded", "error_type": "concurrent_requests_limit"}
    assert (response.headers["x-fal-needs-retry"], response.headers["retry-after"]) == ("1", "2")
    plain = await client.post("/run/local/fail", json={"status": 429})
    assert "retry-after" not in plain.headers


async def test_422_model_error_detail_list(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/fail", json={"status": 422})
    assert response.status_code == 422
    assert response.json() == {"detail": [{"loc": ["body", "num_images"], "msg": "Input should be less than or equal to 4",
                                           "type": "less_than_equal", "url": "https://docs.fal.ai/errors/#less_than_equal",
                                           "ctx": {"le": 4}, "input": 5}]}  # fmt: skip
    own = [{"loc": ["body", "prompt"], "msg": "flagged", "type": "content_policy_violation"}]
    assert (await client.post("/run/local/fail", json={"status": 422, "detail": own})).json() == {"detail": own}


async def test_times_and_key_fail_only_the_first_attempts(client: httpx.AsyncClient) -> None:
    args: dict[str, Any] = {"times": 2, "key": "k1", "status": 503}
    codes = [(await client.post("/run/local/fail", json=args)).status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    assert (await client.post("/run/local/fail", json={**args, "key": "k2"})).status_code == 503
    await client.post("/_emulator/reset")  # also forgets the per-key counters
    assert (await client.post("/run/local/fail", json=args)).status_code == 503


async def test_bad_json_not_object_and_generic_status(client: httpx.AsyncClient) -> None:
    bad = await client.post("/run/local/fail", json={"bad_json": True})
    assert (bad.status_code, bad.content) == (200, b"<html>this is not JSON")
    listed = await client.post("/run/local/fail", json={"not_object": True})
    assert (listed.status_code, listed.json()) == (200, ["not", "an", "object"])
    teapot = await client.post("/run/local/fail", json={"status": 418})
    assert (teapot.status_code, teapot.json()) == (418, {"detail": "injected failure: HTTP 418"})
    default = await client.post("/run/local/fail", json={})
    assert (default.status_code, default.json()["error_type"]) == (500, "runner_server_error")


async def test_reset_in_process_raises(client: httpx.AsyncClient) -> None:
    with pytest.raises(Exception, match="connection dropped on purpose"):
        await client.post("/run/local/fail", json={"reset": True})


async def test_bad_requests_are_fal_shaped(client: httpx.AsyncClient) -> None:
    malformed = await client.post("/run/local/echo", content=b"{nope", headers={"content-type": "application/json"})
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    assert malformed.json()["detail"][0]["loc"] == ["body"]
    listed = await client.post("/queue/local/echo", json=[1, 2])
    assert listed.status_code == 422
    assert listed.json() == {"detail": [{"loc": ["body"], "msg": "Input should be a valid dictionary (a JSON object)",
                                         "type": "dict_type", "url": "https://docs.fal.ai/errors/#dict_type",
                                         "input": [1, 2]}]}  # fmt: skip
    unknown = await client.post("/queue/nobody/nothing", json={})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Application 'nobody/nothing' not found"})
    short = await client.post("/run/justone", json={})
    assert short.status_code == 404
    elsewhere = await client.get("/nowhere")
    assert (elsewhere.status_code, elsewhere.json()) == (404, {"detail": "Not Found"})
    wrong_method = await client.delete("/queue/local/echo/requests/abc/status")
    assert wrong_method.status_code == 405
    assert (await client.get("/_emulator/stats")).json()["bad_requests"] == 2


async def test_oversized_body_is_413() -> None:
    app = create_app(max_body=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        response = await client.post("/run/local/echo", json={"blob": "x" * 200})
        assert response.status_code == 413
        assert response.json() == {"detail": "Request body too large: the limit is 100 bytes", "error_type": "bad_request"}
        assert (await client.post("/run/local/echo", json={"small": 1})).status_code == 200


async def test_require_key() -> None:
    app = create_app(require_key=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        for headers in ({}, {"Authorization": "Key "}, {"Authorization": "Basic abc"}):
            response = await client.post("/run/local/echo", json={}, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"detail": "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'"}
        assert (await client.post("/queue/local/echo", json={})).status_code == 401
        ok = await client.post("/queue/local/echo", json={}, headers={"Authorization": "Key id:secret"})
        assert ok.status_code == 200
        assert (await client.get(ok.json()["status_url"])).status_code == 401
        assert (await client.get(ok.json()["status_url"], headers={"Authorization": "Key s"})).status_code in (200, 202)
        assert app.state.stats()["auth_failures"] == 5


async def test_any_key_accepted_by_default(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/echo", json={}, headers={"Authorization": "Key whatever"})
    assert response.status_code == 200


async def test_image_result_shape_and_png(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/image", json={"prompt": "a red fox", "seed": 7, "image_size": "portrait_16_9",
                                                           "num_images": 2})  # fmt: skip
    body = response.json()
    assert body["timings"]["inference"] >= 0
    assert body == {
        "images": [{"url": f"{BASE}/files/images/{body['images'][0]['url'].split('/')[5]}/7/{i}/576x1024.png",
                    "width": 576, "height": 1024, "content_type": "image/png"} for i in range(2)],
        "seed": 7, "prompt": "a red fox", "timings": body["timings"], "has_nsfw_concepts": [False, False],
    }  # fmt: skip
    first = await client.get(body["images"][0]["url"])
    assert first.headers["content-type"] == "image/png"
    width, height, pixels = png_info(first.content)
    assert (width, height, len(pixels)) == (576, 1024, 1024 * (1 + 576 * 3))
    assert len(set(pixels[1 : 1 + 576 * 3])) > 20  # a picture, not a blank
    second = await client.get(body["images"][1]["url"])
    assert second.content != first.content
    again = (await client.post("/run/local/image", json={"prompt": "a red fox", "seed": 7, "image_size": "portrait_16_9"})).json()
    assert (await client.get(again["images"][0]["url"])).content == first.content


@pytest.mark.parametrize(
    ("size", "expected"),
    [("square_hd", (1024, 1024)), ("square", (512, 512)), ("portrait_4_3", (768, 1024)), ("landscape_4_3", (1024, 768)),
     ("landscape_16_9", (1024, 576)), ({"width": 320, "height": 200}, (320, 200))],
)  # fmt: skip
async def test_image_sizes(client: httpx.AsyncClient, size: Any, expected: tuple[int, int]) -> None:
    image = (await client.post("/run/local/image", json={"prompt": "p", "image_size": size})).json()["images"][0]
    assert (image["width"], image["height"]) == expected
    assert png_info((await client.get(image["url"])).content)[:2] == expected


async def test_image_validation_errors(client: httpx.AsyncClient) -> None:
    missing = await client.post("/run/local/image", json={})
    assert missing.json() == {"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing",
                                          "url": "https://docs.fal.ai/errors/#missing", "input": None}]}  # fmt: skip
    bad_size = await client.post("/run/local/image", json={"prompt": "p", "image_size": "huge"})
    assert (bad_size.status_code, bad_size.json()["detail"][0]["type"]) == (422, "one_of")
    too_many = await client.post("/run/local/image", json={"prompt": "p", "num_images": 5})
    assert too_many.json()["detail"][0]["ctx"] == {"le": 4, "ge": 1}
    assert (await client.get("/files/images/nothing.png")).status_code == 404


async def test_image_reencode_is_the_same_picture_in_other_bytes(client: httpx.AsyncClient) -> None:
    """`reencode: N` serves the seed's picture with every value lifted by N levels (capped at 255)
    and another zlib level: other bytes, same geometry, so a perceptual hash still matches."""
    args = {"prompt": "a red fox", "seed": 7, "image_size": {"width": 64, "height": 48}}
    plain = (await client.post("/run/local/image", json=args)).json()["images"][0]
    lifted = (await client.post("/run/local/image", json={**args, "reencode": 3})).json()["images"][0]
    assert lifted["url"].endswith("/7/0/64x48~3.png") and plain["url"].endswith("/7/0/64x48.png")
    a, b = (await client.get(plain["url"])).content, (await client.get(lifted["url"])).content
    assert a != b
    (wa, ha, rows_a), (wb, hb, rows_b) = png_info(a), png_info(b)
    assert (wa, ha) == (wb, hb) == (64, 48)
    assert [min(255, v + 3) if i % (64 * 3 + 1) else v for i, v in enumerate(rows_a)] == list(rows_b)
    bad = await client.post("/run/local/image", json={**args, "reencode": 17})
    assert (bad.status_code, bad.json()["detail"][0]["loc"]) == (422, ["body", "reencode"])
    assert (await client.get(plain["url"].replace(".png", "~0.png"))).status_code == 404


async def test_default_seed_is_deterministic(client: httpx.AsyncClient) -> None:
    first = (await client.post("/run/local/image", json={"prompt": "same"})).json()
    second = (await client.post("/run/local/image", json={"prompt": "same"})).json()
    assert first["seed"] == second["seed"]
    assert first["images"] == second["images"]


async def test_sleep_validates_seconds(client: httpx.AsyncClient) -> None:
    response = await client.post("/run/local/sleep", json={"seconds": -1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "seconds"]
    assert (await client.post("/run/local/sleep", json={"seconds": 0})).json() == {"slept": 0}


def sync_app(arguments: dict[str, Any], log: Any) -> dict[str, Any]:
    log("working")
    return {"doubled": arguments["n"] * 2}


async def async_app(arguments: dict[str, Any], path: str) -> dict[str, Any]:
    return {"path": path}


def broken_app(arguments: dict[str, Any]) -> Any:
    if arguments.get("list"):
        return [1]
    raise KeyError("n")


async def test_user_apps() -> None:
    app = create_app(apps={"me/double": sync_app, "me/where": async_app, "me/broken": broken_app})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        assert (await client.post("/run/me/double", json={"n": 4})).json() == {"doubled": 8}
        assert (await client.post("/run/me/where/a/b", json={})).json() == {"path": "/a/b"}
        broken = await client.post("/run/me/broken", json={})
        assert (broken.status_code, broken.json()) == (500, {"detail": "KeyError: 'n'"})
        listed = await client.post("/run/me/broken", json={"list": True})
        assert listed.json() == {"detail": "me/broken returned list, expected a dict", "error_type": "internal_error"}
        status = (await queue_attempts(client, "me/double", {"n": 1}, status_params={"logs": "true"})).status
        assert [line["message"] for line in status.json()["logs"]] == ["working"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200))
async def test_any_body_gets_a_fal_shaped_answer(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/run/local/echo", content=body)
    assert response.status_code in (200, 422)
    assert isinstance(response.json(), dict)
    assert "x-fal-request-id" in response.headers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
async def test_any_json_value_is_echoed_or_rejected(client: httpx.AsyncClient, value: Any) -> None:
    response = await client.post("/queue/local/echo", content=json.dumps(value).encode())
    if isinstance(value, dict):
        assert response.status_code == 200
    else:
        assert (response.status_code, response.json()["detail"][0]["type"]) == (422, "dict_type")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(st.text(alphabet="abc/.-_%", min_size=0, max_size=6), max_size=5).map("/".join),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), prefix=st.sampled_from(["run", "queue", "files"]))  # fmt: skip
async def test_no_path_gives_a_server_error(client: httpx.AsyncClient, path: str, method: str, prefix: str) -> None:
    response = await client.request(method, f"/{prefix}/{path}", json={})
    assert response.status_code < 500 or prefix == "run" and path.startswith("local/fail")
    assert isinstance(response.json(), dict)


@pytest.mark.parametrize("seconds", [0.05, 0.25, 0.35])
async def test_sleep_logs_its_progress_without_repeating_a_line(client: httpx.AsyncClient, seconds: float) -> None:
    """A timer waking a hair early left a sliver of sleep whose log line repeated the one before."""
    status = (await queue_attempts(client, "local/sleep", {"seconds": seconds}, status_params={"logs": "1"})).status
    lines = [entry["message"] for entry in status.json()["logs"]]
    assert lines[0] == f"sleeping {seconds:g} s" and lines[-1].endswith(f"of {seconds:g} s")
    assert all(a != b for a, b in zip(lines, lines[1:], strict=False)), lines
