"""Benchmark of the embedded server (not a test): run-mode throughput and memory under the queue.

    python bench/bench_server.py [--requests 20000] [--concurrency 64] [--queue-requests 100000]

Starts `batchrun serve` in its own process (uvicorn with httptools, uvloop when installed), then:
1. local/echo direct runs from a bare aiohttp client with --concurrency requests in flight;
   prints requests/s (goal: >= 1500 on 2 cores);
2. --rounds times --queue-requests submits to local/echo (same concurrency), waiting until the
   queue drains, printing the server's RSS after each round: it plateaus once max_results
   (100,000 by default) results are stored, because older ones are then forgotten.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def hammer(url: str, total: int, concurrency: int) -> tuple[float, int]:
    """POST `total` echo requests, `concurrency` at a time; returns (seconds, failures)."""
    failures = 0
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal failures
            for i in counter:
                async with session.post(url, json={"i": i}) as response:
                    await response.read()
                    failures += response.status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, failures


async def drain(origin: str) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(origin + "/_emulator/stats") as response:
                stats = await response.json()
            if stats["queue_length"] == 0 and stats["runners_busy"] == 0:
                return
            await asyncio.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--queue-requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="queue rounds; RSS should plateau (default: 2)")
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, "-m", "batchrun", "serve", "--port", "0", "--runners", "2"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None
        run_url = server.stdout.readline().split(": ", 1)[1].strip()
        queue_url = server.stdout.readline().split(": ", 1)[1].strip()
        origin = run_url[: -len("/run")]
        print(f"server pid {server.pid} at {origin}; {os.cpu_count()} CPUs")
        asyncio.run(hammer(run_url + "/local/echo", 2_000, args.concurrency))  # warm-up
        seconds, failures = asyncio.run(hammer(run_url + "/local/echo", args.requests, args.concurrency))
        print(f"run mode: {args.requests} local/echo requests, {args.concurrency} concurrent: "
              f"{args.requests / seconds:,.0f} requests/s ({failures} failures)")  # fmt: skip
        print(f"server RSS before the queue rounds: {rss_mb(server.pid):.0f} MB")
        for round_ in range(1, args.rounds + 1):
            seconds, failures = asyncio.run(hammer(queue_url + "/local/echo", args.queue_requests, args.concurrency))
            asyncio.run(drain(origin))
            print(f"queue round {round_}: {args.queue_requests} submits in {seconds:.1f} s "
                  f"({args.queue_requests / seconds:,.0f}/s, {failures} failures); "
                  f"server RSS {rss_mb(server.pid):.0f} MB")  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
