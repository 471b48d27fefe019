"""The client builds its requests without httpx.AsyncClient (cached URL and timeout, headers merged
as httpx merges them) and sends them through one transport whatever it is; it keeps httpx's cookie
jar. None of it may change anything on the wire: what goes out is what httpx.AsyncClient would send."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from client_helpers import Recorded, planned
from httpx_aiohttp import AiohttpTransport

from batchrun.client.fal import FalClient, _version
from batchrun.client.transport import QUEUE_TIMEOUT, Answer, Call, Sender
from batchrun.redact import Redactor
from batchrun.server import ServerThread

CASES = [
    ("https://127.0.0.1:8/run/fal-ai/x", {"Content-Type": "application/json"}, 30.0, False),
    ("https://127.0.0.1:8/run/fal-ai/x/sub/path", {"Content-Type": "application/json", "user-agent": "mine",
                                                   "X-Fal-Runner-Hint": "h"}, None, False),
    ("http://127.0.0.1:8/queue/fal-ai/x", {"Content-Type": "application/json", "authorization": "Bearer other",
                                          "X-Fal-Queue-Priority": "low", "X-Fal-Request-Timeout": "5.0"}, None, True),
    ("http://[::1]:8/run/a%20b/c?x=1", {"Content-Type": "application/json", "X-Custom": "v"}, 2.5, False),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("url", "headers", "timeout", "queue"), CASES)
async def test_posts_equal_httpx_build_request(url: str, headers: dict[str, str], timeout: float | None,
                                               queue: bool) -> None:
    # The client's headers on a Sender without a host restriction: [::1] is no target here.
    defaults = {"User-Agent": f"batchrun/{_version()}", "Authorization": "Key a:b"}
    async with Sender(headers=defaults, max_connections=1) as sender:
        reference = httpx.AsyncClient(headers=defaults)
        for _ in range(2):  # the second time from the caches
            mine = sender.request(Call("POST", url, httpx.URL(url), b'{"a":1}', headers, queue, timeout))
            expected = reference.build_request(
                "POST", url, content=b'{"a":1}', headers=headers,
                # a run call's timeout is its exchange's deadline, not per-phase timers (transport.py)
                timeout=QUEUE_TIMEOUT if queue else httpx.Timeout(None, connect=30.0))
            assert (mine.method, str(mine.url), mine.content, mine.extensions) == (
                expected.method, str(expected.url), expected.content, expected.extensions)
            assert mine.headers.raw == expected.headers.raw


@pytest.mark.anyio
async def test_a_set_cookie_is_kept_and_sent_back() -> None:
    async with FalClient(run_url="http://127.0.0.1:8/run", queue_url="http://127.0.0.1:8/queue", auth=None,
                         redactor=Redactor()) as client:
        assert isinstance(client._sender.cookies, httpx.Cookies) and not client._sender.cookies
        post = Call("POST", "http://127.0.0.1:8/run/x", httpx.URL("http://127.0.0.1:8/run/x"), b"{}", {}, False, 10.0)
        request = client._sender.request(post)
        client._sender.cookies.extract_cookies(httpx.Response(200, request=request))  # no Set-Cookie
        assert not client._sender.cookies
        client._sender.cookies.extract_cookies(
            httpx.Response(200, headers={"Set-Cookie": "lb=node-3; Path=/"}, request=request))
        assert dict(client._sender.cookies) == {"lb": "node-3"}
        again = client._sender.request(post)
        assert again.headers["cookie"] == "lb=node-3"


@pytest.mark.anyio
async def test_direct_posts_reach_the_server_as_httpx_sends_them(loopback_server: ServerThread) -> None:
    """The direct aiohttp way (default transport) and httpx's way (any given transport, here the
    same aiohttp stack) deliver the same headers, in the same order, and the same body."""
    seen = []
    for transport in (None, AiohttpTransport()):
        async with FalClient(run_url=loopback_server.run_url, queue_url=loopback_server.queue_url, auth="Key a:b",
                             redactor=Redactor(), transport=transport) as client:
            for mode in ("run", "subscribe"):
                request = planned("local/fail", {"echo_request": True, "text": "\u00e9t\u00e9"}, mode=mode,
                                  headers={"X-Custom": "v", "user-agent": "mine"}, hint="h1")
                outcome = await client.call(request, Recorded())
                assert outcome.error is not None and outcome.error["type"] == "bad_request"
                seen.append((mode, outcome.error["detail"]))
    direct, via_httpx = seen[:2], seen[2:]
    assert direct == via_httpx
    assert "'user-agent': 'mine'" in direct[0][1] and "'x-fal-runner-hint': 'h1'" in direct[0][1]
    assert "'authorization': '[REDACTED]'" in direct[1][1] and "\u00e9t\u00e9" in direct[1][1]


@pytest.mark.anyio
async def test_bad_urls_and_headers_are_input_errors() -> None:
    """Caught before anything is sent, on both ways: a request that cannot be built is the
    request's input_error, never an exception out of the client."""
    cases = [
        ("http://127.0.0.1:8/run", {"X-Custom": "\u00e9t\u00e9"}, "header X-Custom: header names and values must be ASCII"),
        ("http://127.0.0.1:8/run", {"X-Custom": "a\r\nX-Injected: 1"}, "header X-Custom: its value contains a line break"),
        ("http://[::1:8/run", {}, "cannot build the request to http://[::1:8/run/x/y: "),
    ]
    for transport in (None, httpx.ASGITransport(app=lambda *a: None)):
        for run_url, headers, message in cases:
            async with FalClient(run_url=run_url, queue_url=run_url, auth=None, redactor=Redactor(),
                                 transport=transport) as client:
                outcome = await client.call(planned("x/y", {}, headers=headers), Recorded())
            assert outcome.error is not None and outcome.error["type"] == "input_error"
            assert outcome.error["detail"].startswith(message), outcome.error["detail"]
            assert outcome.attempts == 0


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html; charset=iso-8859-1", b"caf\xe9 503"),
    ('text/plain; charset="UTF-8"', "\u00e9t\u00e9".encode()),
    ("application/json", b'{"detail": "bad \xff byte"}'),
    ("text/plain; charset=no-such-codec", b"plain \xe9"),
    ("", b"\xfe\xff"),
])
def test_direct_answers_decode_their_text_as_httpx_does(content_type: str, body: bytes) -> None:
    """Error details quote the body's text: the direct way must read it as httpx would."""
    headers = httpx.Headers({"Content-Type": content_type} if content_type else {})
    expected = httpx.Response(503, headers=headers, content=body).text
    assert Answer(503, headers, body).text == expected


