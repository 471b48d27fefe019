"""`--only JOB[,JOB...]` and `--limit N`: run (or show) a part of the plan, for a cheap smoke test.

A selection is a set of plan index ranges, never a different plan: jobs keep their plan indices
and requests their ids, so a later full run on the same output resumes what the smoke test did.
`--limit N` takes the first N planned requests of each selected job (with `--shard`, those of them
that fall in the shard).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator, Mapping

from batchrun.errors import UsageError
from batchrun.spec.model import Spec

__all__ = ["Selection", "select"]


@dataclasses.dataclass(frozen=True, slots=True)
class Selection:
    ranges: tuple[tuple[int, int], ...]  # ascending, disjoint [start, stop) plan index ranges
    jobs: frozenset[str]  # the selected jobs' names
    label: str  # how the command line asked for it, for messages and the manifest

    @property
    def total(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def indices(self) -> Iterator[int]:
        """The selected plan indices, ascending (what `build_plan(only=...)` takes)."""
        for start, stop in self.ranges:
            yield from range(start, stop)


def select(spec: Spec, counts: Mapping[str, int], only: str | None, limit: int | None) -> Selection | None:
    """The selection `--only`/`--limit` ask for (None: the whole plan). `counts`: requests per job
    name in job order (validation's), which give each job's first plan index."""
    if only is None and limit is None:
        return None
    names = [job.name for job in spec.jobs]
    wanted = set(names) if only is None else _parse_only(only, names)
    ranges: list[tuple[int, int]] = []
    start = 0
    for name in names:
        n = counts[name]
        if name in wanted and n:
            ranges.append((start, start + (n if limit is None else min(n, limit))))
        start += n
    parts = ([f"--only {only}"] if only is not None else []) + ([f"--limit {limit}"] if limit is not None else [])
    return Selection(tuple(ranges), frozenset(wanted), " ".join(parts))


def _parse_only(text: str, names: list[str]) -> set[str]:
    wanted = [part.strip() for part in text.split(",")]
    if not all(wanted):
        raise UsageError(f"--only {text!r}: expected job names separated by commas, e.g. --only {names[0]}")
    for name in wanted:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UsageError(f"--only: the spec has no job '{name}'; {hint}its jobs: {', '.join(names)}")
    return set(wanted)
