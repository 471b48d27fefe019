"""How batchrun's requests go on the wire: one httpx transport, the same code in production and tests.

Every exchange builds an `httpx.Request` and sends it through one `httpx.AsyncBaseTransport`
(`handle_async_request`): in production httpx-aiohttp's `AiohttpTransport` over our own aiohttp
session, in tests `httpx.ASGITransport` (the embedded server in-process) or the same aiohttp
transport over loopback sockets. `httpx.AsyncClient` is skipped on purpose: its auth, redirect,
cookie and event-hook machinery halved run-mode throughput (bench/RESULTS.md), and batchrun needs
none of it but the cookie jar, which is kept here (`httpx.Cookies`, public API). The SSE status
stream is parsed by httpx-sse from the same response type; artifact downloads use their own
`Sender` (no API key, redirects followed by the downloader).

What every exchange gets here, whatever the transport (docs/fal-protocol.md §10):
- a deadline: a run call's `timeout` bounds the whole exchange, body included (an idle timer would
  let a server trickling one byte a second hold it forever); queue calls get QUEUE_DEADLINE;
- a size bound: an answer whose body (after decompression) exceeds the call's `max_bytes` is an
  `answer_too_large` failure, never read whole into memory;
- credentials only where they belong: a Sender made with `origins` sends nothing to any other
  scheme://host:port (a queue answer naming another host is refused, not followed with the key);
- TLS verification failures are final (retrying a certificate the client does not trust cannot
  help); `verify` takes a CA bundle for private CAs.

`Sender.exchange` is the single exception boundary: every send error becomes a `TransportFailure`
(`transport_failure` decides whether the request may have been sent), never an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import ssl
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping

import aiohttp
import anyio
import httpx
import httpx_sse

from batchrun.client.aiohttp_transport import LeanAiohttpTransport
from batchrun.client.failover import BACKUP_HOSTS, BackupHostTransport, backups_for
from batchrun.client.headers import text_pairs
from batchrun.client.retry import TransportFailure
from batchrun.spec.model import MAX_ANSWER_BYTES

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "QUEUE_DEADLINE",
    "QUEUE_TIMEOUT",
    "SEND_ERRORS",
    "Answer",
    "Call",
    "RefusedURL",
    "Sender",
    "ssl_context",
    "transport_failure",
]

CONNECT_TIMEOUT = 30.0
# Queue calls (submit, status, stream, result, cancel): fal-client's 120 s read limit, added because
# TLS reads could hang forever. The stream gets keep-alives every 15 s, so 120 s idle means dead.
QUEUE_TIMEOUT = httpx.Timeout(120.0, connect=CONNECT_TIMEOUT)
# ... and a whole-exchange deadline for the non-streaming ones, so a trickling answer cannot hold a
# status poll or a result fetch forever. Generous: a result may carry megabytes of data URIs.
QUEUE_DEADLINE = 600.0
CLOSE_GRACE = 5.0  # bound on closing a response or the connections at the end of a run

# What httpx.AsyncClient would send by default (the decoders httpx has without extras), so the
# wire bytes are httpx's (tests/test_client_requests.py compares them).
_DEFAULT_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


class RefusedURL(Exception):
    """A URL batchrun will not send to (credentials in it, another host than the target's, not
    absolute); the message never quotes more than its origin."""


class _TooLarge(Exception):
    pass


# Everything a send can raise besides cancellation. aiohttp errors normally arrive wrapped by
# httpx-aiohttp, but a few (response parsing) pass through unmapped; OSError covers TLS and sockets.
SEND_ERRORS = (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, aiohttp.ClientError, OSError, RefusedURL)


_VETTED_KEPT = 1024  # parsed URLs whose checks are remembered (a run posts to a handful)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # httpx sends Content-Length: 0 on these without a body
_BYTES_BODY_LIMIT = 1 << 20  # aiohttp's TOO_LARGE_BYTES_BODY


@dataclasses.dataclass(slots=True)
class Call:
    """One HTTP request, ready to send any number of times (`Sender.exchange`)."""

    method: str
    url: str
    parsed: httpx.URL | None  # None: not parsed yet (a URL the server gave; the sender parses it)
    body: bytes | None
    headers: dict[str, str]  # the request's own; the sender's defaults are merged when sending
    queue: bool  # a queue call (QUEUE_TIMEOUT, QUEUE_DEADLINE) or a run call (the job's timeout)
    timeout: float | None  # a run call's deadline (None: none)
    params: dict[str, str] | None = None
    max_bytes: int = MAX_ANSWER_BYTES  # the answer's bound, decompressed


class Answer:
    """A fully read answer: what the client reads of an httpx.Response (status, headers, body,
    text), with the body read under the call's size bound. `headers` has lower-case names
    (header_fields)."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
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


