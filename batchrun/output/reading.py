"""Reading finished output files (one JSON record per line) for report, diff and merge.

Streaming: one line in memory at a time. A run killed mid-write leaves a truncated last line; that
line is skipped with a warning. A broken line anywhere else means the file is damaged: it is a
located error `FILE:LINE: invalid JSON`, never a silent skip. (The executor keeps its own resume
scanner; this reader is for outputs that are done.)

It also says what a record means where every command must agree: which record of an id is its
final state (`Newest`) and whether a record failed an expectation (`failed_checks`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from batchrun.errors import BatchrunError

log = logging.getLogger(__name__)
T = TypeVar("T")


class RecordsError(BatchrunError):
    """An output file that cannot be read: missing, unreadable, or a damaged line (exit 2)."""

    exit_code = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Located:
    """One record with where it came from: merge re-reads the exact bytes by offset."""

    record: dict[str, Any]
    offset: int  # byte offset of the line's start


def iter_located(path: str | Path, name: str | None = None) -> Iterator[Located]:
    """Every record of one output file, in file order, with its location. `name`: what messages
    call the file (a `seekable` copy is named for what the user gave).

    Raises:
        RecordsError: the file cannot be opened, or a line other than the last is not a record.
    """
    with open_output(path) as handle:
        path = Path(name) if name is not None else Path(path)
        pending: tuple[int, bytes] | None = None  # a bad line, fatal unless it is the last
        offset = 0
        for number, raw_line in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw_line)
            raw = raw_line.rstrip(b"\r\n")
            if pending is not None:
                _raise_bad(path, *pending)
            if not raw.strip():
                continue
            record = decode_line(raw)
            if record is None:
                pending = (number, raw)
                continue
            problem = shape_problem(record)
            if problem:
                raise RecordsError(f"{path}:{number}: not a batchrun record: {problem}")
            yield Located(record, start)
        if pending is not None:
            number = pending[0]
            log.warning("%s:%d: skipping a truncated last line (the run was stopped mid-write)", path, number)


@contextlib.contextmanager
def seekable(path: str | Path) -> Iterator[Path]:
    """`path` itself when it is a regular file (or missing: opening it will say so); otherwise (a
    pipe, as in `batchrun diff old.jsonl <(zcat new.jsonl.gz)`) a temporary copy of what it holds,
    removed afterwards. For readers that come back to records by offset (diff, merge).

    Raises:
        RecordsError: it cannot be read.
    """
    path = Path(path)
    if path.is_file() or not path.exists():
        yield path
        return
    with open_output(path) as source, tempfile.NamedTemporaryFile(prefix="batchrun-", suffix=".jsonl") as copy:
        try:
            shutil.copyfileobj(source, copy)
            copy.flush()
        except OSError as exc:
            raise RecordsError(f"{path}: cannot copy it to a temporary file: {exc.strerror or exc}") from None
        yield Path(copy.name)


def open_output(path: str | Path) -> IO[bytes]:
    """An output file opened for reading (binary).

    Raises:
        RecordsError: it cannot be opened.
    """
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise RecordsError(f"{path}: cannot read: {exc.strerror or exc}") from None


def record_at(handle: IO[bytes], offset: int) -> dict[str, Any]:
    """The record whose line starts at `offset` of an output that `iter_located` has read (second
    passes re-read the few records they need instead of keeping every record in memory).

    Raises:
        RecordsError: the line there is no longer a record (the file changed between the passes).
    """
    handle.seek(offset)
    record = decode_line(handle.readline().rstrip(b"\r\n"))
    if record is None or shape_problem(record):
        raise RecordsError(f"{handle.name}: changed while being read (no record at byte {offset} any more)")
    return record


def decode_line(raw: bytes) -> dict[str, Any] | None:
    """One output line as a JSON object; None when it is not one (damaged, truncated, not JSON)."""
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


def shape_problem(record: dict[str, Any]) -> str | None:
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


def expectation_checks(record: dict[str, Any]) -> list[Any]:
    """The record's expectation checks as a list: [] when `expectations` is absent or null; a
    value that is not a list (hand-edited) is taken as one check."""
    checks = record.get("expectations")
    if checks is None:
        return []
    return checks if isinstance(checks, list) else [checks]


def check_passed(check: Any) -> bool:
    """A check passed only when it is an object whose `passed` is exactly `true`."""
    return isinstance(check, dict) and check.get("passed") is True


def failed_expectation(record: dict[str, Any]) -> bool:
    """Whether the record failed an expectation: `bool(failed_checks(record))`, without the messages
    (resume calls it on every line of a possibly huge output)."""
    if record.get("expectations") is None:  # the common case, kept cheap for resume's 1M-line scans
        return False
    return any(not check_passed(check) for check in expectation_checks(record))


def failed_checks(record: dict[str, Any]) -> list[str]:
    """The messages of the record's failed expectation checks, in order; empty when none failed.

    The one answer to "did this record fail an expectation" for report, diff, resume, gates and
    the run summary. batchrun writes `expectations` as a list of `{"passed": bool, "message": str,
    "check": ...}`; for a hand-edited record:

    - `expectations` absent, null or `[]`: no checks, so nothing failed;
    - a check passed only when it says so: an object with `"passed": true`. `passed` missing, null
      or not a boolean (`"true"`, `1`) is a failed check, as is an entry that is not an object (or
      an `expectations` value that is not a list): a check that cannot be shown to have passed
      must not turn a regression run green.

    A failed check's message is its `message`; one without a string message is shown as its JSON.
    """
    return [check_message(check) for check in expectation_checks(record) if not check_passed(check)]


def check_message(check: Any) -> str:
    """A check's `message`, or (hand-edited, no string message) its JSON on one short line."""
    if isinstance(check, dict) and isinstance(check.get("message"), str):
        return check["message"]
    try:
        text = json.dumps(check, ensure_ascii=False, sort_keys=True, default=str)
    except (RecursionError, ValueError):  # absurdly nested: say what it is, not what it holds
        text = type(check).__name__
    return "invalid check: " + (text if len(text) <= 80 else text[:79] + "…")


