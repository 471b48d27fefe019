"""The result cache's key: what determines a request's answer, and nothing else.

    sha256 of canonical JSON {v, target, endpoint, path, arguments, repeat, headers}

- target: the base URL the request goes to (the run URL for `mode: run`, the queue URL for
  `subscribe`); "local" for the embedded server, whose port changes with every run. A result
  never crosses targets: fal, a proxy and the embedded server have different keys.
- arguments as planned, with each `{"$file": path}` replaced by the file's sha256: the same
  bytes under another name hit, an edited file misses.
- repeat: `repeat: 3` asks for three samples, so each repeat index has its own entry.
- headers: the job's (templated) headers can change the answer (a model version header).
- Not in the key: the job name, the output, the spec file, timeouts, priority, hint and logs
  (they change how or where a result is obtained and recorded, not the result).

A request whose arguments or headers use `${{ env.X }}` has no key (`None`): hashing a resolved
secret into the key would let the cache file confirm guesses of it, and keying on the template
alone would serve one credential's answer to another. Such requests are always sent.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import orjson

from batchrun.plan.planner import PlannedRequest
from batchrun.spec.template import env_names
from batchrun.spec.yamlsource import FILE_KEY

__all__ = ["KEY_VERSION", "FileDigests", "cache_key", "uses_env"]

KEY_VERSION = 1  # bumped when the key's shape changes: old entries then simply miss


class FileDigests:
    """sha256 of input files, remembered by (path, size, mtime) for the run: a dataset of ten
    thousand prompts over one reference image reads the image once."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int, int], str] = {}

    def digest(self, path: str) -> str | None:
        """None: the file cannot be read (the request is sent and becomes an input_error record)."""
        try:
            st = os.stat(path)
            known = self._known.get((path, st.st_size, st.st_mtime_ns))
            if known is not None:
                return known
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except OSError:
            return None
        digest = h.hexdigest()
        self._known[(path, st.st_size, st.st_mtime_ns)] = digest
        return digest


def uses_env(request: PlannedRequest) -> bool:
    return bool(env_names(request.arguments) or (request.headers and env_names(request.headers)))


class _Unreadable(Exception):
    pass


def _with_digests(value: Any, digest: Callable[[str], str | None]) -> Any:
    if isinstance(value, dict):
        ref = value.get(FILE_KEY)
        if len(value) == 1 and isinstance(ref, str):
            d = digest(ref)
            if d is None:
                raise _Unreadable(ref)
            return {"$file-sha256": d}
        return {k: _with_digests(v, digest) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_digests(v, digest) for v in value]
    return value


def has_file_refs(value: Any) -> bool:
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(FILE_KEY), str):
            return True
        return any(has_file_refs(v) for v in value.values())
    if isinstance(value, list):
        return any(has_file_refs(v) for v in value)
    return False


def cache_key(request: PlannedRequest, target: str, files: FileDigests | None = None) -> bytes | None:
    """The 32-byte key of `request` sent to `target`, or None when it must not be cached (env
    values, an unreadable input file). Reads input files (see FileDigests): call it off the event
    loop when `has_file_refs(request.arguments)`."""
    arguments: Any = request.arguments
    if has_file_refs(arguments):
        try:
            arguments = _with_digests(arguments, (files or FileDigests()).digest)
        except _Unreadable:
            return None
    canonical = {
        "v": KEY_VERSION, "target": target, "endpoint": request.endpoint, "path": request.path,
        "arguments": arguments, "repeat": request.repeat, "headers": request.headers or {},
    }
    try:  # OPT_NON_STR_KEYS: a matrix value used as a key renders as a non-str dict key (rare, legal)
        blob = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return None  # a value JSON cannot hold has no canonical form: send it, do not cache it
    if b"${{" in blob and uses_env(request):  # the substring test spares parsing templates per request
        return None
    return hashlib.sha256(blob).digest()