_CHARSET = re.compile(r";\s*charset=[\"']?([^\s;\"']+)", re.IGNORECASE)

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
        return False  # not a URL at all: the parser says so
    return parts.username is not None or parts.password is not None


def origin(url: httpx.URL | str) -> str:
    """scheme://host:port of a URL, the port always spelled out (so http://h and http://h:80 match)."""
    parsed = httpx.URL(url) if isinstance(url, str) else url
    port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme, 0)
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host  # IPv6
    return f"{parsed.scheme}://{host}:{port}"


def ssl_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """The TLS context of every HTTPS connection: certifi's CAs (or SSL_CERT_FILE/SSL_CERT_DIR, as
    httpx reads them), or only the CAs of `ca_bundle` (a PEM file) when one is given. Loading a CA
    bundle takes 40-80 ms, so it is done once per process and CA source (a run has up to three
    Senders: the API, downloads, storage), before the first wave of requests; a context is safe to
    share between connections."""
    return _ssl_context(ca_bundle, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _ssl_context(ca_bundle: str | None, cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    # cert_file/cert_dir are part of the key only: httpx reads them from the environment itself.
    if ca_bundle is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_bundle)


def _certificate_error(exc: BaseException) -> BaseException | None:
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError)):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def transport_failure(exc: BaseException) -> TransportFailure:
    """Map a send exception to what the retry policy needs: could the request have been sent?

    httpx-aiohttp maps nearly every aiohttp connection error (ServerDisconnected, a reset while
    reading) to httpx.ConnectTimeout, which would claim "never sent". So the original aiohttp
    exception decides when there is one: only a failure to connect proves nothing was sent.
    """
    if isinstance(exc, RefusedURL):
        return TransportFailure(sent=False, timeout=False, message=str(exc), fatal=True, kind="refused_url")
    certificate = _certificate_error(exc)
    if certificate is not None:
        message = (f"TLS certificate verification failed ({certificate}); to trust a private CA set "
                   "`target.ca_bundle` in the spec, --ca-bundle, or SSL_CERT_FILE")
        return TransportFailure(sent=False, timeout=False, message=message, fatal=True, kind="tls_error")
    cause = exc.__cause__ if isinstance(exc.__cause__, aiohttp.ClientError) else exc
    message = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL, aiohttp.InvalidURL,
                        aiohttp.NonHttpUrlClientError)):
        return TransportFailure(sent=False, timeout=False, message=message, fatal=True, kind="refused_url")
    if isinstance(cause, aiohttp.ClientError):
        not_sent = isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
        return TransportFailure(
            sent=not not_sent, timeout=isinstance(cause, aiohttp.ServerTimeoutError), message=message
        )
    not_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return TransportFailure(
        sent=not not_sent, timeout=isinstance(exc, (httpx.TimeoutException, TimeoutError)), message=message
    )


def header_fields(headers: httpx.Headers) -> dict[str, str]:
    """An answer's headers as a dict, in one pass: lower-case names, a repeated name's values
    joined with ", " (httpx's own Mapping view of them). Each look-up in httpx.Headers decodes and
    compares every header, and an answer is looked up six or seven times (cookies, encoding,
    length, request id, runner, fallback)."""
    fields: dict[str, str] = {}
    for key, text in text_pairs(headers):
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


async def read_bounded(response: httpx.Response, limit: int, headers: Mapping[str, str]) -> bytes:
    """The decoded body, or _TooLarge as soon as it passes `limit` bytes (a declared
    Content-Length over it fails before reading anything). `headers`: the response's, with
    lower-case names (header_fields)."""
    identity = "content-encoding" not in headers
    declared = headers.get("content-length")  # of the encoded body: only identity tells
    if identity and declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks = []
    size = 0
    source: AsyncIterable[bytes]
    if identity:
        # An identity body is its raw bytes, read from the transport's stream itself: httpx's
        # aiter_raw would re-chunk it and enter a context manager around it, and its decoders
        # would only copy it through. Closed below, as aiter_raw closes it once read to its end.
        assert isinstance(response.stream, httpx.AsyncByteStream)  # an async transport's answer
        source = response.stream
    else:
        source = response.aiter_bytes()
    async for chunk in source:
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    if identity:
        await response.aclose()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _close(response: httpx.Response) -> None:
    if not response.is_closed:  # a body read to its end was closed by httpx already
        with anyio.move_on_after(CLOSE_GRACE, shield=True):
            await response.aclose()


