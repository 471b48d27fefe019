"""The result cache in a run: look a request up before sending it, store its ok record after.

A hit never takes a concurrency slot, a rate-limit token or budget: it becomes a normal record
(written, counted, gated, resumed like any other) with

    cached: {obtained_at, target, output, latency_s}

(when, from which base URL and into which output the result was first obtained, and how long it
took then), `attempts: 0`, this run's timing, and its artifacts linked from the cache's files by
content hash rather than downloaded again. The toolkit evaluates `expect` afresh on it (with the
original latency) and prices it at 0 (what it would have cost is counted as saved).

Stored: records with status ok of jobs with `cache`, unless served from the cache themselves;
never errors. `--refresh-cache` sends everything and replaces the entries; `--no-cache` neither
reads nor writes. A put that fails (a full disk, a locked file past the busy timeout) is one
warning and the run goes on without storing: the cache must never cost a result.
The store and the key: batchrun.output.resultcache, batchrun.output.cachekey.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from batchrun.client.target import Endpoints, fal_hosts
from batchrun.errors import BatchrunError
from batchrun.output.cachekey import FileDigests, cache_key, has_file_refs
from batchrun.output.records import build_record, isoformat
from batchrun.output.resultcache import Entry, ResultCache, cache_dir
from batchrun.plan.planner import PlannedRequest
from batchrun.plan.pricing import request_cost
from batchrun.spec.model import Spec, Target
from batchrun.toolkit.artifacts import files_dir

__all__ = ["HitCount", "RunCache", "count_hits", "spec_bases", "target_bases"]

LOCAL = "local"  # the embedded server's identity in keys: its URLs change with every run


def target_bases(kind: str, endpoints: Endpoints | None) -> dict[str, str]:
    """Mode -> the base URL keys use (see batchrun.output.cachekey)."""
    if kind == "local" or endpoints is None:
        return {"run": LOCAL, "subscribe": LOCAL}
    return {"run": endpoints.run_url, "subscribe": endpoints.queue_url}


class _HitOutcome:
    """A cached entry in the shape build_record reads (batchrun.output.records.OutcomeLike)."""

    ok = True
    error: Any = None
    attempts = 0  # nothing was sent

    def __init__(self, data: dict[str, Any]) -> None:
        self.result = data.get("result")
        self.request_id = data.get("request_id")
        self.logs = data.get("logs")
        self.metrics = data.get("metrics")
        self.queue_s: float | None = None  # this run waited in no queue
        self.served_from = data.get("served_from")
        self.inputs = data.get("inputs")


class RunCache:
    """One run's view of the result caches its jobs use (one per scope). Open before the run,
    close after; `lookup` in the workers, `store` in the writer."""

    def __init__(self, spec: Spec, bases: Mapping[str, str], output: Path, *, refresh: bool = False,
                 environ: Mapping[str, str], warn: Callable[[str], None]) -> None:
        self.bases = dict(bases)
        self.output = output
        self.refresh = refresh
        self.warn = warn
        self.caches: dict[str, ResultCache] = {}
        for scope in sorted({j.cache.scope for j in spec.jobs if j.cache is not None}):
            self.caches[scope] = ResultCache(cache_dir(scope, environ))
        self._scopes = {j.name: j.cache.scope for j in spec.jobs if j.cache is not None}
        self.files = FileDigests()
        self._keys: dict[str, bytes] = {}  # request id -> key, from the worker's lookup to the writer's store
        self.hits = 0
        self.stored = 0
        self._broken: set[str] = set()  # scopes whose puts failed: warned once, not retried

    @property
    def enabled(self) -> bool:
        return bool(self.caches)

    def open(self) -> None:
        """Open each scope's cache; one that cannot be opened (a read-only folder, a newer format)
        is a warning and the run goes on without it."""
        for scope, cache in self.caches.items():
            try:
                cache.open()
            except BatchrunError as exc:
                self._failed(scope, str(exc))

    def close(self) -> None:
        for cache in self.caches.values():
            cache.close()

    async def lookup(self, request: PlannedRequest) -> Entry | None:
        """The cached entry for `request` (None: not cacheable, not cached, expired, or --refresh-cache)."""
        policy = request.job.cache
        if policy is None or policy.scope in self._broken:
            return None
        target = self.bases[request.mode]
        if has_file_refs(request.arguments):  # reads and hashes files: off the event loop
            key = await anyio.to_thread.run_sync(cache_key, request, target, self.files)
        else:
            key = cache_key(request, target)
        if key is None:
            return None
        self._keys[request.id] = key
        if self.refresh:
            return None
        try:
            entry = self.caches[policy.scope].get(key, max_age_s=policy.ttl_s)
        except sqlite3.Error as exc:
            self._failed(policy.scope, f"cannot read the result cache: {exc}")
            return None
        if entry is None or entry.target != target:
            return None
        expires = entry.data.get("media_expires_at")
        if isinstance(expires, (int, float)) and time.time() >= expires:
            return None  # fal has deleted its media (media_lifetime), and no copy was downloaded
        if request.job.download and not await anyio.to_thread.run_sync(self._place_artifacts, policy.scope, entry):
            return None  # its files were pruned: send it again, as if never cached
        return entry

    def hit_record(self, request: PlannedRequest, entry: Entry, *, started_at: float, t0: float,
                   scrub: Callable[[Any], Any], keep_logs: bool | None) -> dict[str, Any]:
        """The record of a hit (the toolkit then enriches it like any other)."""
        self._keys.pop(request.id, None)  # a hit is not stored again
        data = entry.data
        record = build_record(request, _HitOutcome(data), started_at=started_at, finished_at=time.time(),
                              latency_s=time.monotonic() - t0, scrub=scrub, keep_logs=keep_logs)
        record["cached"] = {
            "obtained_at": isoformat(entry.created),
            "target": entry.target,
            "output": data.get("output"),
            "latency_s": data.get("latency_s"),
        }
        if request.job.download and data.get("artifacts") is not None:
            record["artifacts"] = [self._artifact_here(a) for a in data["artifacts"]]
        self.hits += 1
        return record

    def store(self, record: dict[str, Any]) -> None:
        """In the writer, once `record` is written: cache it when it is an ok result of a cached job."""
        key = self._keys.pop(record["id"], None)
        if key is None or record["status"] != "ok" or "cached" in record or "rerouted_to" in record:
            return  # (a rerouted result is another endpoint's answer, not this request's)
        job_scope = self._scopes.get(record["job"])
        if job_scope is None or job_scope in self._broken:
            return
        cache = self.caches[job_scope]
        artifacts = record.get("artifacts")
        kept: list[dict[str, Any]] | None = None
        if artifacts is not None:
            kept = []
            for a in artifacts:
                a = dict(a)
                if a.get("path") and a.get("sha256"):
                    name = Path(a["path"]).name
                    if not cache.keep_file(self.output.parent / a["path"], name):
                        return  # a result whose files the cache cannot keep is not cached
                    a["cache_file"] = name
                kept.append(a)
        timing = record["timing"]
        data = {
            "result": record["result"], "logs": record.get("logs"), "metrics": record.get("metrics"),
            "request_id": record.get("request_id"), "attempts": record.get("attempts"),
            "latency_s": timing.get("latency_s"), "queue_s": timing.get("queue_s"),
            "served_from": record.get("served_from"), "inputs": record.get("inputs"),
            "artifacts": kept, "cost_usd": record.get("cost_usd"), "output": os.path.abspath(self.output),
        }
        lifetime = (record.get("asked") or {}).get("media_lifetime_s")
        now = time.time()
        if isinstance(lifetime, int) and kept is None:
            data["media_expires_at"] = now + lifetime  # its result's URLs die then (media_lifetime)
        target = self.bases[record["mode"]]
        try:
            cache.put(key, Entry(now, target, record["endpoint"], data))
        except sqlite3.Error as exc:
            self._failed(job_scope, f"cannot store in the result cache: {exc}")
            return
        self.stored += 1

    def _failed(self, scope: str, message: str) -> None:
        if scope not in self._broken:
            self._broken.add(scope)
            self.warn(f"batchrun: warning: {message} ({self.caches[scope].path}); the run goes on without "
                      "the result cache")

    def _place_artifacts(self, scope: str, entry: Entry) -> bool:
        """Link a hit's artifact files into this output's files/ folder; False if one is gone."""
        artifacts = entry.data.get("artifacts")
        if artifacts is None:
            return True  # first obtained without download: the toolkit downloads its media now
        cache = self.caches[scope]
        here = files_dir(self.output)
        return all(cache.place_file(a["cache_file"], here / a["cache_file"])
                   for a in artifacts if isinstance(a, dict) and a.get("cache_file"))

    def _artifact_here(self, artifact: dict[str, Any]) -> dict[str, Any]:
        a = {k: v for k, v in artifact.items() if k != "cache_file"}
        name = artifact.get("cache_file")
        if name:
            a["path"] = os.path.relpath(files_dir(self.output) / name, self.output.parent)
        return a


def spec_bases(target: Target, environ: Mapping[str, str]) -> dict[str, str]:
    """target_bases for a spec's target without resolving its key (`plan --count` sends nothing):
    the same URLs batchrun.client.target.resolve_target gives a run."""
    if target.kind == "local":
        return target_bases("local", None)
    if target.kind == "fal":
        run_host, queue_host = fal_hosts(environ)
        run, queue = target.run_url or f"https://{run_host}", target.queue_url or f"https://{queue_host}"
    else:
        run, queue = target.run_url or "", target.queue_url or ""
    return {"run": run.rstrip("/"), "subscribe": queue.rstrip("/")}


@dataclasses.dataclass(slots=True)
class HitCount:
    hits: int = 0
    uncacheable: int = 0  # requests using ${{ env.X }} (or an unreadable file): always sent
    saved_usd: float | None = 0.0  # the hits' price (None: unknown, or no pricing)


def count_hits(spec: Spec, requests: Iterable[PlannedRequest], bases: Mapping[str, str],
               environ: Mapping[str, str]) -> dict[str, HitCount]:
    """What `batchrun run` would serve from the cache, per job of `spec` with `cache` (before the
    run: a resume sends only what its output lacks, and each of those is looked up the same way)."""
    counts = {j.name: HitCount(saved_usd=0.0 if spec.pricing else None) for j in spec.jobs if j.cache is not None}
    if not counts:
        return counts
    caches: dict[str, ResultCache] = {}
    for scope in {j.cache.scope for j in spec.jobs if j.cache is not None}:
        found = ResultCache(cache_dir(scope, environ))
        if found.exists():  # nothing cached yet: no hits, and no folder created by a dry run
            found.open()
            caches[scope] = found
    files = FileDigests()
    try:
        for request in requests:
            policy = request.job.cache
            if policy is None:
                continue
            count = counts[request.job.name]
            target = bases[request.mode]
            key = cache_key(request, target, files)
            if key is None:
                count.uncacheable += 1
                continue
            cache = caches.get(policy.scope)
            entry = None if cache is None else cache.get(key, max_age_s=policy.ttl_s)
            if entry is None or entry.target != target:
                continue
            count.hits += 1
            if count.saved_usd is not None:
                cost = request_cost(spec.pricing, request)
                count.saved_usd = None if cost is None else count.saved_usd + cost
    finally:
        for cache in caches.values():
            cache.close()
    return counts