class Newest(Generic[T]):
    """One value per id: the one whose record finished last; on a tie (or no time), the later line.
    A resumed run appends a fresh record for a retried id, so the newest is the id's final state.

    For streaming readers that keep a summary of each record, not the record: `offer` every
    record's summary in file order; `values` holds the newest one per id (first-seen order of ids)."""

    def __init__(self) -> None:
        self.values: dict[str, T] = {}
        self._times: dict[str, datetime | None] = {}

    def offer(self, rid: str, when: datetime | None, value: T) -> None:
        """`value` stands for `rid`'s record that finished at `when` (None: unknown)."""
        if rid not in self.values or _not_older(when, self._times[rid]):
            self.values[rid] = value
            self._times[rid] = when


def _not_older(when: datetime | None, than: datetime | None) -> bool:
    if when is None or than is None:
        return when is not None or than is None  # a timed record beats an untimed one
    return when >= than


LABEL_VALUE_CHARS = 24  # one matrix or argument value in a request label
LABEL_CHARS = 72  # a whole request label
LABEL_ARGUMENTS = 2  # argument values shown for a dataset row (its first ones)


def request_label(matrix: Any, row: Any, repeat: Any, arguments: Any) -> str:
    """What a request *is*, for a person scanning a list of ids: `seed=3 style=anime` (its matrix
    values), `row 12 prompt=a fox in the… seed=7` (its dataset row and first argument values),
    plus `repeat 2` for a repeat; "" for a job's only request. Shortened to one line."""
    parts: list[str] = []
    if isinstance(row, int) and not isinstance(row, bool):
        parts.append(f"row {row}")
    if isinstance(matrix, dict) and matrix:
        parts += [f"{key}={_short(value)}" for key, value in matrix.items()]
    elif parts and isinstance(arguments, dict):
        parts += [f"{key}={_short(value)}" for key, value in list(arguments.items())[:LABEL_ARGUMENTS]]
    if isinstance(repeat, int) and not isinstance(repeat, bool) and repeat > 0:
        parts.append(f"repeat {repeat}")
    text = " ".join(parts)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def record_label(record: dict[str, Any]) -> str:
    """`request_label` of an output record."""
    return request_label(record.get("matrix"), record.get("row"), record.get("repeat"), record.get("arguments"))


def _short(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    text = " ".join(text.split())
    return text if len(text) <= LABEL_VALUE_CHARS else text[: LABEL_VALUE_CHARS - 1] + "…"


def seconds(value: Any) -> float | None:
    """A finite JSON number as a float, else None (a hand-edited or NaN latency is unknown)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def error_text(record: dict[str, Any], limit: int = 80) -> str:
    """A record's error as `type: detail` on one line (`unknown` when the type is missing)."""
    raw = record.get("error")
    error = raw if isinstance(raw, dict) else {}
    kind = str(error.get("type") or "unknown")
    detail = error.get("detail")
    return f"{kind}: {one_line(detail, limit)}" if detail not in (None, "") else kind


def one_line(detail: Any, limit: int = 80) -> str:
    """An error detail (string or JSON) as one short line."""
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