class Sender:
    """One per client; an async context manager.

    `headers` go on every request (User-Agent, Authorization). `transport` None means our own
    aiohttp session through httpx-aiohttp; tests pass `httpx.ASGITransport` or an aiohttp transport
    of their own. `origins` (scheme://host[:port] strings), when given, are the only places any
    request may go. `verify` is the TLS context of the default transport. Origins on a host of
    `backup_hosts` fail over to its backup when they cannot be reached (batchrun.client.failover);
    `on_failover(origin, backup, reason)` hears of each time."""

    def __init__(
        self,
        *,
        headers: dict[str, str],
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        origins: Iterable[str] | None = None,
        verify: ssl.SSLContext | None = None,
        backup_hosts: Mapping[str, str] = BACKUP_HOSTS,
        on_failover: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._session: aiohttp.ClientSession | None = None  # made on first use: aiohttp wants a loop
        if transport is None:
            self._ssl_context = verify or ssl_context()
            transport = LeanAiohttpTransport(verify=self._ssl_context, limits=self._limits, client=self._aiohttp)
        self._transport = transport
        # lower-case name -> (name as given, value): merged as httpx.Headers.update does (a name
        # given again moves to the end with its new value), without a Headers object per request.
        self._defaults: dict[str, tuple[str, str]] = {}
        self._merge(self._defaults, _DEFAULT_HEADERS)
        self._merge(self._defaults, headers)
        self._origins = None if origins is None else frozenset(origin(o) for o in origins)
        # fal's backup domains (batchrun.client.failover), for a target on fal's own hosts only; they
        # join the allowed origins, since a queue answer from one names its own URLs.
        backups = backups_for(self._origins or (), backup_hosts)
        if backups:
            self._transport = BackupHostTransport(transport, backups, classify=transport_failure,
                                                  on_failover=on_failover)
            self._origins = frozenset(self._origins or ()) | frozenset(origin(b) for b in backups.values())
        self.cookies = httpx.Cookies()  # fal sets none; a load balancer's affinity cookie is kept
        self._timeouts: dict[tuple[bool, float | None], dict[str, float | None]] = {}
        self._allowed: dict[tuple[str, str | None, int | None], bool] = {}  # URL origin -> allowed
        self._vetted: dict[str, httpx.URL] = {}  # URL -> its parsed form that passed the checks above
        self._templates: dict[tuple[bytes, bool, tuple[tuple[str, str], ...]], httpx.Headers] = {}

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with anyio.move_on_after(CLOSE_GRACE, shield=True):
            await self._transport.aclose()  # as httpx.AsyncClient does: the sender owns its transport
            if self._session is not None:  # the transport closes it only if it ever sent anything
                await self._session.close()

    def _aiohttp(self) -> aiohttp.ClientSession:
        """The session httpx-aiohttp's transport would make for itself (same pool size, keep-alive
        and TLS context), minus aiohttp's cookie jar: ours is `self.cookies`."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=self._ssl_context,
            )
            self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    @staticmethod
    def _merge(into: dict[str, tuple[str, str]], headers: dict[str, str]) -> None:
        for name, value in headers.items():
            key = name.lower()
            into.pop(key, None)
            into[key] = (name, value)

    def _check(self, url: httpx.URL) -> None:
        if url.is_relative_url or url.scheme not in ("http", "https"):
            raise RefusedURL(f"not an absolute http(s) URL: {url.scheme or 'no scheme'}://{url.host or 'no host'}")
        if self._origins is None:
            return
        key = (url.scheme, url.host, url.port)
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = origin(url) in self._origins
            if len(self._allowed) < 64:
                self._allowed[key] = allowed
        if not allowed:
            raise RefusedURL(
                f"the server named another host ({origin(url)}) than the target's "
                f"({', '.join(sorted(self._origins))}); batchrun sends requests and credentials only to the target"
            )

    def request(self, call: Call) -> httpx.Request:
        """The httpx.Request of `call`: the sender's headers, then the call's (by name,
        case-insensitively), the parsed URL, the timeout extension. Raises RefusedURL or
        httpx.InvalidURL for a URL it will not send to."""
        url = call.parsed
        if url is None or call.params or self._vetted.get(call.url) is not url:
            if _has_credentials(call.url):
                raise RefusedURL(_CREDENTIALS)
            if url is None:
                url = httpx.URL(call.url)
            if call.params:
                url = url.copy_merge_params(call.params)
            self._check(url)
            if call.parsed is not None and not call.params and len(self._vetted) < _VETTED_KEPT:
                self._vetted[call.url] = call.parsed  # the client's POST URLs: checked once each
        key = (call.queue, call.timeout)
        extension = self._timeouts.get(key)
        if extension is None:
            # A run call's `timeout` is the exchange's deadline (`exchange`, body included); per-phase
            # timers of the same length only raced it, and a lost race named the failure after an
            # aiohttp socket timer ("SocketTimeoutError") instead of the deadline the spec set.
            timeout = QUEUE_TIMEOUT if call.queue else httpx.Timeout(None, connect=CONNECT_TIMEOUT)
            extension = self._timeouts[key] = timeout.as_dict()
        template = self._headers_for(call, url)
        if template is None:  # the call sets Host or a length itself: let httpx work it out
            headers = self._defaults.copy()
            self._merge(headers, call.headers)
            request = httpx.Request(call.method, url, headers=list(headers.values()), content=call.body,
                                    extensions={"timeout": extension})
        else:
            # httpx.Request(content=...) would normalise every header again and look up its
            # defaults one by one (a third of a request's CPU on the hot path): the template holds
            # them as httpx would order them (Host, the merged headers, Content-Length last).
            body = call.body or b""
            request = httpx.Request(call.method, url, headers=template, stream=httpx.ByteStream(body),
                                    extensions={"timeout": extension})
            if call.body is not None:
                request.headers["Content-Length"] = str(len(body))
            if len(body) <= _BYTES_BODY_LIMIT:
                request.read()  # as content= does: the transport sends bytes with a length, not chunks
            # else left unread: httpx-aiohttp hands aiohttp the stream, written as it is iterated
            # (with the Content-Length above, not chunked); raw bytes over 1 MiB make aiohttp warn
            # (ResourceWarning, an error under `-W error` or pytest's defaults) about blocking the loop.
        if self.cookies:
            self.cookies.set_cookie_header(request)
        return request

    def _headers_for(self, call: Call, url: httpx.URL) -> httpx.Headers | None:
        """The request headers of `call` but its Content-Length, built once per host, method kind
        and header set; None when the call's own headers name Host or a length."""
        key = (url.netloc, call.method in _BODY_METHODS and call.body is None, tuple(call.headers.items()))
        template = self._templates.get(key)
        if template is None:
            merged = self._defaults.copy()
            self._merge(merged, call.headers)
            if merged.keys() & {"host", "content-length", "transfer-encoding"}:
                return None
            auto = [(b"Host", url.netloc)] + ([(b"Content-Length", b"0")] if key[1] else [])
            template = httpx.Headers(auto + [(k.encode(), v.encode()) for k, v in merged.values()])
            if len(self._templates) < 256:  # a run has a handful (per job and host); stay bounded
                self._templates[key] = template
        return template

    def _deadline(self, call: Call) -> float | None:
        return QUEUE_DEADLINE if call.queue else call.timeout

    async def exchange(self, call: Call) -> Answer | TransportFailure:
        """One HTTP exchange with the body read, within the call's deadline and size bound."""
        deadline = self._deadline(call)
        if deadline is None:  # a run call without a timeout: no cancel scope to enter and leave
            return await self._exchange(call)
        with anyio.move_on_after(deadline) as scope:
            answer = await self._exchange(call)
        if scope.cancelled_caught:
            return TransportFailure(sent=True, timeout=True, message=f"no complete answer within {deadline:g} s")
        return answer

    async def _exchange(self, call: Call) -> Answer | TransportFailure:
        try:
            # self.stream(call), inlined: an async context manager per exchange is a generator
            # and two more awaits on the hot path.
            response = await self._transport.handle_async_request(self.request(call))
            try:
                fields = header_fields(response.headers)
                self._keep_cookies(response, fields)
                content = await read_bounded(response, call.max_bytes, fields)
            finally:
                await _close(response)
        except _TooLarge:
            return TransportFailure(
                sent=True, timeout=False, fatal=True, kind="answer_too_large",
                message=f"the answer's body is over the {call.max_bytes}-byte limit (max_answer_bytes); not kept",
            )
        except SEND_ERRORS as exc:
            return transport_failure(exc)
        return Answer(response.status_code, fields, content)

    @contextlib.asynccontextmanager
    async def stream(self, call: Call) -> AsyncIterator[httpx.Response]:
        """The response of `call` with its body not yet read; closed on leaving. Raises SEND_ERRORS."""
        response = await self._transport.handle_async_request(self.request(call))
        try:
            self._keep_cookies(response, response.headers)
            yield response
        finally:
            await _close(response)

    def _keep_cookies(self, response: httpx.Response, headers: Mapping[str, str]) -> None:
        if "set-cookie" in headers:  # rare (a load balancer's affinity): keep it
            self.cookies.extract_cookies(response)

    @contextlib.asynccontextmanager
    async def event_source(self, url: str, params: dict[str, str] | None) -> AsyncIterator[httpx_sse.EventSource]:
        """httpx-sse's EventSource over a streamed GET (the queue's status stream). Raises SEND_ERRORS."""
        call = Call("GET", url, None, None, {"accept": "text/event-stream", "cache-control": "no-store"}, True,
                    None, params)
        async with self.stream(call) as response:
            yield httpx_sse.EventSource(response)

