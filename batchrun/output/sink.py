"""The JSONL output file: one complete line per record, appended and flushed as it is written.

Only the executor's single writer task calls `JsonlSink.write`, so lines never interleave. Each
record is serialised first and handed to the kernel in one `write` on an unbuffered file, so a
`kill -9` can at worst leave one partial last line, which `batchrun.output.resume` repairs. Writes are
small and synchronous on purpose: a thread hop per line would cost more than the write itself.

Two runs on one output would interleave records and double-submit requests, so a run holds
exclusive `fcntl.flock`s on `<output>.lock` and on the output file itself for its whole life (see
OutputLock); a second run is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import orjson

from batchrun.errors import SinkError

__all__ = [
    "JsonlSink", "OutputInUse", "OutputLock", "describe", "encode_record", "lock_path", "output_in_use", "write_line",
]


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def output_in_use(output: Path) -> bool:
    """Whether a run holds the output's lock right now (so it is still being written): a shared
    lock is refused while the run's exclusive one is held. Takes and drops the lock at once, never
    creates the lock file; False when it cannot tell (no lock file, unreadable)."""
    try:
        fd = os.open(lock_path(output), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)




# Any surrogate code point in a str is a lone one (a valid pair decodes to one character).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encode_record(record: dict[str, Any]) -> bytes:
    """One JSON line, UTF-8, no spaces, ending in a newline; key order is the dict's order.

    A server's JSON may hold lone surrogate escapes ("\\ud800": valid JSON text, not Unicode),
    which UTF-8 cannot encode. Each becomes U+FFFD, as a UTF-8 encoder that does not fail writes
    it: the line stays UTF-8 JSON that every reader (orjson, jq, a browser) accepts, so the record
    is written, a resume reads it back, and nothing else of the answer is lost."""
    try:  # orjson is several times faster; its output is the same compact UTF-8 JSON
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        pass  # a value orjson refuses (huge int, non-str key, a lone surrogate): the stdlib handles it
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode()


BATCH_BYTES = 1 << 20  # most bytes of records joined into one write (see JsonlSink.write_many)


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


Identity = tuple[int, int]  # (st_dev, st_ino): a file, whatever names it


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino


def _in_use(output: Path, why: str) -> OutputInUse:
    return OutputInUse(f"{output} is in use by another batchrun process ({why}); "
                       "wait for it to finish or choose another output with -o", path=str(output))


def _flock(fd: int) -> bool:
    """Take an exclusive lock on `fd` without waiting; False when another open file holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


