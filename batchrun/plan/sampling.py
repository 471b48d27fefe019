"""Seeded sampling: `sample: {n, seed}` on a job, `--sample N --seed S` on `plan` and `run`.

A job's sample is the n of its requests whose rank, the first 8 bytes of
sha256("<seed>:<request id>") as a big-endian integer, is lowest (ties, only possible between
identical ids, go to the earlier request), yielded in plan order. So:

- the same spec and seed give the same requests in any process, machine or Python version (no
  hash(), no `random`, whose algorithms Python does not promise to keep);
- the requests are the full plan's own (same ids), so a sampled run and a full run on one output
  resume into each other;
- edits move a sample little: a request stays in it unless a new request ranks lower, and the
  sample of n + 1 is the sample of n plus one request.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from typing import Protocol, TypeVar

from batchrun.errors import UsageError

__all__ = ["check_sample", "choose", "rank"]


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_HasId)


def check_sample(n: object, seed: object) -> None:
    """The checks `--sample N --seed S` get from argparse, for values given from Python."""
    for name, value, least in (("sample", n, 1), ("seed", seed, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise UsageError(f"{name}: expected a whole number of at least {least}, got {value!r}")
    if n is None and seed is not None:
        raise UsageError("seed goes with sample (it is the sample's seed)")


def rank(seed: int, request_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{request_id}".encode()).digest()[:8], "big")


def choose(requests: Iterable[R], n: int, seed: int) -> list[R]:
    """The sample of `requests` (one walk, n kept in memory), in their order."""
    heap: list[tuple[int, int, int]] = []  # (-rank, -position, position): the worst kept is heap[0]
    kept: dict[int, R] = {}
    for position, request in enumerate(requests):
        key = (-rank(seed, request.id), -position, position)
        if len(heap) < n:
            heapq.heappush(heap, key)
            kept[position] = request
        elif key > heap[0]:
            _, _, dropped = heapq.heapreplace(heap, key)
            del kept[dropped]
            kept[position] = request
    return [kept[p] for p in sorted(kept)]
