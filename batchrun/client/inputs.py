"""Local files as request inputs: `{"$file": "/abs/path"}` in arguments becomes a data URI.

fal accepts `data:<mime>;base64,...` wherever it accepts a media URL (docs recommend URLs or data
URIs), so a batch over local images needs no upload step. Files are read at send time, off the
event loop, so a plan of 100k requests never holds more than the in-flight files in memory.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
from pathlib import Path
from typing import Any

import anyio.to_thread

__all__ = ["FILE_KEY", "InputFileError", "encode_files", "has_files"]

FILE_KEY = "$file"


class InputFileError(Exception):
    """A `$file` argument that cannot be read; becomes an `input_error` record, never a traceback."""


def _file_ref(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(FILE_KEY), str):
        return value[FILE_KEY]
    return None


def has_files(value: Any) -> bool:
    if _file_ref(value) is not None:
        return True
    if isinstance(value, dict):
        return any(has_files(v) for v in value.values())
    if isinstance(value, list):
        return any(has_files(v) for v in value)
    return False


async def encode_files(arguments: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Arguments with every `$file` replaced by a data URI, and what was sent: argument path
    (`$.image`, `$.images[1]`) -> {path, sha256, bytes} for the record's `inputs`."""
    sent: dict[str, dict[str, Any]] = {}
    if not has_files(arguments):
        return arguments, sent
    encoded = await _encode(arguments, "$", sent)
    return encoded, sent


async def _encode(value: Any, where: str, sent: dict[str, dict[str, Any]]) -> Any:
    ref = _file_ref(value)
    if ref is not None:
        uri, info = await anyio.to_thread.run_sync(_data_uri, ref, where)
        sent[where] = info
        return uri
    if isinstance(value, dict):
        return {k: await _encode(v, f"{where}.{k}", sent) for k, v in value.items()}
    if isinstance(value, list):
        return [await _encode(v, f"{where}[{i}]", sent) for i, v in enumerate(value)]
    return value


def _data_uri(ref: str, where: str) -> tuple[str, dict[str, Any]]:
    path = Path(ref)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read input file {ref}: {exc.strerror or exc}") from exc
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    info = {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", info
