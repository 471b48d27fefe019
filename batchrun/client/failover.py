"""fal's backup domains: a request that cannot connect to fal.run goes to falrun.com, as fal-client
1.0.3 does (docs/fal-protocol.md §9.6).

Only a failure to *connect* fails over: it proves nothing was sent, so the replay cannot make a
second request (or a second bill). A read timeout, a TLS or protocol error after connecting, and
every HTTP status stay what they are. If the backup cannot be reached either, the primary's error
is raised, and the caller's retry policy goes on (each attempt tries the primary first again).
On a mapped host the connect timeout is at most BACKUP_CONNECT_TIMEOUT, so an unreachable primary
costs seconds, not the 30 s connect timeout of other hosts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import httpx

from batchrun.client.retry import TransportFailure

__all__ = ["BACKUP_CONNECT_TIMEOUT", "BACKUP_HOSTS", "BackupHostTransport", "backups_for"]

# fal-client's _BACKUP_DOMAINS and _BACKUP_DOMAIN_CONNECT_TIMEOUT (§9.6).
BACKUP_HOSTS = {"fal.run": "falrun.com", "queue.fal.run": "queue.falrun.com"}
BACKUP_CONNECT_TIMEOUT = 5.0


def backups_for(origins: Iterable[str], hosts: Mapping[str, str]) -> dict[str, str]:
    """origin -> its backup origin, for the origins (scheme://host[:port]) whose host[:port] is
    mapped in `hosts` (keys and values host or host:port, like BACKUP_HOSTS)."""
    found = {}
    for origin in origins:
        url = httpx.URL(origin)
        backup = hosts.get(url.netloc.decode("ascii"))  # host, or host:port when not the default
        if backup is not None:
            found[origin] = f"{url.scheme}://{backup}"
    return found


class BackupHostTransport(httpx.AsyncBaseTransport):
    """Wraps the transport every request goes through; `backups` maps an origin to its backup
    origin (`backups_for`). `on_failover(origin, backup, reason)` is told of each failover.
    `classify` says whether a send error proves nothing was sent (batchrun.client.transport's
    transport_failure: httpx-aiohttp reports some errors after sending as ConnectTimeout)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, backups: Mapping[str, str], *,
                 classify: Callable[[BaseException], TransportFailure],
                 on_failover: Callable[[str, str, str], None] | None = None) -> None:  # fmt: skip
        self._inner = inner
        self._backups = {httpx.URL(origin).netloc: httpx.URL(backup) for origin, backup in backups.items()}
        self._classify = classify
        self._on_failover = on_failover

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        backup = self._backups.get(request.url.netloc)
        if backup is None:
            return await self._inner.handle_async_request(request)
        _cap_connect(request)
        try:
            return await self._inner.handle_async_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout) as primary:
            failure = self._classify(primary)
            if failure.sent or failure.fatal:
                raise  # it may have reached the server: replaying it could run (and bill) it twice
            replay = _to_backup(request, backup)
            if self._on_failover is not None:
                self._on_failover(_origin(request.url), _origin(backup), failure.message)
            try:
                return await self._inner.handle_async_request(replay)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # (not `from None`: the primary's cause is the aiohttp error that says it was not sent)
                raise primary  # noqa: B904

    async def aclose(self) -> None:
        await self._inner.aclose()


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}"


def _cap_connect(request: httpx.Request) -> None:
    # fal-client: "Per-request timeout=None must not disable detecting an unreachable domain".
    timeout = request.extensions.get("timeout")
    connect = timeout.get("connect") if timeout else None
    if connect is None or connect > BACKUP_CONNECT_TIMEOUT:
        request.extensions = {**request.extensions, "timeout": {**(timeout or {}), "connect": BACKUP_CONNECT_TIMEOUT}}


def _to_backup(request: httpx.Request, backup: httpx.URL) -> httpx.Request:
    """The same request (method, path, query, headers, body) to the backup origin."""
    url = request.url.copy_with(scheme=backup.scheme, host=backup.host, port=backup.port)
    headers = [(b"Host", url.netloc) if name.lower() == b"host" else (name, value)
               for name, value in request.headers.raw]  # fmt: skip
    # the stream, not .content: a large body is left unread (batchrun.client.transport)
    return httpx.Request(request.method, url, headers=headers, stream=request.stream, extensions=request.extensions)
