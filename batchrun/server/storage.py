"""fal storage for uploads, as fal-client 1.0.3 uses it (docs/fal-protocol.md §9.7), written to a
temporary folder on disk (never held in memory: inputs are hundreds of megabytes):

    POST /storage/upload/initiate?storage_type=gcs {file_name, content_type} -> {upload_url, file_url}
    PUT  <upload_url>                     the whole file, to a signed URL (no API key; it expires)
    POST /storage/auth/token?storage_type=fal-cdn-v3 -> {token, token_type, base_url, expires_at}
    POST <base_url>/files/upload/multipart (token auth; X-Fal-File-Name) -> {access_url, uploadId}
    PUT  <access_url>/multipart/<uploadId>/<n>   one part (token auth) -> ETag
    POST <access_url>/multipart/<uploadId>/complete {"parts": [{partNumber, etag}]}
    GET  /files/storage/<id>/<name>       the stored file (file_url / access_url)

Faults, for tests (`create_app(storage_faults=...)`): `fail_parts: N` makes the first N part
uploads answer 500; `expire_urls: N` hands out the first N signed upload URLs already expired (their
PUT answers 403, as an expired GCS signature does); `expire_tokens: N` the first N CDN tokens.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request

from batchrun.server.emulator import Emulator, WireResponse, origin_of
from batchrun.server.wire import Reply, json_reply

SIGNED_URL_TTL = 3600.0
TOKEN_TTL = 3600.0


@dataclasses.dataclass(slots=True)
class _Multipart:
    file_id: str
    name: str
    parts: dict[int, tuple[Path, str]] = dataclasses.field(default_factory=dict)  # n -> (file, etag)


class Storage:
    """Per server: uploaded files on disk, pending signed URLs, CDN tokens, multipart uploads."""

    def __init__(self, faults: dict[str, int] | None = None) -> None:
        self.faults = dict(faults or {})
        self._dir: Path | None = None
        self.signed: dict[str, tuple[str, str, float]] = {}  # signature -> (file id, name, expires)
        self.tokens: dict[str, float] = {}  # token -> expires (monotonic)
        self.multipart: dict[str, _Multipart] = {}
        self.files: dict[str, Path] = {}  # "<id>/<name>" -> file

    @property
    def directory(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="batchrun-storage-"))
        return self._dir

    def fault(self, name: str) -> bool:
        left = self.faults.get(name, 0)
        if left > 0:
            self.faults[name] = left - 1
            return True
        return False

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _storage(request: Request) -> tuple[Emulator, Storage]:
    em: Emulator = request.app.state.emulator
    return em, em.storage


def _reply(body: Any, status: int = 200) -> WireResponse:
    return WireResponse(json_reply(body, status), [])


async def _save(request: Request, path: Path) -> tuple[int, str]:
    """Stream the request body into `path`; (bytes, sha256)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            if chunk:
                out.write(chunk)
                digest.update(chunk)
                size += len(chunk)
    return size, digest.hexdigest()


async def initiate_route(request: Request) -> WireResponse:
    em, store = _storage(request)
    em.stats.side["storage_initiate"] += 1
    refused = em.auth_failure(request)
    if refused is not None:
        return WireResponse(refused, [])
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("content_type"), str):
        return _reply({"detail": "expected {file_name, content_type}"}, 422)
    name = os.path.basename(str(body.get("file_name") or "upload.bin")) or "upload.bin"
    file_id = secrets.token_hex(8)
    signature = secrets.token_urlsafe(16)
    expires = time.monotonic() + (-1.0 if store.fault("expire_urls") else SIGNED_URL_TTL)
    store.signed[signature] = (file_id, name, expires)
    origin = origin_of(request.scope)
    return _reply({"upload_url": f"{origin}/_storage/signed/{signature}",
                   "file_url": f"{origin}/files/storage/{file_id}/{name}"})


async def signed_put_route(request: Request) -> WireResponse:
    em, store = _storage(request)
    em.stats.side["storage_put"] += 1
    entry = store.signed.get(request.path_params["signature"])
    if entry is None or entry[2] < time.monotonic():
        await _drain(request)
        # GCS's answer to an expired signature, in its XML shape
        return WireResponse(Reply(403, b"<Error><Code>ExpiredToken</Code><Message>Invalid argument.</Message></Error>",
                                  (("content-type", "application/xml"),)), [])
    file_id, name, _ = entry
    path = store.directory / f"{file_id}-{name}"
    size, _digest = await _save(request, path)
    store.files[f"{file_id}/{name}"] = path
    del store.signed[request.path_params["signature"]]  # one PUT per signed URL
    em.stats.stored_bytes += size
    return WireResponse(Reply(200, b""), [])


