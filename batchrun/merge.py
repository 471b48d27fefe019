"""`batchrun merge`: collate shard outputs into one file in plan order, one record per id.

Which record of an id is kept: an `ok` record beats an `error` one; among equals the newest
(timing.finished_at) wins, and on a tie the one read last. Lines are copied byte for byte, so a
merged file holds exactly what the shards wrote.

Memory holds a few numbers per id, not the records: the first pass picks the winners and their
byte offsets, the second copies those lines in plan order into a temporary file beside the output,
which then replaces the output in one rename (a crash never leaves a half-written merge).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from batchrun.errors import SinkError
from batchrun.records_io import RecordsError, finished_at, iter_located, seekable

_NEVER = datetime.min.replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Planned:
    """One planned request, as far as completeness needs it."""

    id: str
    index: int
    job: str


@dataclasses.dataclass(frozen=True, slots=True)
class MergeResult:
    inputs: int
    records: int  # lines read from all inputs
    written: int  # one per id
    missing: list[Planned]  # planned but in no input (empty without a plan)
    unplanned: list[str]  # ids in the inputs that the plan does not have (kept)
    planned: int | None  # size of the plan, None without one

    @property
    def superseded(self) -> int:
        return self.records - self.written


@dataclasses.dataclass(frozen=True, slots=True)
class _Choice:
    rank: tuple[bool, datetime, int]  # (ok, finished_at, read order): the largest wins
    file: int
    offset: int
    index: int


def merge_outputs(
    inputs: Sequence[str | Path], output: str | Path, *, plan: Iterable[Planned] | None = None
) -> MergeResult:
    """Merge `inputs` into `output` (replaced atomically).

    Args:
        plan: when given, records are ordered by the plan's indices and missing ids are reported.

    Raises:
        RecordsError: an input cannot be read or has a damaged line.
        SinkError: the output cannot be written.
    """
    with contextlib.ExitStack() as stack:
        # A pipe input is copied to a temporary file: the second pass seeks into it.
        paths = [stack.enter_context(seekable(p)) for p in inputs]
        return _merge(paths, [str(p) for p in inputs], Path(output), plan)


def _merge(paths: list[Path], names: list[str], output: Path, plan: Iterable[Planned] | None) -> MergeResult:
    best: dict[str, _Choice] = {}
    records = 0
    for file_number, path in enumerate(paths):
        for located in iter_located(path, names[file_number]):
            records += 1
            record = located.record
            rank = (record["status"] == "ok", finished_at(record) or _NEVER, records)
            rid = record["id"]
            if rid not in best or rank > best[rid].rank:
                best[rid] = _Choice(rank, file_number, located.offset, record["index"])
    planned = {p.id: p for p in plan} if plan is not None else None
    missing: list[Planned] = []
    unplanned: list[str] = []
    if planned is not None:
        missing = sorted((p for rid, p in planned.items() if rid not in best), key=lambda p: (p.index, p.id))
        unplanned = sorted(rid for rid in best if rid not in planned)

    def order(rid: str) -> tuple[int, str]:
        index = planned[rid].index if planned is not None and rid in planned else best[rid].index
        return (index, rid)

    _write(paths, [best[rid] for rid in sorted(best, key=order)], output)
    return MergeResult(len(paths), records, len(best), missing, unplanned, len(planned) if planned is not None else None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(paths: list[Path], chosen: list[_Choice], output: Path) -> None:
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, or removed on failure
            "wb", dir=output.parent, prefix=f".{output.name}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        raise SinkError(f"{output}: cannot write: {exc.strerror or exc}", path=str(output)) from None
    try:
        with handle, contextlib.ExitStack() as stack:
            sources = [stack.enter_context(path.open("rb")) for path in paths]
            for choice in chosen:
                source = sources[choice.file]
                source.seek(choice.offset)
                handle.write(source.readline().rstrip(b"\r\n") + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(handle.name, output)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        if isinstance(exc, FileNotFoundError | PermissionError) and exc.filename in {str(p) for p in paths}:
            raise RecordsError(f"{exc.filename}: cannot read: {exc.strerror}") from None
        raise SinkError(f"{output}: cannot write: {exc.strerror or exc}", path=str(output)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise
