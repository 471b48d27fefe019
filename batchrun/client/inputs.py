"""Local files as request inputs: `{"$file": "/abs/path"}` in arguments becomes a data URI, or,
above batchrun.client.storage.UPLOAD_THRESHOLD bytes and with an uploader, the URL of its upload to
fal storage (read from disk in parts, uploaded once per content).

fal accepts `data:<mime>;base64,...` wherever it accepts a media URL (docs recommend URLs or data
URIs), so a batch over local images needs no upload step. Files are read at send time, off the
event loop, so a plan of 100k requests never holds more than the in-flight files in memory.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from batchrun.spec.yamlsource import FILE_KEY

if TYPE_CHECKING:
    from batchrun.client.storage import Uploads

__all__ = ["FILE_KEY", "InputFileError", "encode_files", "has_files"]


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


async def encode_files(arguments: dict[str, Any], uploads: Uploads | None = None,
                       threshold: int | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Arguments with every `$file` replaced by a data URI (or, over `threshold` bytes with
    `uploads`, its storage URL), and what was sent: argument path (`$.image`, `$.images[1]`) ->
    {path, sha256, bytes[, url]} for the record's `inputs`."""
    sent: dict[str, dict[str, Any]] = {}
    if not has_files(arguments):
        return arguments, sent
    if uploads is not None and threshold is None:
        from batchrun.client.storage import UPLOAD_THRESHOLD

        threshold = UPLOAD_THRESHOLD
    encoded = await _encode(arguments, "$", sent, uploads, threshold or 0)
    return encoded, sent


async def _encode(value: Any, where: str, sent: dict[str, dict[str, Any]], uploads: Uploads | None,
                  threshold: int) -> Any:
    ref = _file_ref(value)
    if ref is not None:
        if uploads is not None and _size(ref) > threshold:
            from batchrun.client.storage import UploadError

            try:
                info = await uploads.url_for(ref)
            except UploadError as exc:
                raise InputFileError(f"{where}: uploading {ref} to storage failed: {exc}") from exc
            sent[where] = info
            return info["url"]
        uri, info = await anyio.to_thread.run_sync(_data_uri, ref, where)
        sent[where] = info
        return uri
    if isinstance(value, dict):
        return {k: await _encode(v, f"{where}.{k}", sent, uploads, threshold) for k, v in value.items()}
    if isinstance(value, list):
        return [await _encode(v, f"{where}[{i}]", sent, uploads, threshold) for i, v in enumerate(value)]
    return value


def _size(ref: str) -> int:
    try:
        return os.stat(ref).st_size
    except OSError:
        return -1  # unreadable: the data-URI path reports it


def _data_uri(ref: str, where: str) -> tuple[str, dict[str, Any]]:
    path = Path(ref)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{where}: cannot read input file {ref}: {exc.strerror or exc}") from exc
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    info = {"path": str(path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", info
