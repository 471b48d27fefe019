"""`download: true`: fetch the media a result points at, content-addressed beside the output.

A media object is any object in a result with a string `url` and a `content_type` or `file_name`
(fal's File/Image shape). Each is stored once as `<output dir>/<output stem>/files/<sha256><ext>`
(identical images from different requests share one file), and the record gains
`artifacts: [{url, path, sha256, bytes, content_type}]` with `path` relative to the output's
folder, so an output folder can be moved or archived as a whole.

Downloads use the run's HTTP stack (`batchrun.client.transport.Sender`) with a Sender of their own:
the run's carries the API key, which must never be sent to a CDN. Redirects are followed here (at
most MAX_REDIRECTS; a CDN may answer with one), each hop a plain request without credentials. They
are bounded (MAX_PARALLEL at once across the run), retried (connection
errors, 408/429/5xx; RETRIES times, doubling backoff), capped at MAX_BYTES a file, and streamed to a
temporary file that is renamed into place, so a file under its hash is always complete. A failed
download becomes an entry with `error` (and null path/hash): the result is kept, the request stays
ok. `data:` URLs are decoded, not fetched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import mimetypes
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import httpx

from batchrun.client.transport import SEND_ERRORS, Call, Sender, ssl_context, transport_failure

__all__ = ["MAX_BYTES", "MAX_PARALLEL", "RETRIES", "Downloader", "files_dir", "media_objects"]

MAX_BYTES = 200 * 1024 * 1024  # one file; a result pointing at something larger is not a media file we keep
MAX_PARALLEL = 8
RETRIES = 3  # after the first attempt
BACKOFF_S = 0.25  # first retry delay, doubling
TIMEOUT_S = 60.0  # read idle timeout of a download
MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 1 << 16
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Failed(Exception):
    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def files_dir(output: Path) -> Path:
    """Where an output's artifacts go: `<output dir>/<output stem>/files/`."""
    return output.parent / output.stem / "files"