def test_a_short_client_timeout_sends_no_start_timeout(tmp_path: Path, loopback_server: ServerThread) -> None:
    """Regression: `client_timeout: 1` without `start_timeout` sent a 1-second start timeout, which
    fal refuses (it wants more than 1 s). The start timeout is derived from client_timeout only
    above that; the server's echo of the request's headers shows what went out."""
    from fixtures_execute import records, run_cli, server_urls, write_spec

    spec = write_spec(tmp_path, """\
        version: 1
        name: st
        defaults: {retries: {max_attempts: 1}}
        jobs:
          - {name: short, endpoint: local/fail, client_timeout: 1, arguments: {echo_request: true}}
          - {name: long, endpoint: local/fail, client_timeout: 5, arguments: {echo_request: true}}
    """)
    out = tmp_path / "out.jsonl"
    assert run_cli(str(spec), "-o", str(out), *server_urls(loopback_server)) == 1
    sent = {r["job"]: r["error"]["detail"] for r in records(out)}  # "rejected request with headers {...}"
    assert "'x-fal-request-timeout'" not in sent["short"] and "rejected request with headers" in sent["short"]
    assert "'x-fal-request-timeout': '5.0'" in sent["long"]


@pytest.mark.parametrize("raw", [
    [(b"Content-Type", b"application/json"), (b"X-Fal-Request-Id", b"abc")],
    [(b"set-cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"x-fal-served-from", b"runner-0")],
    [(b"X-Odd", "caf\u00e9".encode("latin-1")), (b"content-length", b"12")],
    [(b"X-Odd", "caf\u00e9".encode("utf-8")), (b"X-Odd", b"plain")],
    [],
])
def test_an_answers_headers_read_once_answer_as_httpx_headers_do(raw: list[tuple[bytes, bytes]]) -> None:
    """Answers keep their headers as a dict built in one pass (each httpx.Headers look-up scans
    them all); every look-up the client makes gives what httpx.Headers would."""
    from batchrun.client.transport import header_fields

    headers = httpx.Headers(raw)
    fields = header_fields(headers)
    assert fields == {key: headers[key] for key in headers}
    for name in ("content-type", "x-fal-request-id", "set-cookie", "content-length", "x-odd", "absent"):
        assert fields.get(name) == headers.get(name) and (name in fields) == (name in headers)
