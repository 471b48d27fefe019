"""The production transport: httpx-aiohttp's `AiohttpTransport` without its per-call waste.

`AiohttpTransport.handle_async_request` rebuilds on every call what is the same call after call: a
`ClientTimeout` object, the request headers turned into aiohttp's multi-dict through httpx's
Mapping interface (two charset look-ups per header), and an answer stream that enters a
generator-based context manager for every chunk it reads. On the bench machine httpx's layer over
aiohttp (request, transport, response, body) cost ~60 us per call against the same aiohttp call
made bare (157 vs 97 us of CPU); these conversions were ~17 of them (`Sender.exchange` 180 -> 163
us). `LeanAiohttpTransport` makes the same aiohttp session call with the same arguments, returns
the same `httpx.Response` (the answer's raw byte headers, status, reason, a stream over the
aiohttp response) and maps the same exceptions (httpx-aiohttp's own `map_aiohttp_exceptions`,
entered only when something was raised). Proxies (batchrun configures none) keep httpx-aiohttp's
own code.

It stays an `httpx.AsyncBaseTransport`: the Sender drives it exactly as it drives the tests'
`httpx.ASGITransport`, and tests/test_client_requests.py checks that what reaches the server is
what httpx-aiohttp's own transport sends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import map_aiohttp_exceptions

from batchrun.client.headers import text_pairs

__all__ = ["LeanAiohttpTransport"]

_HTTP11 = b"HTTP/1.1"
_TIMEOUTS_KEPT = 64  # distinct (connect, read, pool) triples: a run has one per job timeout


class _AnswerStream(httpx.AsyncByteStream):
    """The body of an aiohttp response, chunk by chunk as it arrives; errors mapped as
    httpx-aiohttp maps them."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except Exception:
            with map_aiohttp_exceptions():
                raise

    async def aclose(self) -> None:
        try:
            await self._response.__aexit__(None, None, None)
        except Exception:
            with map_aiohttp_exceptions():
                raise


class LeanAiohttpTransport(AiohttpTransport):
    """See the module docstring. Constructed like `AiohttpTransport`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    def _timeout(self, extension: dict[str, float | None]) -> aiohttp.ClientTimeout:
        # The mapping is httpx-aiohttp's: httpx's pool timeout bounds aiohttp's connection wait.
        key = (extension.get("connect"), extension.get("read"), extension.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(sock_connect=key[0], sock_read=key[1], connect=key[2])
            if len(self._timeouts) < _TIMEOUTS_KEPT:
                self._timeouts[key] = timeout
        return timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.proxy is not None:
            return await super().handle_async_request(request)
        if not isinstance(self.client, aiohttp.ClientSession):
            self.client = self.get_client()
        data: bytes | httpx.AsyncByteStream | None
        try:
            data = request.content or None
        except httpx.RequestNotRead:
            data = request.stream  # type: ignore[assignment]  # aiohttp takes async iterables
            request.headers.pop("transfer-encoding", None)  # aiohttp chunks it itself
        # What aiohttp got from httpx-aiohttp, built in one pass: httpx's Mapping view (lower-case
        # names; a repeated name's values joined with ", ", which the fast path cannot have).
        pairs = text_pairs(request.headers)
        if len({name for name, _ in pairs}) != len(pairs):
            pairs = list(request.headers.items())
        extensions = request.extensions
        try:
            response = await self.client.request(
                method=request.method,
                url=str(request.url),
                headers=pairs,  # aiohttp makes its multi-dict of them
                data=data,
                allow_redirects=False,
                auto_decompress=False,
                compress=False,
                timeout=self._timeout(extensions.get("timeout", {})),
                server_hostname=extensions.get("sni_hostname"),
            ).__aenter__()
        except Exception:
            with map_aiohttp_exceptions():
                raise
        answer_extensions = {"http_version": _HTTP11}
        if response.reason:
            answer_extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AnswerStream(response),
            request=request,
            extensions=answer_extensions,
        )
