"""Is this path fit to be a run's output? Checked before the run touches anything (exit 2 if not).

A run appends JSON lines to its output and, next time, resumes from what it reads back there; its
sidecars (`.lock`, `.journal.jsonl`, `.manifest.json`, `.plan-ids`) are created beside it, and
`--fresh` moves it aside. So an output must be a file batchrun can read back, that is no input of
the same run, and that is not some other file:
- not a device, FIFO or socket (`-o /dev/null` kept nothing to resume from, so a rerun sent every
  request again, and put the sidecars in /dev);
- not the spec, a dataset or a `{$file: ...}` input of the run, by any name (`--fresh` moved the
  spec aside; a run appended records into its own dataset);
- not an existing file holding no batchrun record (a README, an image: records appended to it,
  with only a warning per line it did not understand).
A directory, or a path that cannot be created, is left to the output's own errors (exit 1).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from batchrun.errors import UsageError
from batchrun.spec.model import Spec

__all__ = ["check_output"]

_SCAN_LINES = 1000
_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO (pipe)",
          stat.S_IFSOCK: "a socket"}


def check_output(out: Path, spec: Spec) -> None:
    """Raise UsageError when `out` cannot be the output of a run of `spec` (see the module docstring)."""
    try:
        st = os.stat(out)
    except OSError:
        return  # missing (created by the run), or unreachable (the run's own errors say why)
    if stat.S_ISDIR(st.st_mode):
        return
    kind = _KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is not None:
        raise UsageError(f"the output {out} is {kind}, not a file: a run appends its records to its output and "
                         "resumes from what it reads back there; choose a file with -o")
    for what, path in _inputs(spec):
        try:
            same = os.path.samefile(out, path)
        except OSError:
            continue
        if same:
            raise UsageError(f"the output {out} is {what} ({path}): the run would append its records to its own "
                             "input; choose another output with -o (nothing was written)")
    if st.st_size and not _holds_a_record(out):
        raise UsageError(f"the output {out} exists and holds no batchrun record: it is not an output of batchrun, and "
                         "a run would append its records to it; choose another output with -o, or move the file "
                         "away (nothing was written)")


def _inputs(spec: Spec) -> Iterator[tuple[str, Path]]:
    yield "the spec", spec.source
    base = os.path.abspath(spec.base_dir)
    for job in spec.jobs:
        if isinstance(job.dataset, Path):
            yield f"the dataset of job '{job.name}'", job.dataset
        for target in _static_files(job.arguments):
            yield f"a $file input of job '{job.name}'", Path(os.path.normpath(os.path.join(base, target)))


def _static_files(value: Any) -> Iterator[str]:
    """The paths of the `{$file: path}` objects without templates (a templated one names a file
    per request: an output among those holds no record, which the last check refuses)."""
    if isinstance(value, dict):
        target = value.get("$file")
        if isinstance(target, str):
            if "${{" not in target:
                yield target
            return
        for v in value.values():
            yield from _static_files(v)
    elif isinstance(value, list):
        for v in value:
            yield from _static_files(v)


def _holds_a_record(path: Path) -> bool:
    """Whether `path` reads as a batchrun output: some complete line is a record (an object with a
    string `id` and a `status` of ok or error, as the resume reads them), or it has no complete
    non-blank line at all (a partial last line is a run killed mid-write; the resume cuts it).
    Stops at the first record, normally line 1, and gives up after `_SCAN_LINES` lines of other
    things (an output whose first thousand lines are all damaged is no output)."""
    content = 0
    try:
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                if _is_record(line):
                    return True
                if line.strip():
                    content += 1
                    if content >= _SCAN_LINES:
                        break
    except OSError:
        return True  # unreadable now: the run's own read of it says why
    return not content


def _is_record(line: bytes) -> bool:
    try:
        value = orjson.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("id"), str) and value.get("status") in ("ok", "error")
