"""`batchrun merge`: collate shard outputs into one file in plan order, one record per id.

Which record of an id is kept: an `ok` record beats an `error` one; among equals the newest
(timing.finished_at) wins, and on a tie the one read last. Lines are copied byte for byte, so a
merged file holds exactly what the shards wrote, except for one thing: downloaded artifacts'
`path` is relative to the output's folder, so a record merged into another folder gets its
relative artifact paths rewritten to point at the same files from there (the files stay where they
are; copy `<stem>/files/` along with the outputs, or merge next to them).

Memory holds a few numbers per id, not the records: the first pass picks the winners and their
byte offsets, the second copies those lines in plan order into a temporary file beside the output,
which then replaces the output in one rename (a crash never leaves a half-written merge).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from batchrun.errors import SinkError
from batchrun.output.reading import RecordsError, finished_at, iter_located, seekable

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
    rebased: int = 0  # records whose artifact paths were rewritten for the output's folder

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
        # Artifact paths are rebased from an input's folder; a pipe has none (its paths stay).
        folders = [Path(p).resolve().parent if Path(p).is_file() else None for p in inputs]
        paths = [stack.enter_context(seekable(p)) for p in inputs]
        return _merge(paths, [str(p) for p in inputs], folders, Path(output), plan)


def _merge(paths: list[Path], names: list[str], folders: list[Path | None], output: Path,
           plan: Iterable[Planned] | None) -> MergeResult:
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

    out_folder = output.resolve().parent
    # None: no rebasing (the input is in the output's folder, or a pipe)
    moves = [None if folder is None or folder == out_folder else (folder, out_folder) for folder in folders]
    rebased = _write(paths, moves, [best[rid] for rid in sorted(best, key=order)], output)
    return MergeResult(
        len(paths), records, len(best), missing, unplanned, len(planned) if planned is not None else None, rebased
    )


def _rebase(line: bytes, move: tuple[Path, Path], where: str) -> bytes | None:
    """The line with its relative artifact paths made relative to the output's folder instead of
    the input's; None when there is nothing to rewrite (the line is copied as it is).

    Raises:
        RecordsError: the line is no longer a record (`where`: its file and offset).
    """
    if b'"artifacts"' not in line:
        return None
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):  # the first pass read a record here: the file changed since
        raise RecordsError(f"{where}: changed while being read (no record there any more)")
    changed = False
    for artifact in record.get("artifacts") or []:
        stored = artifact.get("path") if isinstance(artifact, dict) else None
        if isinstance(stored, str) and stored and not Path(stored).is_absolute():
            artifact["path"] = Path(os.path.relpath(move[0] / stored, move[1])).as_posix()
            changed = True
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"))).encode() if changed else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(paths: list[Path], moves: list[tuple[Path, Path] | None], chosen: list[_Choice], output: Path) -> int:
    """Write the chosen lines in order; return how many had their artifact paths rebased."""
    if output.parent.exists() and not output.parent.is_dir():  # mkdir would say only "File exists"
        raise SinkError(f"{output}: cannot write: {output.parent} is a file, not a folder", path=str(output))
    try:
        # `-o new/dir/all.jsonl` makes its folder, as `run -o` does for an output.
        output.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, or removed on failure
            "wb", dir=output.parent, prefix=f".{output.name}.", suffix=".tmp", delete=False
        )
    except OSError as exc:
        raise SinkError(f"{output}: cannot write: {exc.strerror or exc}", path=str(output)) from None
    try:
        with handle, contextlib.ExitStack() as stack:
            sources = [stack.enter_context(path.open("rb")) for path in paths]
            rebased = 0
            for choice in chosen:
                source = sources[choice.file]
                source.seek(choice.offset)
                line = source.readline().rstrip(b"\r\n")
                move = moves[choice.file]
                moved = _rebase(line, move, f"{source.name} at byte {choice.offset}") if move is not None else None
                rebased += moved is not None
                handle.write((moved if moved is not None else line) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(handle.name, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(handle.name, output)
        return rebased
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
