"""Large local inputs through fal storage instead of data URIs (docs/fal-protocol.md §9.7).

A `$file` above UPLOAD_THRESHOLD bytes is uploaded the way fal-client 1.0.3 uploads, and the request
carries its URL: a 200 MB file as a data URI is a 270 MB JSON body per request (and fal's ingress
refuses bodies that large). Each file is:

- hashed from disk (sha256, 1 MiB at a time) and uploaded once per content hash per target: four
  requests naming the same file share one upload (a lock per hash), and the URL is remembered
  beside the output (`<output>.uploads.jsonl`), so retries and resumes reuse it instead of paying
  the transfer again;
- up to one part (PART_SIZE) sent whole: `POST {rest}/storage/upload/initiate` then a PUT of the
  bytes to the signed `upload_url` (no API key: it is a signed URL on another host);
- larger, sent in parts through fal's CDN multipart API: a CDN token from
  `{rest}/storage/auth/token?storage_type=fal-cdn-v3`, `POST {base_url}/files/upload/multipart`,
  one PUT per PART_SIZE part (read from disk just before it is sent, PART_CONCURRENCY at a time: the
  memory held is a few parts, not the file), then `.../complete` with the parts' ETags.

Failures are retried per step (a failed part is sent again, not the whole file); an expired signed
URL (403) is initiated again and an expired CDN token (401) fetched again. All HTTP goes through
transport.Sender: one Sender with the API key limited to the storage API's origin, one without
any key for the signed and CDN URLs (their auth is the URL's signature or the short-lived token).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mimetypes
import os
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from batchrun.client.retry import TransportFailure
from batchrun.client.transport import Answer, Call, Sender, origin

__all__ = ["PART_SIZE", "UPLOAD_THRESHOLD", "UploadError", "Uploads", "uploads_path"]

UPLOAD_THRESHOLD = 8 * 1024 * 1024  # bytes; at or below, a file still goes as a data URI
PART_SIZE = 10 * 1024 * 1024  # fal-client's MULTIPART_CHUNK_SIZE
PART_CONCURRENCY = 3  # fal-client sends 10 at once; 3 x 10 MiB keeps a run's memory small
STEP_ATTEMPTS = 5
UPLOAD_TIMEOUT = 600.0  # seconds for one PUT of a part (or of a file up to one part)
_HASH_CHUNK = 1024 * 1024


class UploadError(Exception):
    """An upload that failed after its retries; the request becomes an `input_error` record."""


def uploads_path(output: Path) -> Path:
    return output.with_name(output.name + ".uploads.jsonl")


@dataclasses.dataclass(frozen=True, slots=True)
class _Stat:
    size: int
    mtime_ns: int
    inode: int


class Uploads:
    """One per run (an async context manager). `url_for(path)` returns the file's URL and what to
    record of it: {path, sha256, bytes, url}."""

    def __init__(self, *, rest_url: str, auth: str | None, remember: Path | None = None,
                 transport: httpx.AsyncBaseTransport | None = None, user_agent: str = "batchrun",
                 part_size: int = PART_SIZE, first_retry_delay: float = 0.2) -> None:
        self._rest = rest_url.rstrip("/")
        self._target = origin(self._rest)
        headers = {"User-Agent": user_agent}
        api_headers = dict(headers)
        if auth is not None:
            api_headers["Authorization"] = auth
        self._api = Sender(headers=api_headers, max_connections=4, transport=transport, origins=[self._target])
        self._open = Sender(headers=headers, max_connections=PART_CONCURRENCY + 1, transport=transport)
        self._remember = remember
        self._part_size = part_size
        self._first_retry_delay = first_retry_delay  # doubles per retry, at most 5 s
        self._known: dict[str, str] = {}  # sha256 -> URL, for this target
        self._hashes: dict[tuple[str, _Stat], str] = {}  # (path, stat) -> sha256
        self._locks: dict[str, anyio.Lock] = {}
        self._token: tuple[str, str] | None = None  # (Authorization value, base_url)
        self.uploaded = 0  # files actually transferred this run (for tests and the summary)
        if remember is not None and remember.is_file():
            for line in remember.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash: that upload is simply done again
                if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
                    continue
                if entry.get("target") == self._target:  # another target's URL is not ours to send
                    self._known[str(entry.get("sha256"))] = entry["url"]

    async def __aenter__(self) -> Uploads:
        await self._api.__aenter__()
        await self._open.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._open.__aexit__(*exc_info)
        await self._api.__aexit__(*exc_info)

    # ---- the one entry point -----------------------------------------------------------------

    async def url_for(self, path: str) -> dict[str, Any]:
        try:
            stat = await anyio.to_thread.run_sync(os.stat, path)
        except OSError as exc:
            raise UploadError(f"cannot read input file {path}: {exc.strerror or exc}") from exc
        key = (path, _Stat(stat.st_size, stat.st_mtime_ns, stat.st_ino))
        sha = self._hashes.get(key)
        if sha is None:
            sha = self._hashes[key] = await anyio.to_thread.run_sync(_sha256, path)
        lock = self._locks.setdefault(sha, anyio.Lock())
        async with lock:  # the same content named by many requests: one upload, the rest wait for it
            url = self._known.get(sha)
            if url is None:
                url = await self._upload(path, stat.st_size)
                self._known[sha] = url
                self.uploaded += 1
                self._note(path, sha, stat.st_size, url)
        return {"path": path, "sha256": sha, "bytes": stat.st_size, "url": url}

    def _note(self, path: str, sha: str, size: int, url: str) -> None:
        if self._remember is None:
            return
        line = json.dumps({"target": self._target, "sha256": sha, "bytes": size, "url": url, "path": path})
        with self._remember.open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())  # remembered before any request uses it: a crash never re-pays it

    # ---- uploading ---------------------------------------------------------------------------

    async def _upload(self, path: str, size: int) -> str:
        name = os.path.basename(path) or "upload.bin"
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if size <= self._part_size:
            return await self._single(path, name, mime)
        return await self._multipart(path, name, mime, size)

    async def _single(self, path: str, name: str, mime: str) -> str:
        data = await anyio.to_thread.run_sync(Path(path).read_bytes)  # at most one part
        for _ in range(3):  # an expired signed URL: initiate again
            body = json.dumps({"file_name": name, "content_type": mime}).encode()
            answer = await self._step(self._api, Call(
                "POST", f"{self._rest}/storage/upload/initiate", None, body,
                {"Content-Type": "application/json", "Accept": "application/json"}, False, 60.0,
                {"storage_type": "gcs"}), "initiate the upload")
            started = _json(answer, "initiate")
            upload_url, file_url = started.get("upload_url"), started.get("file_url")
            if not isinstance(upload_url, str) or not isinstance(file_url, str):
                raise UploadError("the storage API's initiate answer has no upload_url/file_url")
            put = await self._step(self._open, Call("PUT", upload_url, None, data, {"Content-Type": mime}, False,
                                                    UPLOAD_TIMEOUT), "upload the file", accept=(403,))
            if put.status_code == 403:
                continue  # the signature expired before the bytes arrived
            return file_url
        raise UploadError("the signed upload URL kept expiring (403) before the upload finished")

    async def _cdn_token(self, refresh: bool = False) -> tuple[str, str]:
        if self._token is None or refresh:
            answer = await self._step(self._api, Call(
                "POST", f"{self._rest}/storage/auth/token", None, b"{}",
                {"Content-Type": "application/json", "Accept": "application/json"}, False, 60.0,
                {"storage_type": "fal-cdn-v3"}), "get an upload token")
            data = _json(answer, "token")
            token, kind, base = data.get("token"), data.get("token_type"), data.get("base_url")
            if not (isinstance(token, str) and isinstance(kind, str) and isinstance(base, str)):
                raise UploadError("the storage API's token answer has no token/token_type/base_url")
            self._token = (f"{kind} {token}", base.rstrip("/"))
        return self._token

    async def _with_token(self, make: Any, what: str) -> Answer:
        """A CDN step with the token; a 401 (expired token) fetches a new one and tries again."""
        auth, base = await self._cdn_token()
        for _ in range(3):
            answer = await self._step(self._open, make(auth, base), what, accept=(401,))
            if answer.status_code != 401:
                return answer
            auth, base = await self._cdn_token(refresh=True)
        raise UploadError(f"could not {what}: the upload token kept being refused (401)")

    async def _multipart(self, path: str, name: str, mime: str, size: int) -> str:
        created = _json(await self._with_token(lambda auth, base: Call(
            "POST", f"{base}/files/upload/multipart", None, None,
            {"Authorization": auth, "Content-Type": mime, "X-Fal-File-Name": name, "Accept": "application/json"},
            False, 60.0), "start the multipart upload"), "multipart")
        access_url, upload_id = created.get("access_url"), created.get("uploadId")
        if not isinstance(access_url, str) or not isinstance(upload_id, str):
            raise UploadError("the CDN's multipart answer has no access_url/uploadId")
        count = -(-size // self._part_size)
        etags: dict[int, str] = {}
        limiter = anyio.CapacityLimiter(PART_CONCURRENCY)

        async def send(number: int) -> None:
            async with limiter:  # read only when it can be sent: memory is a few parts
                offset = (number - 1) * self._part_size
                data = await anyio.to_thread.run_sync(_read_part, path, offset, self._part_size)
                answer = await self._with_token(lambda auth, _base: Call(
                    "PUT", f"{access_url}/multipart/{upload_id}/{number}", None, data,
                    {"Authorization": auth, "Content-Type": mime, "Accept-Encoding": "identity"},
                    False, UPLOAD_TIMEOUT), f"upload part {number} of {count}")
                etag = answer.headers.get("etag")
                if not etag:
                    raise UploadError(f"part {number} of {count}: the CDN gave no ETag")
                etags[number] = etag

        try:
            async with anyio.create_task_group() as group:
                for number in range(1, count + 1):
                    group.start_soon(send, number)
        except* UploadError as failed:  # one part gave up: the others were cancelled; say which
            raise failed.exceptions[0] from None
        parts = [{"partNumber": n, "etag": etags[n]} for n in range(1, count + 1)]
        await self._with_token(lambda auth, _base: Call(
            "POST", f"{access_url}/multipart/{upload_id}/complete", None, json.dumps({"parts": parts}).encode(),
            {"Authorization": auth, "Content-Type": "application/json"}, False, 120.0), "complete the upload")
        return access_url

    async def _step(self, sender: Sender, call: Call, what: str, accept: tuple[int, ...] = ()) -> Answer:
        """One exchange, retried on transport failures, 429 and 5xx; other statuses are final."""
        problem = ""
        for attempt in range(STEP_ATTEMPTS):
            if attempt:
                await anyio.sleep(min(self._first_retry_delay * 2 ** (attempt - 1), 5.0))
            answer = await sender.exchange(call)
            if isinstance(answer, TransportFailure):
                problem = answer.message
                if answer.fatal:
                    break
                continue
            if answer.is_success or answer.status_code in accept:
                return answer
            problem = f"HTTP {answer.status_code}: {answer.text[:200]}"
            if answer.status_code != 429 and answer.status_code < 500:
                break
        raise UploadError(f"could not {what}: {problem}")


def _json(answer: Answer, what: str) -> dict[str, Any]:
    try:
        data = json.loads(answer.content)
    except ValueError:
        raise UploadError(f"the storage API's {what} answer is not JSON") from None
    if not isinstance(data, dict):
        raise UploadError(f"the storage API's {what} answer is not an object")
    return data


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _read_part(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as source:
        source.seek(offset)
        return source.read(size)