def media_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every media object in a result, depth first in document order."""
    if isinstance(value, dict):
        if isinstance(value.get("url"), str) and (
            isinstance(value.get("content_type"), str) or isinstance(value.get("file_name"), str)
        ):
            yield value
            return
        for v in value.values():
            yield from media_objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from media_objects(v)


def _extension(media: dict[str, Any], content_type: str | None) -> str:
    """The stored file's suffix: from the file name, else the URL's path, else the content type."""
    names = [media["file_name"]] if isinstance(media.get("file_name"), str) else []
    if not media["url"].startswith("data:"):
        names.append(urllib.parse.urlsplit(media["url"]).path)
    for name in names:
        suffix = PurePosixPath(name).suffix
        if 1 < len(suffix) <= 10 and suffix[1:].isalnum():
            return suffix.lower()
    if content_type:
        guessed = mimetypes.guess_extension(content_type.split(";")[0].strip())
        if guessed:
            return guessed
    return ""


class Downloader:
    """One per run. `await fetch(result)` -> the record's `artifacts` list."""

    def __init__(self, output: Path, *, scrub_text: Callable[[str], str] = lambda s: s,
                 transport: httpx.AsyncBaseTransport | None = None, max_bytes: int = MAX_BYTES,
                 backoff_s: float = BACKOFF_S, ca_bundle: str | None = None) -> None:
        self.output = output
        self.max_bytes = max_bytes
        self.backoff_s = backoff_s
        self.dir = files_dir(output)
        self._scrub = scrub_text
        self._sender = Sender(headers={"User-Agent": "batchrun"}, max_connections=MAX_PARALLEL, transport=transport,
                              verify=ssl_context(ca_bundle) if transport is None else None)
        self._limit = anyio.Semaphore(MAX_PARALLEL)
        self.downloaded = 0  # files written (not deduplicated ones)
        self.failed = 0

    async def aclose(self) -> None:
        await self._sender.__aexit__(None, None, None)

    async def fetch(self, result: Any) -> list[dict[str, Any]]:
        """Download every media object of `result` (each distinct URL once), in document order."""
        seen: dict[str, dict[str, Any]] = {}
        for media in media_objects(result):
            if media["url"] not in seen:
                seen[media["url"]] = media
        entries: dict[str, dict[str, Any]] = {}

        async def one(url: str, media: dict[str, Any]) -> None:
            async with self._limit:
                entries[url] = await self._one(media)

        async with anyio.create_task_group() as tg:
            for url, media in seen.items():
                tg.start_soon(one, url, media)
        return [entries[url] for url in seen]

    async def _one(self, media: dict[str, Any]) -> dict[str, Any]:
        url: str = media["url"]
        declared = media.get("content_type") if isinstance(media.get("content_type"), str) else None
        entry: dict[str, Any] = {"url": url, "path": None, "sha256": None, "bytes": None, "content_type": declared}
        try:
            if url.startswith("data:"):
                data, mime = _decode_data_url(url, self.max_bytes)
                entry["content_type"] = declared or mime
                digest, size, tmp = await anyio.to_thread.run_sync(self._store_bytes, data)
            else:
                digest, size, tmp, served = await self._download(url)
                entry["content_type"] = declared or served
        except _Failed as exc:
            self.failed += 1
            entry["error"] = self._scrub(str(exc))
            return entry
        final = self.dir / f"{digest}{_extension(media, entry['content_type'])}"
        await anyio.to_thread.run_sync(self._place, tmp, final)
        entry.update(path=os.path.relpath(final, self.output.parent), sha256=digest, bytes=size)
        return entry

    def _place(self, tmp: Path, final: Path) -> None:
        if final.exists():
            tmp.unlink()  # the same bytes are already stored under this hash
        else:
            os.replace(tmp, final)
            self.downloaded += 1

    def _temp(self) -> tuple[int, Path]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.dir, prefix=".download-", suffix=".part")
        except OSError as exc:
            raise _Failed(f"cannot write into {self.dir}: {exc.strerror or exc}", retry=False) from None
        return fd, Path(name)

    def _store_bytes(self, data: bytes) -> tuple[str, int, Path]:
        fd, tmp = self._temp()
        try:
            with os.fdopen(fd, "wb") as f:
                self._write(f, data)
        except _Failed:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return hashlib.sha256(data).hexdigest(), len(data), tmp

    def _write(self, f: Any, data: bytes) -> None:
        """A full disk or a file-size limit is this machine's problem, not the server's: an error
        that names the folder, not a connection error to retry."""
        try:
            f.write(data)
        except OSError as exc:
            raise _Failed(f"cannot write into {self.dir}: {exc.strerror or exc}", retry=False) from None

    async def _download(self, url: str) -> tuple[str, int, Path, str | None]:
        delay = self.backoff_s
        for attempt in range(RETRIES + 1):
            try:
                return await self._attempt(url)
            except _Failed as exc:
                if not exc.retry or attempt == RETRIES:
                    raise
            await anyio.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, url: str) -> tuple[str, int, Path, str | None]:
        if not url.startswith(("http://", "https://")):
            raise _Failed(f"not an http(s) or data URL: {url[:80]}", retry=False)
        fd, tmp = self._temp()
        keep = False
        try:
            with os.fdopen(fd, "wb") as f:
                digest, size, served = await self._fetch(url, f)
                try:
                    f.flush()  # buffered bytes hit the disk here: their failure is ours too
                except OSError as exc:
                    raise _Failed(f"cannot write into {self.dir}: {exc.strerror or exc}", retry=False) from None
            keep = True
            return digest.hexdigest(), size, tmp, served
        finally:
            if not keep:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    async def _fetch(self, url: str, f: Any) -> tuple[Any, int, str | None]:
        """GET `url` (following redirects) into the open file `f`: (sha256, size, content type)."""
        location = url
        for _ in range(MAX_REDIRECTS + 1):
            call = Call("GET", location, None, None, {}, False, TIMEOUT_S)
            try:
                async with self._sender.stream(call) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        location = str(response.url.join(response.headers["location"]))
                        continue
                    if response.status_code != 200:
                        raise _Failed(f"HTTP {response.status_code} fetching {url}",
                                      retry=response.status_code in _RETRY_STATUS)
                    length = response.headers.get("content-length")
                    if length is not None and length.isdigit() and int(length) > self.max_bytes:
                        raise _Failed(f"{url} is {int(length)} bytes, over the {self.max_bytes}-byte cap", retry=False)
                    digest, size = hashlib.sha256(), 0
                    async for chunk in response.aiter_bytes(_CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise _Failed(f"{url} is over the {self.max_bytes}-byte cap", retry=False)
                        digest.update(chunk)
                        self._write(f, chunk)
                    return digest, size, response.headers.get("content-type")
            except SEND_ERRORS as exc:
                failure = transport_failure(exc)
                what = "timeout" if failure.timeout else failure.kind or "connection error"
                raise _Failed(f"{what} fetching {url}: {failure.message}", retry=not failure.fatal) from None
        raise _Failed(f"more than {MAX_REDIRECTS} redirects fetching {url}", retry=False)


def _decode_data_url(url: str, max_bytes: int) -> tuple[bytes, str | None]:
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise _Failed("malformed data URL (no comma)", retry=False)
    parts = header.split(";")
    mime = parts[0] or None
    try:
        data = base64.b64decode(payload, validate=False) if "base64" in parts[1:] else (
            urllib.parse.unquote_to_bytes(payload))
    except (binascii.Error, ValueError) as exc:
        raise _Failed(f"malformed data URL: {exc}", retry=False) from None
    if len(data) > max_bytes:
        raise _Failed(f"data URL of {len(data)} bytes, over the {max_bytes}-byte cap", retry=False)
    return data, mime
