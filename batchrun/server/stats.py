"""Counters the server keeps for tests and benchmarks (GET /_emulator/stats).

`duplicate_submits` counts queue submits whose (endpoint id, arguments) content was already
submitted since the last reset: a client that resubmits after a lost response shows up here.
`tags` counts the X-Fal-Tags cost-attribution tags of runs and submits as "key=value" strings.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from batchrun.server.wire import trim_oldest

OPERATIONS = ("run", "submit", "status", "stream", "result", "cancel", "files")
# The Platform API and storage uploads (platform_api, storage), kept apart from the queue's counts.
SIDE_OPERATIONS = ("platform", "storage_initiate", "storage_put", "storage_part", "storage_complete")
MAX_HASHES = 500_000  # distinct submit contents remembered; the oldest half is forgotten beyond this
MAX_TAGS = 10_000  # distinct tags counted; the oldest half is forgotten beyond this


def parse_tags(raw: str) -> dict[str, str]:
    """X-Fal-Tags as fal reads it (protocol §4.1): comma-separated key=value, split on the first
    "=", trimmed, the last duplicate wins; tags without a key or value, or under the reserved
    "fal." prefix, are dropped (they never fail the request)."""
    tags: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key and value and not key.startswith("fal."):
            tags[key] = value
    return tags


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests: dict[str, int] = dict.fromkeys(OPERATIONS, 0)
        self.apps: dict[str, dict[str, int]] = {}
        self.auth_failures = 0
        self.bad_requests = 0
        self.attempts = 0
        self.retries = 0
        self.rerouted = 0  # requests a model fallback moved to another endpoint
        self.expired_fetches = 0  # media fetched after their lifetime (404)
        self.cancelled = 0
        self.completed = 0
        self.failed = 0
        self._submit_hashes: dict[bytes, int] = {}
        self.duplicate_submits = 0
        self.duplicates: dict[str, int] = {}  # endpoint id -> duplicate submits
        self.tags: dict[str, int] = {}  # "key=value" -> requests carrying it
        self.side: dict[str, int] = dict.fromkeys(SIDE_OPERATIONS, 0)
        self.stored_bytes = 0  # bytes of completed storage uploads

    def count_app(self, app_id: str, operation: str) -> None:
        per_app = self.apps.get(app_id)
        if per_app is None:
            per_app = self.apps[app_id] = {}
        per_app[operation] = per_app.get(operation, 0) + 1

    def note_tags(self, raw: str) -> None:
        for key, value in parse_tags(raw).items():
            tag = f"{key}={value}"
            self.tags[tag] = self.tags.get(tag, 0) + 1
        trim_oldest(self.tags, MAX_TAGS)

    def note_submit(self, endpoint_id: str, arguments: Any) -> None:
        try:  # sorted keys: key order must not make two equal argument dicts look different
            canonical = orjson.dumps([endpoint_id, arguments], option=orjson.OPT_SORT_KEYS)
        except TypeError:  # nesting orjson refuses (non-str keys, too deep, ...)
            canonical = repr((endpoint_id, arguments)).encode()
        digest = hashlib.blake2b(canonical, digest_size=16).digest()
        seen = self._submit_hashes.get(digest, 0)
        self._submit_hashes[digest] = seen + 1
        if seen:
            self.duplicate_submits += 1
            self.duplicates[endpoint_id] = self.duplicates.get(endpoint_id, 0) + 1
        else:
            trim_oldest(self._submit_hashes, MAX_HASHES)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "apps": {name: dict(ops) for name, ops in self.apps.items()},
            "duplicate_submits": self.duplicate_submits,
            "duplicates": dict(self.duplicates),
            "tags": dict(self.tags),
            "auth_failures": self.auth_failures,
            "bad_requests": self.bad_requests,
            "attempts": self.attempts,
            "retries": self.retries,
            "rerouted": self.rerouted,
            "expired_fetches": self.expired_fetches,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "side": dict(self.side),
            "stored_bytes": self.stored_bytes,
        }

