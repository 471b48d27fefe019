"""What a `{$file: path}` input contributes to a request's id: its path relative to the spec's
folder and the sha256 of its content, never the absolute path.

The planned arguments keep the absolute path (it is what the executor reads and sends), but an id
made from it differed on every machine and checkout (a laptop, CI, a pod), so resume, diff and
merge across them failed; and a file whose content changed kept its id, so a resume skipped the
changed input. In the id, each file object is `{"$file": "images/cat.png", "sha256": "..."}`
(`"sha256": null` for a file that cannot be read: its request becomes an input_error record).

Hashing reads each file once per process: the digest is cached by (path, size, mtime, inode), so a
matrix over one image, or a plan walked twice in one command, costs one read.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Any

from batchrun.spec.yamlsource import FILE_KEY

__all__ = ["FILE_KEY", "file_identity", "has_file_objects"]


def has_file_objects(value: Any) -> bool:
    if isinstance(value, dict):
        return FILE_KEY in value or any(has_file_objects(v) for v in value.values())
    if isinstance(value, list):
        return any(has_file_objects(v) for v in value)
    return False


def file_identity(value: Any, base: str) -> Any:
    """`value` (rendered arguments) with every `{$file: absolute path}` object replaced by its
    identity for the request id (see the module docstring); `base`: the spec's folder, absolute."""
    if isinstance(value, dict):
        target = value.get(FILE_KEY)
        if isinstance(target, str) and len(value) == 1:
            return {FILE_KEY: _relative(target, base), "sha256": _digest_of(target)}
        return {k: file_identity(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [file_identity(v, base) for v in value]
    return value


def _relative(target: str, base: str) -> str:
    """The path relative to the spec's folder, with `/` whatever the platform."""
    return os.path.relpath(target, base).replace(os.sep, "/")


def _digest_of(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _digest(path, st.st_size, st.st_mtime_ns, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int, ino: int) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()
