"""The client builds its POSTs without httpx's build_request (cached URL and timeout) and skips
httpx's cookie bookkeeping for responses without Set-Cookie: both must change nothing on the wire."""

from __future__ import annotations

import httpx
import pytest

from batchrun.client import QUEUE_TIMEOUT, FalClient, _Cookies
from batchrun.redact import Redactor

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
    async with FalClient(run_url="https://127.0.0.1:8/run", queue_url="http://127.0.0.1:8/queue", auth="Key a:b",
                         redactor=Redactor()) as client:
        for _ in range(2):  # the second time from the caches
            mine = client._post(url, b'{"a":1}', headers, timeout, queue=queue)
            expected = client._http.build_request(
                "POST", url, content=b'{"a":1}', headers=headers,
                timeout=QUEUE_TIMEOUT if queue else httpx.Timeout(timeout, connect=30.0))
            assert (mine.method, str(mine.url), mine.content, mine.extensions) == (
                expected.method, str(expected.url), expected.content, expected.extensions)
            assert mine.headers.raw == expected.headers.raw


@pytest.mark.anyio
async def test_a_set_cookie_is_kept_and_sent_back() -> None:
    async with FalClient(run_url="http://127.0.0.1:8/run", queue_url="http://127.0.0.1:8/queue", auth=None,
                         redactor=Redactor()) as client:
        assert isinstance(client._http.cookies, _Cookies)
        request = client._post("http://127.0.0.1:8/run/x", b"{}", {}, None, queue=False)
        client._http.cookies.extract_cookies(httpx.Response(200, request=request))  # no Set-Cookie
        assert not client._http.cookies
        client._http.cookies.extract_cookies(
            httpx.Response(200, headers={"Set-Cookie": "lb=node-3; Path=/"}, request=request))
        assert dict(client._http.cookies) == {"lb": "node-3"}
        again = client._post("http://127.0.0.1:8/run/x", b"{}", {"Content-Type": "application/json"}, None, queue=False)
        assert again.headers["cookie"] == "lb=node-3"


@pytest.mark.anyio
async def test_bad_urls_and_headers_fail_as_with_build_request() -> None:
    async with FalClient(run_url="http://127.0.0.1:8/run", queue_url="http://127.0.0.1:8/queue", auth=None,
                         redactor=Redactor()) as client:
        for url, headers, error in [("http://127.0.0.1:8/run/x", {"X-Custom": "\u00e9t\u00e9"}, UnicodeEncodeError),
                                    ("http://[::1/run/x", {}, httpx.InvalidURL)]:
            with pytest.raises(error):
                client._http.build_request("POST", url, content=b"{}", headers=headers)
            with pytest.raises(error):
                client._post(url, b"{}", headers, None, queue=False)
