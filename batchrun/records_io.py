"""Reading finished output files (one JSON record per line) for report, diff and merge.

Streaming: one line in memory at a time. A run killed mid-write leaves a truncated last line; that
line is skipped with a warning. A broken line anywhere else means the file is damaged: it is a
located error `FILE:LINE: invalid JSON`, never a silent skip. (The executor keeps its own resume
scanner; this reader is for outputs that are done.)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from batchrun.errors import BatchrunError

log = logging.getLogger(__name__)


class RecordsError(BatchrunError):
    """An output file that cannot be read: missing, unreadable, or a damaged line (exit 2)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """One record with where it came from: merge re-reads the exact bytes by offset."""

    record: dict[str, Any]
    offset: int  # byte offset of the line's start


def iter_located(path: str | Path) -> Iterator[Located]:
    """Every record of one output file, in file order, with its location.

    Raises:
        RecordsError: the file cannot be opened, or a line other than the last is not a record.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise RecordsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        pending: tuple[int, bytes] | None = None  # a bad line, fatal unless it is the last
        offset = 0
        for number, raw_line in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw_line)
            raw = raw_line.rstrip(b"\r\n")
            if pending is not None:
                _raise_bad(path, *pending)
            if not raw.strip():
                continue
            record = _decode(raw)
            if record is None:
                pending = (number, raw)
                continue
            problem = _shape_problem(record)
            if problem:
                raise RecordsError(f"{path}:{number}: not a batchrun record: {problem}")
            yield Located(record, start)
        if pending is not None:
            number = pending[0]
            log.warning("%s:%d: skipping a truncated last line (the run was stopped mid-write)", path, number)


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Every record of one output file, in file order (see `iter_located`)."""
    for located in iter_located(path):
        yield located.record


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # a damaged line may nest absurdly
        return None
    return value if isinstance(value, dict) else None


def _raise_bad(path: Path, number: int, raw: bytes) -> None:
    try:
        json.loads(raw)
    except UnicodeDecodeError:
        raise RecordsError(f"{path}:{number}: invalid JSON (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise RecordsError(f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RecordsError(f"{path}:{number}: invalid JSON (nested too deeply)") from None
    raise RecordsError(f"{path}:{number}: not a batchrun record: a record is a JSON object")


def _shape_problem(record: dict[str, Any]) -> str | None:
    """The few fields every consumer relies on; the full schema is the writer's contract."""
    if not isinstance(record.get("id"), str) or not record["id"]:
        return "'id' must be a non-empty string"
    index = record.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return "'index' must be a non-negative integer"
    if not isinstance(record.get("job"), str):
        return "'job' must be a string"
    if record.get("status") not in ("ok", "error"):
        return "'status' must be \"ok\" or \"error\""
    timing = record.get("timing")
    if timing is not None and not isinstance(timing, dict):
        return "'timing' must be an object"
    return None


def finished_at(record: dict[str, Any]) -> datetime | None:
    """When the record's request finished (aware datetime), None when absent or unparsable."""
    return parse_time((record.get("timing") or {}).get("finished_at"))


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (naive ones are taken as UTC); None if invalid."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)



def newest_per_id(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per id: the one that finished last; on a tie (or no time), the later line.

    A resumed run appends a fresh record for a retried id, so the newest is the id's final state.
    The dict keeps first-seen order of ids.
    """
    best: dict[str, dict[str, Any]] = {}
    best_time: dict[str, datetime | None] = {}
    for record in records:
        rid = record["id"]
        when = finished_at(record)
        if rid not in best or _not_older(when, best_time[rid]):
            best[rid] = record
            best_time[rid] = when
    return best


def _not_older(when: datetime | None, than: datetime | None) -> bool:
    if when is None or than is None:
        return when is not None or than is None  # a timed record beats an untimed one
    return when >= than
