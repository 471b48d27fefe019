"""batchrun view OUT.jsonl [BASE.jsonl]: a local page that follows an output while a run writes it.

Binds 127.0.0.1 by default (the page shows results; --host opens it to others on purpose), prints
`viewing OUT at http://HOST:PORT/` once it listens, and serves until Ctrl-C (exit 0). OUT need not
exist yet: the page fills in as the run starts writing.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from batchrun.errors import UsageError
from batchrun.report.resultdiff import PHASH_THRESHOLD

DEFAULT_PORT = 8777
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="OUT.jsonl", help="the output to follow (a run may still be writing it)")
    parser.add_argument("base", metavar="BASE.jsonl", nargs="?",
                        help="a baseline output: each tile shows base beside new, with the verdict by look")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})")
    parser.add_argument("--phash-threshold", type=int, default=PHASH_THRESHOLD, metavar="BITS",
                        help=f"with BASE: pictures at most BITS of 64 apart are visually the same (default "
                        f"{PHASH_THRESHOLD})")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from batchrun.report.live import create_view_app

    if not 0 <= args.port <= 65535:
        raise UsageError("--port must be between 0 and 65535")
    if not 0 <= args.phash_threshold <= 64:
        raise UsageError(f"--phash-threshold must be from 0 to 64 bits, got {args.phash_threshold}")
    output = Path(args.output)
    if output.is_dir():
        raise UsageError(f"{output}: is a directory, not an output file")
    base = Path(args.base) if args.base else None
    if base is not None and not base.is_file():
        raise UsageError(f"{base}: no such output file (BASE must exist)")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    sock.listen(128)  # from now on a browser's connection waits in the backlog until uvicorn takes it
    port = sock.getsockname()[1]
    # Requests must name the address the viewer was started for (a DNS-rebinding page cannot).
    hosts = list(LOOPBACK) + ["[::1]"] if args.host in LOOPBACK else [args.host.strip("[]"), f"[{args.host}]"]
    app = create_view_app(output, base, hosts=hosts, phash_threshold=args.phash_threshold)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"viewing {output} at http://{shown}:{port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])
    return 0
