"""The queue's waiting requests, in order: normal priority before low, FIFO within a priority,
retries back at the front.

They sit in lanes, one per key when there is a concurrency limit (one lane otherwise), ordered
across lanes by `Job.order`: taking the next request looks at each lane's first request only, so
the requests of a key at its limit are never scanned past, however many wait (a scan of the whole
line made two keys' batches quadratic: 8,000 requests each took 2.6 s of dispatch, now 0.3 s).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchrun.server.queue import Job

Lanes = dict[str, collections.deque["Job"]]  # lane name ("" or a key) -> its requests; none empty


class WaitingLine:
    def __init__(self, *, lane_per_key: bool) -> None:
        self.lane_per_key = lane_per_key
        self.normal: Lanes = {}
        self.low: Lanes = {}
        self.per_app: dict[str, int] = {}  # app id -> waiting requests (?fal_max_queue_length)
        self._back = self._front = 0  # the last order given at the back and at the front
        self._version = 0  # bumped whenever the order changes
        self._positions_version = -1  # the version Job.position values were computed for

    def __bool__(self) -> bool:
        return bool(self.normal or self.low)

    def __len__(self) -> int:
        return _count(self.normal) + _count(self.low)

    def add(self, job: Job, *, front: bool = False) -> int:
        """Wait at the back (or at the front: a retry goes ahead of the others); returns the number
        of requests ahead of it when it joined at the back."""
        ahead = _count(self.normal) + (_count(self.low) if job.low else 0)
        lanes, name = self._lanes(job)
        lane = lanes.get(name)
        if lane is None:
            lane = lanes[name] = collections.deque()
        if front:
            self._front -= 1
            job.order = self._front
            lane.appendleft(job)
        else:
            self._back += 1
            job.order = self._back
            lane.append(job)
        job.waiting = True
        self.per_app[job.app_id] = self.per_app.get(job.app_id, 0) + 1
        self._version += 1
        return ahead

    def remove(self, job: Job) -> None:
        lanes, name = self._lanes(job)
        lane = lanes[name]
        if lane[0] is job:
            lane.popleft()
        else:
            lane.remove(job)  # cancelled or timed out while waiting
        if not lane:
            del lanes[name]
        job.waiting = False
        left = self.per_app[job.app_id] - 1
        if left:
            self.per_app[job.app_id] = left
        else:
            del self.per_app[job.app_id]
        self._version += 1

    def take(self, may_start: Callable[[str], bool]) -> Job | None:
        """Take the first request (normal before low) whose key `may_start`: the earliest of the
        lanes' first requests, O(lanes). None when every waiting request is held back."""
        for lanes in (self.normal, self.low):
            first: Job | None = None
            for lane in lanes.values():
                job = lane[0]
                if (first is None or job.order < first.order) and may_start(job.key):
                    first = job
            if first is not None:
                self.remove(first)
                return first
        return None

    def position(self, job: Job) -> int:
        """Requests ahead of a waiting `job` (0-based). All positions are recomputed in one pass
        when the order has changed since the last call, so polling many queued requests costs O(1)
        each rather than a scan per poll."""
        if self._positions_version != self._version:
            index = 0
            for lanes in (self.normal, self.low):
                for waiting in _in_order(lanes):
                    waiting.position = index
                    index += 1
            self._positions_version = self._version
        return job.position

    def _lanes(self, job: Job) -> tuple[Lanes, str]:
        """The lanes of the job's priority, and the name of its lane among them."""
        return self.low if job.low else self.normal, job.key if self.lane_per_key else ""


def _in_order(lanes: Lanes) -> Iterable[Job]:
    if len(lanes) <= 1:
        return itertools.chain.from_iterable(lanes.values())
    return sorted(itertools.chain.from_iterable(lanes.values()), key=_order)


def _order(job: Job) -> int:
    return job.order


def _count(lanes: Lanes) -> int:
    return sum(map(len, lanes.values()))
