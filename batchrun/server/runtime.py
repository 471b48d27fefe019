"""Running the app on a real socket: in the current event loop (`serve_local`, which `batchrun serve`
uses too) or in a thread (`ServerThread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from batchrun.server.app import create_app
from batchrun.server.emulator import FaultReset

START_TIMEOUT = 10.0  # seconds a server may take to bind before we give up


class ServerStartError(RuntimeError):
    """The server could not start listening (port taken, bad certificate, ...)."""


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: an embedding program keeps its own Ctrl-C behaviour."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _DropFaultResets(logging.Filter):
    """local/fail's deliberate connection resets are not server errors worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], FaultReset))


logging.getLogger("uvicorn.error").addFilter(_DropFaultResets())


class _Urls:
    """The run and queue bases of a server listening at `origin` (one port serves both hosts)."""

    origin: str

    @property
    def run_url(self) -> str:
        return self.origin + "/run"

    @property
    def queue_url(self) -> str:
        return self.origin + "/queue"

    @property
    def port(self) -> int:
        return int(self.origin.rsplit(":", 1)[1])


@dataclasses.dataclass(frozen=True)
class RunningServer(_Urls):
    """Where a started server listens. `app` is the ASGI app (its state.emulator holds the queue)."""

    origin: str
    app: Starlette


def _config(app: Starlette, host: str, port: int, ssl_certfile: str | None, ssl_keyfile: str | None) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, lifespan="off", ws="none",
        ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, timeout_graceful_shutdown=1,
    )  # fmt: skip


def _origin(server: uvicorn.Server, host: str, tls: bool) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _make_app(app: Starlette | None, runners: int, require_key: bool, apps: dict[str, Callable[..., Any]] | None,
              **options: Any) -> Starlette:  # fmt: skip
    return app if app is not None else create_app(runners=runners, require_key=require_key, apps=apps, **options)


@contextlib.asynccontextmanager
async def serve_local(
    *, host: str = "127.0.0.1", port: int = 0, runners: int = 2, require_key: bool = False,
    apps: dict[str, Callable[..., Any]] | None = None, ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None, app: Starlette | None = None, **options: Any,
) -> AsyncIterator[RunningServer]:  # fmt: skip
    """Serve in the current (asyncio) event loop while the block runs; stop on exit.

    Raises ServerStartError if the server cannot listen within START_TIMEOUT seconds.
    """
    asgi = _make_app(app, runners, require_key, apps, **options)
    server = _QuietServer(_config(asgi, host, port, ssl_certfile, ssl_keyfile))
    task = asyncio.get_running_loop().create_task(_serve_catching_exit(server))
    try:
        await _wait_started(server, task)
        yield RunningServer(_origin(server, host, ssl_certfile is not None), asgi)
    finally:
        asgi.state.emulator.close()
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), START_TIMEOUT)
        if not task.done():
            task.cancel()


async def _serve_catching_exit(server: uvicorn.Server) -> None:
    # uvicorn calls sys.exit() when it cannot bind; a SystemExit escaping a task would end the
    # whole program, so turn it into an ordinary error.
    try:
        await server.serve()
    except SystemExit as exc:
        raise ServerStartError(f"uvicorn exited with status {exc.code} (see its message above)") from None


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while not server.started:
        if task.done():
            exc = None if task.cancelled() else task.exception()
            raise ServerStartError(
                str(exc) if isinstance(exc, ServerStartError) else f"the embedded server did not start: {exc!r}"
            )
        if loop.time() > deadline:
            raise ServerStartError(f"the embedded server did not start within {START_TIMEOUT:g} s")
        await asyncio.sleep(0.005)


class ServerThread(_Urls):
    """`with ServerThread(runners=1) as srv:` — a real server in its own thread and event loop.

    The same attributes as serve_local's object: origin, run_url, queue_url, app, port.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, runners: int = 2, require_key: bool = False,
        apps: dict[str, Callable[..., Any]] | None = None, ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None, app: Starlette | None = None, **options: Any,
    ) -> None:  # fmt: skip
        self.app = _make_app(app, runners, require_key, apps, **options)
        self._host, self._tls = host, ssl_certfile is not None
        self._server = _QuietServer(_config(self.app, host, port, ssl_certfile, ssl_keyfile))
        self._thread = threading.Thread(target=self._main, name="batchrun-server", daemon=True)
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.origin = ""

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # SystemExit from uvicorn when it cannot bind, among others
            self._error = exc

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await self._server.serve()
        finally:
            self.app.state.emulator.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(START_TIMEOUT / 0.005)):
            if self._server.started or not self._thread.is_alive():
                break
            ready.wait(0.005)
        if not self._server.started:
            self.stop()
            raise ServerStartError(f"the embedded server did not start: {self._error!r}")
        self.origin = _origin(self._server, self._host, self._tls)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.app.state.emulator.close)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(START_TIMEOUT)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
