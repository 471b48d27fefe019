"""Run mode: N direct calls to local/echo at concurrency C, batchrun against the other clients.

    python bench/bench_run_mode.py [--n 3000] [--concurrency 64] [--rounds 2] [--scheme https|http|both]

One server process per scheme (`batchrun serve`), every client in its own process, same N and C:
  batchrun       the real `batchrun run` pipeline (plan -> workers -> JSONL writer, progress off);
                 rps from its records (first start to last finish), and from the process's wall
                 time including start-up ("rps_wall")
  fal-client     AsyncClient.run + asyncio.gather + a semaphore (https only: it hard-codes https)
  httpx          bare httpx.AsyncClient, default transport
  httpx-aiohttp  httpx.AsyncClient over the httpx-aiohttp transport (batchrun sends its httpx.Requests
                 through that transport directly, without AsyncClient)
  aiohttp        a bare aiohttp loop
Each round runs every client once, in a rotated order; a client's figure is its best round (the
machine is shared, so the best round is the least disturbed one). CPU ms per request (user + sys
of the client process, start-up included) is reported too: it does not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import harness

CLIENTS = ("batchrun", "fal-client", "httpx", "httpx-aiohttp", "aiohttp")


def _batchrun(server: harness.Server, workdir: Path, n: int, concurrency: int, tag: str) -> dict[str, Any]:
    spec = harness.write_spec(workdir / f"run-{tag}.json", endpoint="local/echo", mode="run", repeat=n,
                              arguments={"prompt": "a lighthouse at dusk", "seed": "${{ repeat }}"},
                              concurrency=concurrency)
    out = workdir / f"run-{tag}.jsonl"
    for stale in (out, out.with_name(out.name + ".journal")):
        stale.unlink(missing_ok=True)
    child = harness.run_child(harness.batchrun_cmd(spec, out, server, concurrency), env=server.client_env())
    records = harness.read_records(out) if out.exists() else []
    ok = sum(r["status"] == "ok" for r in records)
    if child.returncode != 0 or ok != n:
        raise RuntimeError(f"batchrun run failed (exit {child.returncode}, {ok}/{n} ok): {child.stderr[-2000:]}")
    span = harness.records_span(records)
    return {"n": n, "ok": ok, "seconds": round(span, 4), "rps": round(n / span, 1),
            "rps_wall": round(n / child.wall_s, 1), "cpu_ms_per_req": round(1000 * child.cpu_s / n, 3),
            "peak_rss_mb": round(child.peak_rss_mb, 1)}


def _other(client: str, server: harness.Server, n: int, concurrency: int) -> dict[str, Any]:
    cmd = [sys.executable, str(harness.BENCH_DIR / "clients.py"), client, "--url", server.run_url,
           "--n", str(n), "--concurrency", str(concurrency)]
    child = harness.run_child(cmd, env=server.client_env())
    if child.returncode != 0:
        raise RuntimeError(f"{client} failed (exit {child.returncode}): {child.stderr[-2000:]}")
    row: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    if row["ok"] != n:
        raise RuntimeError(f"{client}: only {row['ok']} of {n} requests succeeded")
    row["cpu_ms_per_req"] = round(1000 * child.cpu_s / n, 3)
    row["peak_rss_mb"] = round(child.peak_rss_mb, 1)
    return row


def bench_scheme(workdir: Path, *, tls: bool, n: int, concurrency: int, rounds: int,
                 clients: tuple[str, ...] = CLIENTS) -> dict[str, dict[str, Any]]:
    """Best round per client on one server (https or http)."""
    if not tls:
        clients = tuple(c for c in clients if c != "fal-client")  # it only speaks https
    best: dict[str, dict[str, Any]] = {}
    scheme = "https" if tls else "http"
    with harness.server(workdir, runners=4, tls=tls) as srv:
        for r in range(rounds):
            order = clients[r % len(clients):] + clients[: r % len(clients)]
            for client in order:
                if client == "batchrun":
                    row = _batchrun(srv, workdir, n, concurrency, f"{scheme}-{r}")
                else:
                    row = _other(client, srv, n, concurrency)
                print(f"  run mode {scheme} round {r + 1}: {client:14s} {row['rps']:8.1f} req/s "
                      f"({row['cpu_ms_per_req']:.2f} ms CPU/req)", file=sys.stderr, flush=True)
                if client not in best or row["rps"] > best[client]["rps"]:
                    best[client] = {**row, "round": r + 1}
    return best


def ratios(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    out = {}
    mine = rows["batchrun"]["rps"]
    for other in ("fal-client", "httpx", "httpx-aiohttp", "aiohttp"):
        if other in rows:
            out[f"batchrun/{other}"] = round(mine / rows[other]["rps"], 2)
    return out


def bench(workdir: Path, *, n: int, concurrency: int, rounds: int, scheme: str) -> dict[str, Any]:
    result: dict[str, Any] = {"n": n, "concurrency": concurrency, "rounds": rounds}
    for name, tls in (("https", True), ("http", False)):
        if scheme in (name, "both"):
            rows = bench_scheme(workdir, tls=tls, n=n, concurrency=concurrency, rounds=rounds)
            result[name] = {"rows": rows, "ratios": ratios(rows)}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scheme", choices=("https", "http", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        result = bench(Path(tmp), n=args.n, concurrency=args.concurrency, rounds=args.rounds, scheme=args.scheme)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