async def _drain(request: Request) -> None:
    async for _ in request.stream():
        pass


async def token_route(request: Request) -> WireResponse:
    em, store = _storage(request)
    em.stats.side["storage_initiate"] += 1
    refused = em.auth_failure(request)
    if refused is not None:
        return WireResponse(refused, [])
    token = secrets.token_urlsafe(16)
    ttl = -1.0 if store.fault("expire_tokens") else TOKEN_TTL
    store.tokens[token] = time.monotonic() + ttl
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=max(ttl, 0.0) or 0.0)
    return _reply({"token": token, "token_type": "Bearer", "base_url": origin_of(request.scope) + "/cdn",
                   "expires_at": expires.isoformat()})


def _token_ok(request: Request, store: Storage) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expires = store.tokens.get(token.strip())
    return scheme.lower() == "bearer" and expires is not None and expires >= time.monotonic()


_EXPIRED = {"detail": "token expired or invalid; fetch a new one from /storage/auth/token"}


async def multipart_create_route(request: Request) -> WireResponse:
    em, store = _storage(request)
    em.stats.side["storage_initiate"] += 1
    if not _token_ok(request, store):
        return _reply(_EXPIRED, 401)
    name = os.path.basename(request.headers.get("x-fal-file-name", "") or "upload.bin") or "upload.bin"
    file_id = secrets.token_hex(8)
    upload_id = secrets.token_urlsafe(12)
    store.multipart[upload_id] = _Multipart(file_id, name)
    return _reply({"access_url": f"{origin_of(request.scope)}/cdn/files/{file_id}/{name}", "uploadId": upload_id})


async def multipart_route(request: Request) -> WireResponse:
    """PUT .../multipart/<uploadId>/<n> (a part) and POST .../multipart/<uploadId>/complete."""
    em, store = _storage(request)
    file_id, name = request.path_params["file_id"], request.path_params["name"]
    upload_id, step = request.path_params["upload_id"], request.path_params["step"]
    upload = store.multipart.get(upload_id)
    if request.method == "PUT":
        em.stats.side["storage_part"] += 1
        if not _token_ok(request, store):
            await _drain(request)
            return _reply(_EXPIRED, 401)
        if upload is None or (upload.file_id, upload.name) != (file_id, name) or not step.isdigit():
            await _drain(request)
            return _reply({"detail": "unknown upload"}, 404)
        if store.fault("fail_parts"):
            await _drain(request)
            return _reply({"detail": "injected part failure"}, 500)
        part = store.directory / f"{file_id}-{upload_id}-{int(step)}"
        _size, digest = await _save(request, part)
        etag = f'"{digest[:32]}"'
        upload.parts[int(step)] = (part, etag)
        return WireResponse(Reply(200, b"", (("etag", etag),)), [])
    em.stats.side["storage_complete"] += 1
    if not _token_ok(request, store):
        return _reply(_EXPIRED, 401)
    if upload is None or step != "complete":
        return _reply({"detail": "unknown upload"}, 404)
    try:
        listed = orjson.loads(await request.body()).get("parts")
        wanted = sorted((int(p["partNumber"]), str(p["etag"])) for p in listed)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return _reply({"detail": "expected {parts: [{partNumber, etag}]}"}, 422)
    have = sorted((n, etag) for n, (_, etag) in upload.parts.items())
    if wanted != have or [n for n, _ in wanted] != list(range(1, len(wanted) + 1)):
        return _reply({"detail": "parts do not match the uploaded parts"}, 400)
    path = store.directory / f"{file_id}-{name}"
    size = 0
    with path.open("wb") as out:
        for n in range(1, len(wanted) + 1):
            part_path = upload.parts[n][0]
            with part_path.open("rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)
            size += part_path.stat().st_size
            part_path.unlink()
    del store.multipart[upload_id]
    store.files[f"{file_id}/{name}"] = path
    em.stats.stored_bytes += size
    return _reply({"access_url": f"{origin_of(request.scope)}/cdn/files/{file_id}/{name}"})


def stored_file(em: Emulator, key: str) -> Path | None:
    """The file behind /files/storage/<id>/<name> or /cdn/files/<id>/<name>."""
    return em.storage.files.get(key)
