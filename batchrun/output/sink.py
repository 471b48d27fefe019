"""The JSONL output file: one complete line per record, appended and flushed as it is written.

Only the executor's single writer task calls `JsonlSink.write`, so lines never interleave. Each
record is serialised first and handed to the kernel in one `write` on an unbuffered file, so a
`kill -9` can at worst leave one partial last line, which `batchrun.output.resume` repairs. Writes are
small and synchronous on purpose: a thread hop per line would cost more than the write itself.

Two runs on one output would interleave records and double-submit requests, so the sink holds an
exclusive `fcntl.flock` on `<output>.lock` for its whole life; a second run is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from batchrun.errors import SinkError

__all__ = ["JsonlSink", "OutputInUse", "OutputLock", "describe", "encode_record", "lock_path", "write_line"]


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")




def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8, no spaces, ending in a newline; key order is the dict's order."""
    try:  # orjson is several times faster; its output is the same compact UTF-8 JSON
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        pass  # a value orjson refuses (huge int, non-str key): the stdlib handles it
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def write_line(file: IO[bytes], line: bytes) -> None:
    """Append `line` to the unbuffered `file` whole, or not at all: a raw write may be short (a
    disk filling up mid-line, a signal), so the rest is written; should that fail, the partial line
    is cut off again (the file stays a sequence of complete lines) and the OSError raised."""
    start: int | None = None
    with contextlib.suppress(OSError):
        start = file.tell()
    try:
        view = memoryview(line)
        while view:
            n = file.write(view)
            if n is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[n:]
    except OSError:
        if start is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(file.fileno(), start)
        raise


def describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on device"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def _make_parent(path: Path, what: str, output: Path) -> None:
    """Create the folder of `path` (the `what`). mkdir says "File exists" when an ancestor is a
    regular file, which reads as nonsense; name the file that is in the way instead."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((a for a in reversed(path.parents) if a.exists() and not a.is_dir()), path.parent)
        raise SinkError(f"cannot create {what} {path}: {blocker} is not a directory", path=str(output)) from None
    except OSError as exc:
        raise SinkError(f"cannot create {what} {path}: {describe(exc)}", path=str(output)) from None


class OutputInUse(SinkError):
    """Another batchrun process holds the output's lock: a usage problem (exit 2), not a failed run."""

    exit_code = 2


class OutputLock:
    """An exclusive, non-blocking lock on `<output>.lock`, released on close or process death."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None

    def acquire(self) -> None:
        _make_parent(self.path, "the output lock", self.output)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(
                f"cannot create the output lock {self.path}: {describe(exc)}", path=str(self.output)
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputInUse(
                    f"{self.output} is in use by another batchrun process (lock {self.path} is held); "
                    "wait for it to finish or choose another output with -o",
                    path=str(self.output),
                ) from None
            raise SinkError(f"cannot lock {self.path}: {describe(exc)}", path=str(self.output)) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            # The lock file itself stays: unlinking it would race with a process that just opened it.
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class JsonlSink:
    """Append records to a JSONL file. Use as a context manager; the caller holds the OutputLock.

    Raises SinkError (with the path and the reason) when the file cannot be opened or written.
    A failed write is rolled back to the last complete line, so what was written stays valid.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self.written = 0

    def open(self) -> None:
        _make_parent(self.path, "the output", self.path)
        try:
            # buffering=0: every write() goes straight to the kernel, nothing waits in user space.
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise SinkError(f"cannot open the output {self.path}: {describe(exc)}", path=str(self.path)) from None

    def write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("Cannot write to a sink that is not open.")
        try:
            write_line(self._file, encode_record(record))
        except OSError as exc:
            raise SinkError(
                f"cannot write to the output {self.path}: {describe(exc)}; "
                f"{self.written} records written in this run are kept",
                path=str(self.path),
            ) from None
        self.written += 1

    def close(self) -> None:
        if self._file is not None:
            f, self._file = self._file, None
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())  # survive a power loss too, not only a killed process
            f.close()

    def __enter__(self) -> JsonlSink:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
