"""The exception tree of batchrun.

    BatchrunError              base; anything a user can fix or must know about
    ├── SpecError              invalid spec; .problems: list[Problem] (file:line:col: $.path: message)
    ├── UsageError             bad command-line use, a fal target without an API key (exit 2)
    └── SinkError              the output cannot be created, locked or written; .path
        └── output.sink.OutputInUse  another batchrun process holds the output's lock (exit 2)

A failed *request* is never an exception that escapes the executor: it becomes a record.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One located problem in a spec file (or a file it references)."""

    file: str
    line: int  # 1-based; 0: no position (a spec given as a Python dict is located by `path` alone)
    col: int  # 1-based
    path: str  # JSON path such as $.jobs[0].matrix
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        return f"{where}: {_one_line(self.path)}: {prefix}{_one_line(self.message)}"


def _one_line(text: str) -> str:
    """Escape control characters (a YAML key may hold a CR or a newline): one problem, one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class BatchrunError(Exception):
    """Base class of every error batchrun reports to a user without a traceback."""

    exit_code = 1


class SpecError(BatchrunError):
    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(BatchrunError):
    exit_code = 2


class SinkError(BatchrunError):
    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)

