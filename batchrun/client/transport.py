"""How the fal client's requests go on the wire: one aiohttp session, used directly or under httpx.

Run mode is bounded by client CPU, and httpx's request/response machinery (client hooks, auth and
redirect flows, header and body models) costs 0.1-0.15 ms per call, as much as aiohttp's whole
exchange. So with the default transport every call goes straight through our own aiohttp session,
and answers are read into a small `DirectAnswer` instead of an httpx.Response; the SSE stream is
parsed by httpx-sse's EventSource either way. httpx's own way, through the same kind of session
(httpx-aiohttp), serves any other transport (the tests' in-process ASGI app) and requests with
cookies to send. A test proves both ways put the same bytes on the wire.

`Sender.exchange` is the single exception boundary: every send error becomes a `TransportFailure`
(`transport_failure` decides whether the request may have been sent), never an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import anyio
import httpx
import httpx_sse
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream

from batchrun.client.retry import TransportFailure

__all__ = ["CONNECT_TIMEOUT", "QUEUE_TIMEOUT", "SEND_ERRORS", "Answer", "Call", "DirectAnswer", "Sender",
           "transport_failure"]

CONNECT_TIMEOUT = 30.0
# Queue calls (submit, status, stream, result, cancel): fal-client's 120 s read limit, added because
# TLS reads could hang forever. The stream gets keep-alives every 15 s, so 120 s idle means dead.
QUEUE_TIMEOUT = httpx.Timeout(120.0, connect=CONNECT_TIMEOUT)
CLOSE_GRACE = 5.0  # bound on closing the connections at the end of a run

# Everything a send can raise besides cancellation. aiohttp errors normally arrive wrapped by
# httpx-aiohttp, but a few (response parsing) pass through unmapped; OSError covers TLS and sockets.
SEND_ERRORS = (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, aiohttp.ClientError, OSError)


@dataclasses.dataclass(slots=True)
class Call:
    """One HTTP request, ready to send any number of times (`Sender.exchange`)."""

    method: str
    url: str
    parsed: httpx.URL | None  # None: not parsed here (a URL the server gave; the sender parses it)
    body: bytes | None
    headers: dict[str, str]  # the request's own; the client's defaults are merged when sending
    queue: bool  # a queue call (QUEUE_TIMEOUT) or a run call (the job's timeout)
    timeout: float | None  # a run call's read timeout (None: none)
    params: dict[str, str] | None = None


class DirectAnswer:
    """An answer read straight from aiohttp: what the client reads of an httpx.Response (status,
    headers, body, text), without building one: httpx.Response's header model and body decoders
    cost ~7% of a small run call's CPU. aiohttp has already decoded the body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers  # aiohttp's case-insensitive multidict
        self.content = content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        """As httpx decodes it: the Content-Type charset, else UTF-8, undecodable bytes replaced."""
        charset = _CHARSET.search(self.headers.get("content-type", ""))
        try:
            return self.content.decode(charset.group(1) if charset else "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")


# A URL the server gave may carry user:password@: httpx would send those instead of our key and
# aiohttp refuses the pair (a ValueError). Neither is what the user asked for, so it is refused,
# without quoting the URL (the password is a secret).
_CREDENTIALS = "the server gave a URL with credentials (user:password@) in it; batchrun does not follow it"


def _has_credentials(url: str) -> bool:
    if "@" not in url:  # the common case, without parsing
        return False
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return False  # not a URL at all: the sender's parser says so
    return parts.username is not None or parts.password is not None


_CHARSET = re.compile(r";\s*charset=[\"']?([^\s;\"']+)", re.IGNORECASE)
Answer = httpx.Response | DirectAnswer  # what a send returns, from httpx or straight from aiohttp


def transport_failure(exc: BaseException) -> TransportFailure:
    """Map a send exception to what the retry policy needs: could the request have been sent?

    httpx-aiohttp maps nearly every aiohttp connection error (ServerDisconnected, a reset while
    reading) to httpx.ConnectTimeout, which would claim "never sent". So the original aiohttp
    exception decides when there is one: only a failure to connect proves nothing was sent.
    """
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    message = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL, aiohttp.InvalidURL,
                        aiohttp.NonHttpUrlClientError)):
        return TransportFailure(sent=False, timeout=False, message=message, fatal=True)
    if isinstance(cause, aiohttp.ClientError):
        not_sent = isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        return TransportFailure(
            sent=not not_sent, timeout=isinstance(cause, aiohttp.ServerTimeoutError), message=message
        )
    not_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return TransportFailure(
        sent=not not_sent, timeout=isinstance(exc, (httpx.TimeoutException, TimeoutError)), message=message
    )


class _Cookies(httpx.Cookies):
    """httpx's cookie jar, minus its per-response work when a response sets no cookie: httpx builds
    urllib request and response stand-ins for every response to offer them to the jar, about 5% of
    a small run call's CPU, and fal answers set no cookies. A Set-Cookie is stored as before."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            super().extract_cookies(response)


class _AsyncClient(httpx.AsyncClient):
    """httpx.AsyncClient whose cookie jar is a `_Cookies`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies = _Cookies(self._cookies)

    @property
    def cookies(self) -> httpx.Cookies:
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._cookies = _Cookies(cookies)


