"""`batchrun view OUT [BASE]`: a local page that follows an output while a run writes it.

`Follower` reads the lines appended since its last look (a partial last line waits for the next
one; a file that shrank was replaced, so it starts over) and keeps the newest record of each id as a
`LiveItem`: what the page shows of it (`batchrun.report.shots`' shot, its error type, and with
BASE the base record's pictures and the verdict by look). Every change gets the next sequence
number, so the page asks `GET /api/state?since=N` once a second and receives only what changed;
counts, the latency plot, errors by type, filters and the contact sheet are drawn by the page's
own script (`live_page`) from those items.

What it serves, and nothing else: the page, the state, and `GET /files/{side}/{n}`: the n-th
downloaded artifact file that a record of that side names, found under that output's folder (a path
outside it is never served, and no path comes from the request). Records hold no secret (the run
redacts them before writing), and the page shows what `report --html` shows. The app answers only
requests whose Host is the address it was started for (DNS rebinding), and its page may run only its
own inline script (a per-process nonce in the Content-Security-Policy).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from batchrun.output.manifest import manifest_path
from batchrun.output.reading import decode_line, finished_at, shape_problem
from batchrun.output.sink import output_in_use
from batchrun.report.live_page import render_live_page
from batchrun.report.resultdiff import PHASH_THRESHOLD, artifact_hashes, artifact_phashes, phash_distance
from batchrun.report.shots import Image, Shot, shot_of, show

__all__ = ["Follower", "LiveItem", "create_view_app"]

MAX_READ = 8 * 1024 * 1024  # bytes read per look: a huge output fills in over several polls


@dataclasses.dataclass(slots=True)
class LiveItem:
    seq: int
    shot: Shot
    error_type: str | None
    finished: Any  # `finished_at` of the record, to keep the newest one per id
    looks: list[tuple[str | None, str | None]]  # (sha256, phash) per picture, in result order


class Follower:
    """The newest record per id of one output, kept current by `poll()` (thread-safe)."""

    def __init__(self, output: Path, side: str) -> None:
        self.output = output
        self.side = side
        self.root = output.resolve().parent
        self.items: dict[str, LiveItem] = {}
        self.files: list[str] = []  # artifact files records named, served as /files/<side>/<n>
        self._file_numbers: dict[str, int] = {}
        self.seq = 0
        self.resets = 0  # times the file was found replaced (shorter than what was read)
        self._offset = 0
        self._lock = threading.Lock()

    def poll(self) -> None:
        """Read what was appended since the last call."""
        with self._lock:
            try:
                size = os.path.getsize(self.output)
            except OSError:
                return  # not there (yet): a run creates it with its first record
            if size < self._offset:  # replaced (a --fresh run): start over
                self.items.clear()
                self._offset = 0
                self.resets += 1
            if size == self._offset:
                return
            with open(self.output, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read(min(size - self._offset, MAX_READ))
            end = chunk.rfind(b"\n") + 1  # a partial last line waits for its newline
            if end == 0 and len(chunk) == MAX_READ:
                end = len(chunk)  # one line longer than a whole read: skip it rather than stall
            for raw in chunk[:end].splitlines():
                record = decode_line(raw.rstrip(b"\r"))
                if record is not None and shape_problem(record) is None:
                    self._offer(record)
            self._offset += end

    def _offer(self, record: dict[str, Any]) -> None:
        when = finished_at(record)
        old = self.items.get(record["id"])
        if old is not None and old.finished is not None and when is not None and when < old.finished:
            return  # an older record of the id (a re-check appends later ones; the newest wins)
        shot = shot_of(record, self.output, self.root)
        hashes, phashes = artifact_hashes(record), artifact_phashes(record)
        urls = [a.get("url") for a in record.get("artifacts") or [] if isinstance(a, dict)]
        looks = [(hashes.get(url), phashes.get(url)) for url in urls if isinstance(url, str)]
        error = record.get("error")
        error_type = error.get("type") if isinstance(error, dict) and isinstance(error.get("type"), str) else None
        self.seq += 1
        self.items[record["id"]] = LiveItem(self.seq, self._served(shot), error_type, when, looks)

    def _served(self, shot: Shot) -> Shot:
        """The shot with each downloaded picture's src pointing at /files/<side>/<n>."""
        images = []
        for image in shot.images:
            if image.file is None:
                images.append(image)
                continue
            if not Path(image.file).is_relative_to(self.root):
                continue  # an absolute artifact path outside the output's folder is not served
            number = self._file_numbers.setdefault(image.file, len(self.files))
            if number == len(self.files):
                self.files.append(image.file)
            images.append(dataclasses.replace(image, src=f"files/{self.side}/{number}"))
        return dataclasses.replace(shot, images=tuple(images))

    def changed_since(self, since: int) -> list[LiveItem]:
        with self._lock:
            return sorted((i for i in self.items.values() if i.seq > since), key=lambda i: i.seq)

    def file(self, number: int) -> str | None:
        with self._lock:
            return self.files[number] if 0 <= number < len(self.files) else None


