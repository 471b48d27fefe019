"""The result cache: what a hit costs, and whether lookups stay flat as the cache grows.

    python bench/bench_cache.py                 # sizes 1k, 10k, 100k, 1M entries
    python bench/bench_cache.py --sizes 1000,100000 --lookups 20000

For each size the cache file is filled with entries shaped like an image result (~450 bytes of
payload: one image URL, a seed, timings), in batches of 20k per transaction, then measured:

  hit    the whole hit path of a run (batchrun.run.caching.RunCache.lookup: the request's key,
         the SQLite read, the JSON decode; then hit_record: the record as the writer gets it),
         per request, for requests picked at random across the cache
  miss   the same lookup for a request that is not cached (what every sent request pays first)

Each figure is the median and p99 over `--lookups` requests, timed one by one with perf_counter
inside one event loop, plus the CPU time per request over the whole loop (the steadier figure on a
shared machine, where a lost time slice puts 4 ms outliers in the wall-clock p99). The cache
lives in a temporary folder and is deleted afterwards (a 1M-entry file is about 0.65 GB). Prints
one table; `--json PATH` also writes the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from batchrun.output.cachekey import cache_key
from batchrun.output.resultcache import Entry, ResultCache
from batchrun.plan.planner import build_plan
from batchrun.run.caching import RunCache
from batchrun.spec.model import CachePolicy, Job, Spec

BATCH = 20_000
TARGET = "https://queue.fal.run"


def _spec(n: int) -> Spec:
    job = Job(name="gen", endpoint="fal-ai/flux/schnell", matrix={"seed": list(range(n))},
              arguments={"prompt": "a lighthouse at dusk, ${{ matrix.seed }}", "seed": "${{ matrix.seed }}",
                         "image_size": "landscape_4_3"},
              cache=CachePolicy())
    return Spec(version=1, name="bench", jobs=[job], source=Path("bench.yaml"), max_requests=10**9)


def _payload(i: int) -> dict[str, Any]:
    return {
        "result": {"images": [{"url": f"https://v3.fal.media/files/b/{i:012x}.png", "width": 1024, "height": 768,
                               "content_type": "image/png"}], "seed": i, "has_nsfw_concepts": [False],
                   "timings": {"inference": 0.41}},
        "logs": None, "metrics": {"inference_time": 0.41}, "request_id": f"{i:08x}-4b3e-4e38-9200-304cf45b0000",
        "attempts": 1, "latency_s": 0.445, "queue_s": 0.01, "served_from": "runner-1", "inputs": None,
        "artifacts": None, "cost_usd": 0.003, "output": "/home/me/project/outputs/sweep.jsonl",
    }


def _fill(cache: ResultCache, spec: Spec, n: int) -> float:
    t0 = time.perf_counter()
    now = time.time()
    batch: list[tuple[bytes, Entry]] = []
    for request in build_plan(spec):
        key = cache_key(request, TARGET)
        assert key is not None
        batch.append((key, Entry(now, TARGET, request.endpoint, _payload(request.index))))
        if len(batch) == BATCH:
            cache.put_many(batch)
            batch.clear()
    if batch:
        cache.put_many(batch)
    return time.perf_counter() - t0


async def _measure(run: RunCache, requests: list[Any], *, hits: bool) -> tuple[list[float], float]:
    """Wall time per request, and CPU seconds per request over the whole loop (the CPU figure does
    not see the scheduler: on a shared machine a time slice given away shows up as a 4 ms wall outlier)."""
    times = []
    scrub = _identity
    cpu0 = time.process_time()
    for request in requests:
        t0 = time.perf_counter()
        entry = await run.lookup(request)
        if hits:
            assert entry is not None
            run.hit_record(request, entry, started_at=time.time(), t0=time.monotonic(), scrub=scrub, keep_logs=False)
        else:
            assert entry is None
        times.append(time.perf_counter() - t0)
    return times, (time.process_time() - cpu0) / max(1, len(requests))


def _identity(value: Any) -> Any:
    return value


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 4)


def measure(size: int, lookups: int, folder: Path) -> dict[str, Any]:
    spec = _spec(size)
    cache_folder = folder / f"cache-{size}"
    with ResultCache(cache_folder) as cache:
        fill_s = _fill(cache, spec, size)
    db_bytes = sum(p.stat().st_size for p in cache_folder.iterdir() if p.is_file())
    rng = random.Random(size)
    wanted = sorted(rng.sample(range(size), min(lookups, size)))
    picked = {i: None for i in wanted}
    cached = [r for r in build_plan(spec) if r.index in picked]
    rng.shuffle(cached)
    misses = list(itertools.islice(build_plan(_spec(size + lookups)), size, None))  # beyond the filled range
    run = RunCache(spec, {"run": TARGET, "subscribe": TARGET}, folder / "out.jsonl",
                   environ={"BATCHRUN_CACHE_DIR": str(cache_folder)}, warn=print)
    run.open()
    try:
        hit_times, hit_cpu = anyio.run(lambda: _measure(run, cached, hits=True))
        miss_times, miss_cpu = anyio.run(lambda: _measure(run, misses, hits=False))
    finally:
        run.close()
    shutil.rmtree(cache_folder, ignore_errors=True)
    return {
        "entries": size, "fill_s": round(fill_s, 2), "db_mb": round(db_bytes / 1e6, 1),
        "hit_ms": {"p50": _ms(hit_times, 0.5), "p99": _ms(hit_times, 0.99),
                   "mean": round(statistics.fmean(hit_times) * 1000, 4), "cpu": round(hit_cpu * 1000, 4)},
        "miss_ms": {"p50": _ms(miss_times, 0.5), "p99": _ms(miss_times, 0.99), "cpu": round(miss_cpu * 1000, 4)},
        "lookups": len(hit_times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000", help="comma-separated entry counts")
    parser.add_argument("--lookups", type=int, default=20_000, help="requests timed per size (hits, and misses)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="batchrun-bench-cache-") as tmp:
        for size in sizes:
            row = measure(size, args.lookups, Path(tmp))
            rows.append(row)
            print(f"filled {size} entries in {row['fill_s']} s", file=sys.stderr)
    print("| entries | cache file MB | fill s | hit p50 ms | hit p99 ms | hit mean ms | hit CPU ms | "
          "miss p50 ms | miss p99 ms | miss CPU ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        h, m = r["hit_ms"], r["miss_ms"]
        print(f"| {r['entries']:,} | {r['db_mb']} | {r['fill_s']} | {h['p50']} | {h['p99']} | {h['mean']} | "
              f"{h['cpu']} | {m['p50']} | {m['p99']} | {m['cpu']} |")
    worst = max(max(r["hit_ms"]["p50"], r["hit_ms"]["cpu"]) for r in rows)
    flat = rows[-1]["hit_ms"]["p50"] / rows[0]["hit_ms"]["p50"] if rows[0]["hit_ms"]["p50"] else None
    print(f"\nhit p50 and CPU per hit at most {worst} ms (target < 1 ms: {'met' if worst < 1 else 'MISSED'}); "
          f"p50 at {rows[-1]['entries']:,} entries / at {rows[0]['entries']:,}: "
          f"{'n/a' if flat is None else f'{flat:.2f}x'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