class OutputLock:
    """Exclusive, non-blocking locks for one run's output, released on close or process death.

    Two locks, because an output has two identities. `<output>.lock` guards the name and what is
    named after it (the journal, the manifest), also while the output does not exist yet. The
    output file itself is locked too (`flock` on its inode): another name for the same file (a
    symlink, a hard link, `./out` against `out`) has another `.lock` file, and two runs on such
    names wrote one file at once, each submitting every request. The file's lock is taken here
    when the file exists, else by the sink when it creates it (`adopt`).
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None
        self._files: dict[Identity, int] = {}  # locked output files -> the descriptor holding the lock
        self.identity: Identity | None = None  # the output file this run writes (the newest one locked)

    def acquire(self) -> None:
        _make_parent(self.path, "the output lock", self.output)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(
                f"cannot create the output lock {self.path}: {describe(exc)}", path=str(self.output)
            ) from None
        try:
            locked = _flock(fd)
        except OSError as exc:
            os.close(fd)
            raise SinkError(f"cannot lock {self.path}: {describe(exc)}", path=str(self.output)) from None
        if not locked:
            os.close(fd)
            raise _in_use(self.output, f"lock {self.path} is held")
        self._fd = fd
        try:
            # O_NONBLOCK: opening a FIFO for reading would wait for a writer.
            file_fd = os.open(self.output, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # missing (the sink creates and locks it), or not openable (the sink says why)
        try:
            self._lock_file(file_fd)
        except BaseException:
            self.release()
            raise

    def _lock_file(self, fd: int) -> None:
        """Lock the output file open as `fd` (this lock keeps `fd`)."""
        identity = _identity(os.fstat(fd))
        if identity in self._files:
            os.close(fd)
        else:
            try:
                locked = _flock(fd)
            except OSError:
                locked = True  # a file system without flock: the name's lock is all there is
            if not locked:
                os.close(fd)
                raise _in_use(self.output, "another run writes the same file under another name")
            self._files[identity] = fd
        self.identity = identity

    def adopt(self, fd: int, *, written_here: bool = False) -> None:
        """The sink opened (or re-created) the output as `fd`: make sure that file is locked. A
        file that did not exist when the lock was taken, but has content now, was written by
        another run meanwhile (this run's resume scan did not see it): refused. `written_here`:
        the content is this run's own (a re-created output)."""
        identity = _identity(os.fstat(fd))
        if identity in self._files:
            self.identity = identity
            return
        fresh = not self._files and not written_here
        self._lock_file(os.dup(fd))
        if fresh and os.fstat(fd).st_size > 0:
            raise _in_use(self.output, "it wrote the file while this run started")

    def intact(self) -> bool:
        """Whether the output path still names the file this run wrote (True when it wrote none):
        only then is what the journal marks done visible where the next run looks."""
        if self.identity is None:
            return True
        try:
            return _identity(os.stat(self.output)) == self.identity
        except OSError:
            return False

    def release(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()
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
    """Append records to a JSONL file. Use as a context manager; the caller holds the OutputLock
    (given as `lock`, the sink has it lock the file it opens, see OutputLock).

    Raises SinkError (with the path and the reason) when the file cannot be opened or written.
    A failed write is rolled back to the last complete line, so what was written stays valid.

    Before each line, and at close, the sink checks that the path still names the file it writes:
    records written into a file someone deleted would vanish with it, and the journal, taking them
    for recorded, would forget requests paid for. A deleted output is re-created from the open file
    (every record kept) and the run writes on, saying so; an output replaced by another file is
    left alone, this run's records are saved beside it, and the run stops.
    """

    def __init__(self, path: Path, lock: OutputLock | None = None) -> None:
        self.path = path
        self.lock = lock
        self._file: IO[bytes] | None = None
        self._identity: Identity | None = None
        self.saved_aside: Path | None = None  # where the records went when the output was replaced
        self.written = 0

    def open(self) -> None:
        _make_parent(self.path, "the output", self.path)
        try:
            # O_RDWR so that the records can be read back should the file be deleted (see the class).
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot open the output {self.path}: {describe(exc)}", path=str(self.path)) from None
        self._attach(fd, written_here=False)

    def _attach(self, fd: int, *, written_here: bool) -> None:
        # buffering=0: every write() goes straight to the kernel, nothing waits in user space.
        file = open(fd, "ab", buffering=0, closefd=True)  # noqa: SIM115 - closed in close()
        try:
            if self.lock is not None:
                self.lock.adopt(fd, written_here=written_here)
        except BaseException:
            file.close()
            raise
        self._file = file
        self._identity = _identity(os.fstat(fd))

    def write(self, record: dict[str, Any]) -> None:
        self.write_many((record,))

    def write_many(self, records: Sequence[dict[str, Any]]) -> None:
        """Append `records`, the ones the writer found waiting together, in as few writes as
        `BATCH_BYTES` allows (one check of the path): a record is in the file whole or not at all,
        and on a failed write those before it stay (`written` counts them). Bounded, because a
        batch can be `concurrency` results of up to 64 MiB each: joined whole, that was a second
        copy of all of them in memory."""
        if self._file is None:
            raise RuntimeError("Cannot write to a sink that is not open.")
        self._check_place()
        pending: list[bytes] = []
        size = 0
        for record in records:
            line = encode_record(record)
            if pending and size + len(line) > BATCH_BYTES:
                self._append(pending)
                pending, size = [], 0
            pending.append(line)
            size += len(line)
        if pending:
            self._append(pending)

    def _append(self, lines: list[bytes]) -> None:
        assert self._file is not None
        try:
            write_line(self._file, lines[0] if len(lines) == 1 else b"".join(lines))
        except OSError as exc:
            raise SinkError(
                f"cannot write to the output {self.path}: {describe(exc)}; "
                f"{self.written} records written in this run are kept",
                path=str(self.path),
            ) from None
        self.written += len(lines)

    def _check_place(self, *, closing: bool = False) -> None:
        """Does the path still name the open file? If not, see the class docstring."""
        assert self._file is not None
        try:
            now: Identity | None = _identity(os.stat(self.path))
        except FileNotFoundError:
            now = None
        except OSError:
            return  # cannot tell (a parent made unreadable): the write itself will say
        if now == self._identity or self.saved_aside is not None:
            return
        if now is None:
            self._restore(closing=closing)
            return
        saved = self.saved_aside = self._save_aside()
        message = (f"{self.path} was replaced by another file while the run wrote it; it was left as it is, and "
                   f"the records written to the replaced file are in {saved}; the journal is kept")
        if closing:
            print(f"batchrun: warning: {message}", file=sys.stderr)
            return
        raise SinkError(f"{message}; stopped", path=str(self.path))

    def _contents(self) -> Iterator[bytes]:
        assert self._file is not None
        fd, offset = self._file.fileno(), 0
        while chunk := os.pread(fd, 1 << 20, offset):
            offset += len(chunk)
            yield chunk

    def _restore(self, *, closing: bool) -> None:
        """The output was deleted: create it again with every line of the open file, then write there."""
        assert self._file is not None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:  # re-created by someone meanwhile: it is another file now
            self._check_place(closing=closing)
            return
        except OSError as exc:
            raise SinkError(f"{self.path} was deleted while the run wrote it, and cannot be created again: "
                            f"{describe(exc)}; stopped", path=str(self.path)) from None
        try:
            size = 0
            for chunk in self._contents():
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                size += len(chunk)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            raise SinkError(f"{self.path} was deleted while the run wrote it, and restoring it failed: "
                            f"{describe(exc)}; stopped", path=str(self.path)) from None
        old, self._file = self._file, None
        try:
            self._attach(fd, written_here=True)
        finally:
            old.close()
        lines = "records" if size else "nothing yet"
        print(f"batchrun: warning: {self.path} was deleted while the run wrote it; re-created it with the "
              f"{lines} already written ({size} bytes)" + ("" if closing else " and writing on"), file=sys.stderr)

    def _save_aside(self) -> Path:
        """Copy the open (replaced) file next to the output; its name."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.{stamp}.recovered")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.{stamp}-{n}.recovered")
        try:
            with open(aside, "xb") as f:
                for chunk in self._contents():
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise SinkError(f"{self.path} was replaced by another file while the run wrote it, and saving this "
                            f"run's records to {aside} failed: {describe(exc)}; stopped", path=str(self.path)) from None
        return aside

    def close(self) -> None:
        if self._file is not None:
            try:
                self._check_place(closing=True)  # deleted after the last line: restore it all the same
            except SinkError as exc:
                print(f"batchrun: warning: {exc}", file=sys.stderr)
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