def verdict_by_look(base: LiveItem, new: LiveItem, threshold: int) -> tuple[str | None, int | None]:
    """(`identical` | `same` | `changed` | `bytes` (other bytes, no perceptual hash to tell) |
    `newly failing` | `newly passing`, the largest pHash distance); (None, None) when neither side
    has pictures to compare."""
    if base.shot.ok != new.shot.ok:
        return ("newly failing" if base.shot.ok else "newly passing"), None
    if not base.looks or not new.looks:
        return None, None
    if len(base.looks) != len(new.looks):
        return "changed", None
    if all(a[0] is not None and a[0] == b[0] for a, b in zip(base.looks, new.looks, strict=True)):
        return "identical", 0
    distances = [phash_distance(a[1], b[1]) if a[1] and b[1] else None for a, b in zip(base.looks, new.looks,
                                                                                         strict=True)]
    if any(d is None for d in distances):
        return "bytes", None
    worst = max(d for d in distances if d is not None)
    return ("same" if worst <= threshold else "changed"), worst


def _item_json(item: LiveItem, base: LiveItem | None, threshold: int) -> dict[str, Any]:
    shot = item.shot
    out: dict[str, Any] = {
        "seq": item.seq, "id": shot.id, "index": shot.index, "job": shot.job, "ok": shot.ok,
        "label": shot.label(), "matrix": {key: show(value) for key, value in shot.matrix.items()},
        "row": shot.row, "error_type": item.error_type, "error": shot.error, "latency_s": shot.latency_s,
        "images": [_image_json(image) for image in shot.images], "text": shot.text,
        "failed_checks": list(shot.failed_checks), "tooltip": shot.tooltip,
    }
    if base is not None:
        visual, distance = verdict_by_look(base, item, threshold)
        out["base"] = {"ok": base.shot.ok, "error": base.shot.error,
                       "images": [_image_json(image) for image in base.shot.images]}
        out.update(visual=visual, distance=distance)
    return out


def _image_json(image: Image) -> dict[str, Any]:
    return {"src": image.src, "width": image.width, "height": image.height}


def _planned(output: Path) -> int | None:
    import json

    try:
        manifest = json.loads(manifest_path(output).read_bytes())
        count = manifest["plan"]["count"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def create_view_app(output: Path, base: Path | None = None, *, hosts: list[str] | None = None,
                    phash_threshold: int = PHASH_THRESHOLD) -> Starlette:
    """The viewer's ASGI app for `output` (and `base` to compare with). `hosts`: the Host names it
    answers (default: the loopback names)."""
    new_side = Follower(output, "new")
    base_side = Follower(base, "base") if base is not None else None
    nonce = secrets.token_urlsafe(16)
    page = render_live_page(output.name, base.name if base is not None else None, nonce)
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
           "img-src 'self' data: https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers={"content-security-policy": csp, "cache-control": "no-store"})

    async def state(request: Request) -> Response:
        try:
            since = max(0, int(request.query_params.get("since", "0")))
        except ValueError:
            return PlainTextResponse("since must be an integer", status_code=400)
        resets = new_side.resets
        new_side.poll()
        if base_side is not None:
            base_side.poll()
        if new_side.resets != resets or since > new_side.seq:
            since = 0  # the output was replaced, or this page followed an earlier viewer: send everything
            reset = True
        else:
            reset = False
        base_items = base_side.items if base_side is not None else {}
        items = [_item_json(item, base_items.get(item.shot.id) if base_side else None, phash_threshold)
                 for item in new_side.changed_since(since)]
        return JSONResponse({
            "seq": new_side.seq, "reset": reset, "items": items, "planned": _planned(output),
            "running": output_in_use(output), "output": output.name,
            "base": base.name if base is not None else None,
        }, headers={"cache-control": "no-store"})

    async def files(request: Request) -> Response:
        side = {"new": new_side, "base": base_side}.get(request.path_params["side"])
        number = request.path_params["number"]
        path = side.file(number) if side is not None else None
        if path is None or not os.path.isfile(path):
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, headers={"cache-control": "max-age=3600"})

    async def not_found(request: Request) -> Response:
        return PlainTextResponse(f"not found: {unquote(request.url.path)[:200]}", status_code=404)

    allowed = hosts if hosts is not None else ["127.0.0.1", "localhost", "::1", "[::1]"]
    return Starlette(
        routes=[Route("/", index), Route("/api/state", state),
                Route("/files/{side}/{number:int}", files), Route("/{rest:path}", not_found)],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed)],
    )
