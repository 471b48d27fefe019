"""fal's account concurrency limit, per key (protocol §8.1): at most `limit` requests of one
Authorization key IN_PROGRESS at once, direct runs and queue attempts together. Over it a direct
run is refused with 429 and a queued request waits; without a limit nothing is refused, but the
in-progress count and its peak are still kept, so a test can see how far a client pushed.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from batchrun.server.wire import Reply, platform_error


def key_of(headers: Headers) -> str:
    """Whose budget a request spends: its Authorization header ("" without one). Kept only in
    memory and never reported, since it holds the caller's secret."""
    return headers.get("authorization", "")


class KeyLimits:
    __slots__ = ("limit", "active", "peak", "refused")

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.limit = limit
        self.active: dict[str, int] = {}  # key -> requests in progress; keys at 0 are dropped
        self.peak = 0  # the most requests one key had in progress at once
        self.refused = 0  # direct runs answered 429 by the limit

    def has_room(self, key: str) -> bool:
        return self.limit is None or self.active.get(key, 0) < self.limit

    def take(self, key: str) -> None:
        count = self.active.get(key, 0) + 1
        self.active[key] = count
        if count > self.peak:
            self.peak = count

    def give(self, key: str) -> None:
        count = self.active[key] - 1
        if count:
            self.active[key] = count
        else:
            del self.active[key]

    def refuse(self) -> Reply:
        """fal's answer to a direct run over the limit (Retry-After is not documented, so none)."""
        self.refused += 1
        return platform_error(
            "concurrent_requests_limit",
            f"Concurrent requests limit exceeded: {self.limit} requests of this key are in progress",
            429,
            (("x-fal-needs-retry", "1"),),
        )

    def snapshot(self) -> dict[str, int | None]:
        return {"limit": self.limit, "in_progress": sum(self.active.values()), "peak": self.peak,
                "refused": self.refused}  # fmt: skip

    def reset(self) -> None:
        """Counters only: requests still in progress keep their slots."""
        self.peak = max(self.active.values(), default=0)
        self.refused = 0
