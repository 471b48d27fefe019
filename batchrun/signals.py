"""The signals that stop a command gracefully: SIGINT (Ctrl-C) and SIGTERM.

SIGTERM is how CI and Kubernetes stop work (a cancelled GitHub Actions job, a deleted pod of an
Indexed Job, `docker stop`), so it takes Ctrl-C's path everywhere rather than a second one:
- at start-up both are held back (`held`) and delivered once the command's imports are done;
- outside an event loop, and while asyncio's runner starts, SIGTERM does whatever SIGINT's handler
  does at that moment (raise KeyboardInterrupt, or let asyncio's runner cancel its main task);
- inside a run, the executor listens for both (batchrun.run.executor) and stops the same graceful way.
The first of them decides the exit code: 128 + its number (130 for SIGINT, 143 for SIGTERM), the
shell's convention for "stopped by this signal", which CI and Kubernetes report as such.

Once the command is stopping, a repeated signal is only noted (`settle`): after the run's own
watcher is gone (it gives a second Ctrl-C its meaning while the run still waits) there is nothing
left for it to do, and raising KeyboardInterrupt into the manifest's or the journal's last writes,
or into the interpreter's exit, cut them short and ended the process by the signal (-2) instead of
with 130 (issue 14).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "exit_code", "handled", "held", "hold", "interrupted", "label", "note", "release", "restore",
           "settle"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_first: list[int] = []  # the first stop signal this command received


def note(signum: int) -> None:
    """Remember a stop signal; the first one decides the exit code."""
    if not _first:
        _first.append(signum)


def interrupted() -> bool:
    """Whether this command has received a stop signal."""
    return bool(_first)


def _repeat(signum: int, frame: FrameType | None) -> None:
    note(signum)  # the command is already stopping: nothing more to do (see the module docstring)


def settle() -> None:
    """The command is stopping: from now on a stop signal is only noted. Called where a stop has
    been decided (the run's watcher ends after one, a KeyboardInterrupt is being reported)."""
    if _main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, _repeat)


def exit_code() -> int:
    """128 + the first stop signal received (a KeyboardInterrupt without one was a Ctrl-C)."""
    return 128 + (_first[0] if _first else signal.SIGINT)


def label(signum: int | None = None) -> str:
    """"" for SIGINT (the message Ctrl-C always gave), " (SIGTERM)" for the others."""
    signum = signum if signum is not None else (_first[0] if _first else signal.SIGINT)
    return "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    note(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        # default_int_handler raises KeyboardInterrupt; asyncio's runner cancels its main task.
        handler(signal.SIGINT, frame)
        return
    # SIGINT ignored (`cmd &` in a non-interactive shell, nohup): SIGTERM must still stop us.
    raise KeyboardInterrupt


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def handled(*, program: bool = False) -> Iterator[None]:
    """For one command: SIGTERM stops it the way Ctrl-C does. The previous handlers come back
    afterwards, for a program (such as the test suite) that runs several commands in one process.
    A `program` (the process ends with this command) ignores both signals from here on instead:
    its exit code is decided, and at the interpreter's exit a Python handler is reset to the
    default one, so a repeated Ctrl-C there ended the process by the signal (-2) instead of with
    130. (Blocking them would not do: another thread, one of anyio's workers, can take them.)"""
    _first.clear()
    if not _main_thread():  # signal handlers can only be set from the main thread
        yield
        return
    previous_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        if program:
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGTERM, previous)
            if _first and previous_int is not None:  # settle() replaced it
                signal.signal(signal.SIGINT, previous_int)


_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None  # what signal.getsignal returns


def restore(handlers: Mapping[signal.Signals, _Handler]) -> None:
    """Put back handlers saved before asyncio took the signals over: removing its own handler,
    asyncio resets SIGTERM to SIG_DFL (so a SIGTERM while the run writes its manifest would kill
    the process outright) and SIGINT to default_int_handler (not its runner's). After a stop
    signal the command is stopping: `settle` instead."""
    if not _main_thread():
        return
    if _first:
        settle()
        return
    for signum, handler in handlers.items():
        if handler is not None:
            signal.signal(signum, handler)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the subcommands (and their C extensions) are imported,
    and deliver them afterwards: an interrupt inside an extension's module init can crash the
    interpreter (orjson segfaults), and elsewhere in an import it would print a traceback."""
    hold()
    try:
        yield
    finally:
        release()


def hold() -> None:
    """Block SIGINT and SIGTERM (main thread only) until `release`: for a span that is not one
    block of code, such as an event loop's start (see batchrun.run.runner)."""
    if hasattr(signal, "pthread_sigmask") and _main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release() -> None:
    """Unblock them; a pending one is delivered now, to its handler. Unblock rather than restore:
    `python -m batchrun` blocks them before importing us, so the previous mask may be "blocked"."""
    if hasattr(signal, "pthread_sigmask") and _main_thread():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
