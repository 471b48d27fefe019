"""The plan's ids beside the output (`<output>.plan-ids`), to tell a resume what changed in the spec.

The file holds the sorted ids, one per line. It is collected while the run walks the plan anyway
(no extra walk: plan walks dominate a 1M-request start), as 64-bit integers in an `array('Q')`
(8 bytes an id: 8 MB for a million) when every id is the planner's 16 hex digits, else as strings.
Comparing two plans is a merge of two sorted sequences: no set of a million strings is built.
"""

from __future__ import annotations

import array
import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

from batchrun.plan.planner import PlannedRequest

__all__ = ["LISTED", "PlanChange", "PlanIds", "compare", "parse_ids", "plan_ids_path", "read_ids"]

LISTED = 10  # ids named in the changed-plan message, of each kind

# Sorted ids: 64-bit integers when every id is 16 hex digits, else strings.
Ids: TypeAlias = "array.array[int] | list[str]"


def plan_ids_path(output: Path) -> Path:
    return output.with_name(output.name + ".plan-ids")


_is_hex16 = re.compile(r"[0-9a-f]{16}").fullmatch


class PlanIds:
    """Collects ids from a plan walk (`wrap`); `complete` once the walk reached the plan's end."""

    def __init__(self) -> None:
        self._ints: array.array[int] | None = array.array("Q")
        self._strs: list[str] = []
        self.complete = False

    def wrap(self, plan: Iterable[PlannedRequest]) -> Iterator[PlannedRequest]:
        for request in plan:
            self.add(request.id)
            yield request
        self.complete = True

    def add(self, rid: str) -> None:
        if self._ints is not None and _is_hex16(rid):
            self._ints.append(int(rid, 16))
            return
        if self._ints is not None:  # an id that is not 16 hex digits: keep strings from now on
            self._strs = [format(x, "016x") for x in self._ints]
            self._ints = None
        self._strs.append(rid)

    def __len__(self) -> int:
        return len(self._ints) if self._ints is not None else len(self._strs)

    def sorted_ids(self) -> Ids:
        if self._ints is not None:
            return _sorted_q(self._ints)
        return sorted(self._strs)

    def write(self, path: Path) -> str:
        """Write the sorted ids atomically; return the sha256 of the file (the plan's digest)."""
        ids = self.sorted_ids()
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                for start in range(0, len(ids), 65536):  # in slices: no million-string list at once
                    chunk = "".join(f"{_text(x)}\n" for x in ids[start:start + 65536]).encode()
                    digest.update(chunk)
                    f.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()


def _sorted_q(values: array.array[int]) -> array.array[int]:
    """`values` sorted, one bucket (by the top 8 bits) at a time: sorted() of the whole array would
    hold a Python int per id at once (~40 MB for a million, the largest item of a resume's peak)."""
    buckets = [array.array("Q") for _ in range(256)]
    for value in values:
        buckets[value >> 56].append(value)
    out = array.array("Q")
    for i, bucket in enumerate(buckets):
        out.extend(sorted(bucket))
        buckets[i] = array.array("Q")  # free it now
    return out


def _text(rid: int | str) -> str:
    return rid if isinstance(rid, str) else format(rid, "016x")


def read_ids(path: Path) -> bytes | None:
    """The raw `.plan-ids` file of an earlier run, or None when there is none to read."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def parse_ids(data: bytes) -> Ids:
    """Sorted ids from a `.plan-ids` file's bytes."""
    lines = [line for line in data.decode("utf-8", "replace").split("\n") if line]
    if all(_is_hex16(line) for line in lines):
        return array.array("Q", sorted(int(line, 16) for line in lines))
    return sorted(lines)


class PlanChange:
    """Ids added to and removed from the plan: counts, and the first LISTED of each."""

    def __init__(self) -> None:
        self.added = 0
        self.removed = 0
        self.added_ids: list[str] = []
        self.removed_ids: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def message(self, output: Path) -> str:
        def part(n: int, ids: list[str], verb: str) -> str:
            more = f", ... {n - len(ids)} more" if n > len(ids) else ""
            return f"{n} plan ids {verb}" + (f" ({', '.join(ids)}{more})" if ids else "")

        return (f"batchrun: the plan changed since {output} was started: "
                f"{part(self.added, self.added_ids, 'added')}, {part(self.removed, self.removed_ids, 'removed')}; "
                "only ids in the current plan run (records of removed ids stay in the output, not re-run)")


def compare(old: Ids, new: Ids) -> PlanChange:
    """Merge two sorted id sequences."""
    change = PlanChange()
    if isinstance(old, array.array) != isinstance(new, array.array):
        old, new = sorted(map(_text, old)), sorted(map(_text, new))
    i = j = 0
    while i < len(old) or j < len(new):
        if j == len(new) or (i < len(old) and old[i] < new[j]):  # type: ignore[operator]  # same kind: both arrays or both lists
            change.removed += 1
            if len(change.removed_ids) < LISTED:
                change.removed_ids.append(_text(old[i]))
            i += 1
        elif i == len(old) or new[j] < old[i]:  # type: ignore[operator]  # same kind: both arrays or both lists
            change.added += 1
            if len(change.added_ids) < LISTED:
                change.added_ids.append(_text(new[j]))
            j += 1
        else:
            i += 1
            j += 1
    return change
