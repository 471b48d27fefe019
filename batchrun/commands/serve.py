"""batchrun serve: start the embedded fal-compatible server in the foreground.

Prints `run_url: <URL>` and `queue_url: <URL>` (one line each) once it listens, then serves until
Ctrl-C (exit 130) or SIGTERM (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchrun.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on; 0 picks a free one (default: 8765)")
    parser.add_argument("--runners", type=int,
                        help="queue workers running requests at once (default: 2, or --max-concurrency if larger)")
    parser.add_argument("--max-concurrency", type=int, metavar="N",
                        help="like fal's account limit: at most N requests per key in progress at once; over it a "
                             "direct run gets 429 and a queued request waits in IN_QUEUE")
    parser.add_argument("--tls-cert", metavar="FILE", help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="private key of --tls-cert (PEM)")
    parser.add_argument("--require-key", action="store_true",
                        help="answer 401 to requests without an 'Authorization: Key ...' header")
    parser.add_argument("--app", action="append", default=[], metavar="OWNER/ALIAS=MODULE:FUNCTION",
                        help="serve a Python function (arguments dict in, JSON-able dict out) as an app; repeatable")
    parser.add_argument("--fallback", action="append", default=[], metavar="ENDPOINT=ALTERNATIVE",
                        help="emulate fal's model fallbacks: a queued request to ENDPOINT that fails six times is "
                             "rerouted to ALTERNATIVE (unless it sends x-fal-disable-fallbacks); repeatable")


def run(args: argparse.Namespace) -> int:
    from batchrun.server.apps import load_app_option

    if args.runners is None:
        args.runners = max(2, args.max_concurrency or 0)
    if args.runners < 1:
        raise UsageError("--runners must be at least 1")
    if args.max_concurrency is not None and args.max_concurrency < 1:
        raise UsageError("--max-concurrency must be at least 1")
    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not Path(path).is_file():
            raise UsageError(f"{flag} {path}: {'is a folder, not a file' if Path(path).is_dir() else 'no such file'}")
    apps: dict[str, Callable[..., Any]] = {}
    for option in args.app:
        try:
            name, func = load_app_option(option)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        apps[name] = func
    fallbacks = _fallbacks(args.fallback, apps)
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop  # uvicorn's fast loop when available

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as loop_runner:
        return loop_runner.run(_serve(args, apps, fallbacks))


def _fallbacks(options: list[str], apps: dict[str, Callable[..., Any]]) -> dict[str, str]:
    """--fallback options, checked before the server starts (the server checks them the same way)."""
    from batchrun.server.apps import builtin_apps, fallback_map

    served = set(builtin_apps()) | {name.strip("/") for name in apps}
    fallbacks: dict[str, str] = {}
    for option in options:
        primary, equals, alternative = option.partition("=")
        primary, alternative = primary.strip().strip("/"), alternative.strip().strip("/")
        if not (equals and primary and alternative):
            raise UsageError(f"--fallback {option}: expected ENDPOINT=ALTERNATIVE")
        try:
            fallbacks.update(fallback_map({primary: alternative}, served))
        except ValueError as exc:
            raise UsageError(f"--fallback {option}: {exc}") from None
    return fallbacks


async def _serve(args: argparse.Namespace, apps: dict[str, Callable[..., Any]], fallbacks: dict[str, str]) -> int:
    from batchrun.server import ServerStartError, serve_local

    stop = asyncio.Event()
    stopped_by: list[int] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopper(stop, stopped_by, sig))
    try:
        async with serve_local(host=args.host, port=args.port, runners=args.runners, require_key=args.require_key,
                               apps=apps, ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                               max_concurrency=args.max_concurrency, fallbacks=fallbacks) as server:
            print(f"run_url: {server.run_url}", flush=True)
            print(f"queue_url: {server.queue_url}", flush=True)
            await stop.wait()
    except ServerStartError as exc:
        print(f"batchrun: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    # Ctrl-C is the shell's 130 (a script can tell an interrupted server from a clean stop);
    # SIGTERM is the service manager's request to stop, so a clean stop exits 0.
    return 130 if stopped_by[:1] == [signal.SIGINT] else 0


def _stopper(stop: asyncio.Event, stopped_by: list[int], sig: int) -> Callable[[], None]:
    def handler() -> None:
        stopped_by.append(sig)
        stop.set()

    return handler