class Sender:
    """One per client; an async context manager. `headers` go on every request (User-Agent,
    Authorization); `transport` None means our own aiohttp session and the direct way."""

    def __init__(
        self, *, headers: dict[str, str], max_connections: int, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        # Made here, not with the session: loading the CA bundle takes 10-30 ms, which would
        # otherwise delay the first wave of requests.
        self._ssl_context = httpx.create_ssl_context() if transport is None else None
        # Our own aiohttp session, shared by httpx's transport and the direct way; created on first
        # use because aiohttp wants a running event loop.
        self._session: aiohttp.ClientSession | None = None
        self._direct = transport is None
        if transport is None:
            transport = AiohttpTransport(limits=self._limits, client=self._aiohttp)
        self.http = _AsyncClient(transport=transport, limits=self._limits, timeout=QUEUE_TIMEOUT, headers=headers)
        self._default_headers = dict(self.http.headers)  # httpx's defaults and ours, lower-case names
        # (queue?, timeout) -> httpx's timeout extension (see request), and the same for aiohttp
        self._timeouts: dict[tuple[bool, float | None], dict[str, float | None]] = {}
        self._client_timeouts: dict[tuple[bool, float | None], aiohttp.ClientTimeout] = {}

    async def __aenter__(self) -> Sender:
        await self.http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.move_on_after(CLOSE_GRACE, shield=True):
            await self.http.aclose()
            if self._session is not None:  # the transport closes it only if it ever sent anything
                await self._session.close()

    def _aiohttp(self) -> aiohttp.ClientSession:
        """The session httpx-aiohttp's transport would make for itself (same pool size, keep-alive
        and TLS context), minus aiohttp's cookie jar: httpx's jar is the one cookies live in."""
        if self._session is None:
            assert self._ssl_context is not None  # made in __init__ whenever this transport is used
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._ssl_context,
            )
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _aiohttp_timeout(self, queue: bool, timeout: float | None) -> aiohttp.ClientTimeout:
        """The aiohttp timeout of a queue call, or of a run call with `timeout`: httpx-aiohttp's
        mapping of the httpx.Timeout that httpx's way uses (cached: a run has one or two)."""
        key = (queue, timeout)
        found = self._client_timeouts.get(key)
        if found is None:
            read = QUEUE_TIMEOUT.read if queue else timeout
            found = self._client_timeouts[key] = aiohttp.ClientTimeout(
                sock_connect=CONNECT_TIMEOUT, sock_read=read, connect=read
            )
        return found

    def _httpx_way(self, call: Call | None = None) -> bool:
        return (
            not self._direct
            or bool(self.http.cookies)
            or (call is not None and call.parsed is not None and call.parsed.is_relative_url)
        )

    def request(self, call: Call) -> httpx.Request:
        """`build_request(method, url, ...)` with the parsed URL and the timeout extension cached:
        build_request parses the URL and rebuilds the timeout for every call. The same request:
        client headers, then ours, merged by httpx.Headers."""
        key = (call.queue, call.timeout)
        extension = self._timeouts.get(key)
        if extension is None:
            timeout = QUEUE_TIMEOUT if call.queue else httpx.Timeout(call.timeout, connect=CONNECT_TIMEOUT)
            extension = self._timeouts[key] = timeout.as_dict()
        if call.parsed is None or call.params or self.http.cookies or call.parsed.is_relative_url:
            # a URL to parse or a query to add, cookies to send, a base URL to merge: httpx's way
            return self.http.build_request(
                call.method,
                call.url,
                params=call.params,
                content=call.body,
                headers=call.headers,
                extensions={"timeout": extension},
            )
        merged = httpx.Headers(self.http.headers)
        merged.update(call.headers)
        return httpx.Request(
            call.method, call.parsed, headers=merged, content=call.body, extensions={"timeout": extension}
        )

    async def exchange(self, call: Call) -> Answer | TransportFailure:
        """One HTTP exchange with the body read."""
        if _has_credentials(call.url):
            return TransportFailure(sent=False, timeout=False, message=_CREDENTIALS, fatal=True)
        if self._httpx_way(call):
            try:
                return await self.http.send(self.request(call))
            except SEND_ERRORS as exc:
                return transport_failure(exc)
        timeout = self._aiohttp_timeout(call.queue, call.timeout)
        headers = self._default_headers.copy()
        for name, value in call.headers.items():  # ours replace the client's by name, case-insensitively
            headers.pop(name.lower(), None)
            headers[name] = value
        try:
            async with self._aiohttp().request(
                call.method,
                call.url,
                params=call.params,
                data=call.body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as answer:
                response = DirectAnswer(answer.status, answer.headers, await answer.read())
        except SEND_ERRORS as exc:
            return transport_failure(exc)
        if "set-cookie" in response.headers:  # rare (a load balancer's affinity): keep it in httpx's jar
            with contextlib.suppress(*SEND_ERRORS):  # a URL only httpx refuses: no cookie, as httpx would keep none
                jar = httpx.Response(answer.status, headers=answer.raw_headers, request=self.request(call))
                self.http.cookies.extract_cookies(jar)
        return response

    @contextlib.asynccontextmanager
    async def event_source(self, url: str, params: dict[str, str] | None) -> AsyncIterator[httpx_sse.EventSource]:
        """httpx-sse's EventSource over a streamed GET: on the direct way straight through aiohttp
        (httpx's request building was 7% of a subscribe run's CPU), else httpx's. Raises SEND_ERRORS."""
        if _has_credentials(url):
            raise httpx.InvalidURL(_CREDENTIALS)
        if self._httpx_way():
            async with httpx_sse.aconnect_sse(self.http, "GET", url, params=params, timeout=QUEUE_TIMEOUT) as source:
                yield source
            return
        headers = {**self._default_headers, "accept": "text/event-stream", "cache-control": "no-store"}
        timeout = self._aiohttp_timeout(True, None)
        async with self._aiohttp().get(
            url, params=params, headers=headers, timeout=timeout, allow_redirects=False, auto_decompress=False
        ) as answer:  # httpx decodes, as on its own way
            yield httpx_sse.EventSource(
                httpx.Response(answer.status, headers=answer.raw_headers, stream=AiohttpResponseStream(answer))
            )
