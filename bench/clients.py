"""One client's run-mode loop against a fal-style server, in its own process; prints one JSON line.

    python bench/clients.py CLIENT --url RUN_URL --n 3000 --concurrency 64

CLIENT is one of:
  aiohttp        a bare aiohttp.ClientSession loop (the ceiling for Python HTTP here)
  httpx          a bare httpx.AsyncClient with its default transport (httpcore)
  httpx-aiohttp  httpx.AsyncClient over the httpx-aiohttp transport (batchrun uses that transport
                 directly, without AsyncClient's layers)
  fal-client     fal_client.AsyncClient.run (needs https and FAL_RUN_HOST set before import);
                 with --subscribe SECONDS, AsyncClient.subscribe of local/sleep jobs instead

Each sends N POSTs of a small JSON body to RUN_URL/local/echo, at most CONCURRENCY at once
(asyncio.gather + a semaphore, the way people write it), and times only that loop: imports and
process start-up are excluded, as they are for batchrun's figure taken from its records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

ENDPOINT = "local/echo"


def _body(i: int) -> dict[str, Any]:
    return {"prompt": "a lighthouse at dusk", "seed": i}


async def _drive(n: int, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> dict[str, Any]:
    sem = asyncio.Semaphore(concurrency)
    ok = 0

    async def guarded(i: int) -> None:
        nonlocal ok
        async with sem:
            if await one(i):
                ok += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(guarded(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    return {"n": n, "ok": ok, "seconds": round(elapsed, 4), "rps": round(n / elapsed, 1)}


async def _aiohttp(url: str, n: int, concurrency: int) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> bool:
            async with session.post(f"{url}/{ENDPOINT}", json=_body(i)) as r:
                await r.read()
                return r.status == 200

        return await _drive(n, concurrency, one)


async def _httpx(url: str, n: int, concurrency: int, *, aiohttp_transport: bool) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport = None
    if aiohttp_transport:
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    async with httpx.AsyncClient(limits=limits, transport=transport, timeout=60) as client:

        async def one(i: int) -> bool:
            r = await client.post(f"{url}/{ENDPOINT}", json=_body(i))
            return r.status_code == 200

        return await _drive(n, concurrency, one)


async def _fal_client(n: int, concurrency: int) -> dict[str, Any]:
    import fal_client

    client = fal_client.AsyncClient(key="bench-id:bench-secret")

    async def one(i: int) -> bool:
        result = await client.run(ENDPOINT, arguments=_body(i))
        return isinstance(result, dict)

    return await _drive(n, concurrency, one)


async def _fal_client_subscribe(n: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """fal-client's own queue loop (submit, poll the status every 0.1 s, get the result)."""
    import fal_client

    client = fal_client.AsyncClient(key="bench-id:bench-secret")
    latencies: list[float] = []

    async def one(i: int) -> bool:
        t0 = time.perf_counter()
        result = await client.subscribe("local/sleep", arguments={"seconds": seconds, "i": i})
        latencies.append(time.perf_counter() - t0)
        return isinstance(result, dict)

    row = await _drive(n, concurrency, one)
    row["latencies"] = [round(x, 4) for x in latencies]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("client", choices=["aiohttp", "httpx", "httpx-aiohttp", "fal-client"])
    parser.add_argument("--url", help="run base URL (ignored by fal-client, which reads FAL_RUN_HOST)")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--subscribe", type=float, metavar="SECONDS",
                        help="fal-client only: queue jobs of local/sleep SECONDS instead of run calls")
    args = parser.parse_args(argv)
    if args.client == "aiohttp":
        coro = _aiohttp(args.url, args.n, args.concurrency)
    elif args.client == "httpx":
        coro = _httpx(args.url, args.n, args.concurrency, aiohttp_transport=False)
    elif args.client == "httpx-aiohttp":
        coro = _httpx(args.url, args.n, args.concurrency, aiohttp_transport=True)
    elif args.subscribe is not None:
        coro = _fal_client_subscribe(args.n, args.concurrency, args.subscribe)
    else:
        coro = _fal_client(args.n, args.concurrency)
    row = asyncio.run(coro)
    row["client"] = args.client
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
