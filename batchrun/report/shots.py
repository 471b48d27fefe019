"""What the HTML report and HTML diff show of each record, and the HTML pieces they share.

A `Shot` is one request reduced to what a page needs: its matrix values, dataset row and repeat, a
one-line-per-argument tooltip, its images (downloaded artifact by relative path when the file
exists, else the URL) or its error, and its failed expectation checks (a tile with one is marked, so
it does not pass for a good picture). Reading keeps only shots in memory (results can be big), newest record per id.

Everything a record says is untrusted: every string is HTML-escaped, and only http(s) URLs,
`data:image/` URIs and our own relative artifact paths become a `src`/`href` (never
`javascript:`). The page shell is self-contained: inline CSS, inline SVG, no scripts, no fonts.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from collections.abc import Container, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from batchrun.errors import UsageError
from batchrun.output.reading import (
    Newest,
    error_text,
    failed_checks,
    finished_at,
    iter_located,
    one_line,
    seconds,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".avif", ".bmp")
LAZY_AFTER = 48  # more images than this: let the browser load the off-screen ones lazily
TOOLTIP_VALUE_CHARS = 120
RESULT_TEXT_CHARS = 240  # a result without images, shown as text in its tile


@dataclasses.dataclass(frozen=True, slots=True)
class Image:
    src: str  # as the page references it: a relative path (downloaded artifact) or the URL
    width: int | None
    height: int | None
    file: str | None = None  # the downloaded artifact's absolute path, when the page uses it


@dataclasses.dataclass(frozen=True, slots=True)
class Shot:
    id: str
    index: int
    job: str
    ok: bool
    matrix: dict[str, Any]
    tooltip: str  # id, job, then `name: value` per argument, one per line
    images: tuple[Image, ...]
    error: str  # `type: detail` (one line) when not ok
    latency_s: float | None
    text: str = ""  # an ok result without images, as short JSON (shown in place of a picture)
    row: int | None = None  # the dataset row, when the job has a dataset
    repeat: int = 0
    failed_checks: tuple[str, ...] = ()  # messages of the expectation checks that failed

    def label(self, skip: Container[str] = ()) -> str:
        """`row 3, style=anime, repeat 1`: what tells this request from its neighbours on a page
        (matrix keys in `skip` are said by the sheet's row and column already)."""
        parts = [f"row {self.row}"] if self.row is not None else []
        parts += [f"{key}={show(value)}" for key, value in self.matrix.items() if key not in skip]
        parts += [f"repeat {self.repeat}"] if self.repeat else []
        return ", ".join(parts)


def esc(value: Any) -> str:
    """Text or attribute content, escaped (quotes included)."""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def show(value: Any) -> str:
    """A matrix or argument value as short display text (strings without quotes)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


@dataclasses.dataclass(slots=True)
class MissingFiles:
    """Downloaded artifacts whose file is not where the record says (an output moved without its
    `<stem>/files/`): their images fall back to the result URL, which may be dead by now."""

    count: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)  # the first few paths as recorded

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.examples) < 3:
            self.examples.append(path)

    def message(self, output: str | Path) -> str:
        """`N artifact files of OUT are missing (e.g. files/ab.png): ...`; "" when none is."""
        if not self.count:
            return ""
        noun = "artifact file is" if self.count == 1 else "artifact files are"
        return (f"{self.count} {noun} missing beside {output} (e.g. {', '.join(self.examples)}): the page uses "
                "the result URLs instead, which may no longer be served; keep the output's files/ folder with it")


def load_shots(output: str | Path, html_path: str | Path, ids: Container[str] | None = None,
               missing: MissingFiles | None = None) -> list[Shot]:
    """The newest record of each id of `output` (or of each of `ids`), as shots in plan order.

    Artifact paths are resolved against the output file's directory (then the working directory)
    and given relative to the directory `html_path` will be written to; `missing` counts the ones
    whose file is not there.

    Raises:
        RecordsError: the file cannot be read (see `batchrun.output.reading`).
    """
    output = Path(output)
    html_dir = Path(html_path).resolve().parent
    newest: Newest[Shot] = Newest()
    for located in iter_located(output):
        record = located.record
        if ids is None or record["id"] in ids:
            newest.offer(record["id"], finished_at(record), shot_of(record, output, html_dir, missing))
    return sorted(newest.values.values(), key=lambda s: (s.index, s.id))


def shot_of(record: dict[str, Any], output: Path, html_dir: Path, missing: MissingFiles | None = None) -> Shot:
    """One record as a shot (artifact paths relative to `html_dir`)."""
    raw_arguments, raw_matrix = record.get("arguments"), record.get("matrix")
    arguments = raw_arguments if isinstance(raw_arguments, dict) else {}
    matrix = raw_matrix if isinstance(raw_matrix, dict) else {}
    lines = [f"id: {record['id']}", f"job: {record['job']}"]
    lines += [f"{key}: {one_line(show(value), TOOLTIP_VALUE_CHARS)}" for key, value in arguments.items()]
    local = _artifact_files(record, output, html_dir, missing)
    images = tuple(
        image
        for url, width, height in _image_refs(record.get("result"))
        if (image := _image(url, width, height, local)) is not None
    )
    return Shot(
        id=record["id"],
        index=record["index"],
        job=record["job"],
        ok=record["status"] == "ok",
        matrix=dict(matrix),
        tooltip="\n".join(lines),
        images=images,
        error="" if record["status"] == "ok" else error_text(record, 200),
        latency_s=seconds((record.get("timing") or {}).get("latency_s")),
        text=one_line(record.get("result"), RESULT_TEXT_CHARS) if record["status"] == "ok" and not images else "",
        row=_count(record.get("row")),
        repeat=_count(record.get("repeat")) or 0,
        failed_checks=tuple(failed_checks(record)) if record["status"] == "ok" else (),
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _image_refs(value: Any) -> Iterator[tuple[str, int | None, int | None]]:
    """(url, width, height) of every image-like `{url: ...}` object in a result, in order."""
    if isinstance(value, list):
        for item in value:
            yield from _image_refs(item)
    elif isinstance(value, dict):
        url = value.get("url")
        if isinstance(url, str) and _looks_like_image(url, value.get("content_type")):
            yield url, _dimension(value.get("width")), _dimension(value.get("height"))
            return
        for item in value.values():
            yield from _image_refs(item)


def _looks_like_image(url: str, content_type: Any) -> bool:
    if isinstance(content_type, str) and content_type:
        return content_type.lower().startswith("image/")
    if url.startswith("data:"):
        return url.lower().startswith("data:image/")
    return urlsplit(url).path.lower().endswith(IMAGE_SUFFIXES)


def _dimension(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _artifact_files(
    record: dict[str, Any], output: Path, html_dir: Path, missing: MissingFiles | None
) -> dict[str, tuple[str, str]]:
    """URL -> (path of its downloaded copy relative to the page, absolute path), for copies that exist."""
    found: dict[str, tuple[str, str]] = {}
    for artifact in record.get("artifacts") or []:
        if not isinstance(artifact, dict) or not isinstance(artifact.get("url"), str):
            continue
        stored = artifact.get("path")
        if not isinstance(stored, str) or not stored:
            continue
        candidates = [Path(stored)] if Path(stored).is_absolute() else [output.parent / stored, Path(stored)]
        for candidate in candidates:
            if candidate.is_file():
                absolute = candidate.resolve()
                relative = os.path.relpath(absolute, html_dir)
                found[artifact["url"]] = (quote(Path(relative).as_posix()), str(absolute))
                break
        else:
            if missing is not None:
                missing.add(stored)
    return found


def _image(url: str, width: int | None, height: int | None, local: dict[str, tuple[str, str]]) -> Image | None:
    if url in local:
        return Image(local[url][0], width, height, local[url][1])
    if url.lower().startswith(("http://", "https://", "data:image/")):
        return Image(url, width, height)
    return None  # another scheme (javascript:, file:, ...) never becomes a link


def tile(shot: Shot, caption: str, *, lazy: bool) -> str:
    """One shot as figures: a linked thumbnail per image (arguments on hover), or its error. A shot
    with failed expectation checks is outlined and says how many failed (their messages on hover)."""
    tooltip = shot.tooltip
    checks, marked = "", ""
    if shot.failed_checks:
        count = len(shot.failed_checks)
        checks = f'<div class="checks">✗ {count} failed check{"s" if count != 1 else ""}</div>'
        marked = " checks-failed"
        tooltip += "\nfailed: " + "\nfailed: ".join(one_line(m, TOOLTIP_VALUE_CHARS) for m in shot.failed_checks)
    tip = esc(tooltip)
    label = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    hover = f'<span class="tip" aria-hidden="true">{tip}</span>'
    if not shot.ok or not shot.images:
        kind = "failed" if not shot.ok else "noimage"
        text = shot.error if not shot.ok else shot.text or "no image in the result"
        title = esc(f"{tooltip}\n{text}")
        return (f'<figure class="shot {kind}{marked}" title="{title}"><div class="err">{esc(text)}</div>{checks}'
                f"{label}{hover}</figure>")
    loading = ' loading="lazy"' if lazy else ""
    figures = []
    for image in shot.images:
        size = ""
        if image.width and image.height:
            size = f' width="{image.width}" height="{image.height}"'
        figures.append(
            f'<figure class="shot{marked}"><a href="{esc(image.src)}" title="{tip}" target="_blank" rel="noopener">'
            f'<img src="{esc(image.src)}" alt="{esc(shot.id)}"{size}{loading}></a>'
            f"{checks}{label}{hover}</figure>"
        )
    return "".join(figures)


def lazy_images(shots: list[Shot]) -> bool:
    return sum(len(s.images) for s in shots) > LAZY_AFTER


CSS = """
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0 auto;max-width:1400px;padding:16px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:#1d232a;background:#f5f6f8;overflow-wrap:anywhere}
h1{font-size:1.35rem;margin:0 0 4px}h2{font-size:1.1rem;margin:28px 0 10px;border-bottom:1px solid #d5d9e0;
padding-bottom:4px}h3{font-size:1rem;margin:16px 0 8px}
.muted{color:#5b6572}code{font-size:.92em;background:#e9ecf1;padding:0 3px;border-radius:3px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(340px,100%),1fr));gap:12px}
.cards.wide{grid-template-columns:repeat(auto-fill,minmax(min(520px,100%),1fr))}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px;min-width:0}
.card h3{margin:0 0 6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:3px 8px 3px 0;border-bottom:1px solid #eceef2}
.scroll{overflow-x:auto;max-width:100%}
.bad{color:#b42318;font-weight:600}.good{color:#067647;font-weight:600}.running{color:#b54708;font-weight:600}
svg{display:block;width:100%;height:auto;max-width:760px}
svg text{font:13px system-ui,sans-serif;fill:#3b4450}
.metrics th{width:11em;font-weight:600}
.sheet{border-collapse:separate;border-spacing:6px;width:auto}
.sheet th{font-weight:600;border:0;padding:2px 4px;font-size:.9em}
.sheet tbody th{max-width:10em;text-align:right;overflow-wrap:normal}
.sheet td{border:0;padding:0}
.sheet thead th{text-align:center}
.plain{display:flex;flex-wrap:wrap;gap:8px}
.shot{position:relative;margin:0 0 6px;width:168px;max-width:100%;background:#fff;border:1px solid #dde1e7;
border-radius:6px;padding:4px}
.shot img{display:block;width:100%;height:auto;border-radius:3px;background:#e9ecf1}
.shot figcaption{font-size:.78em;color:#5b6572;margin-top:2px}
.shot .err{min-height:96px;display:flex;align-items:center;justify-content:center;text-align:center;
font-size:.82em;color:#b42318;background:#fdecea;border-radius:3px;padding:6px}
.shot.noimage .err{color:#5b6572;background:#eef0f3}
.tip{display:none;position:absolute;z-index:5;left:0;top:100%;width:260px;max-width:80vw;white-space:pre-wrap;
background:#1d232a;color:#fff;font-size:.78em;padding:6px 8px;border-radius:4px;pointer-events:none}
.shot:hover .tip,.shot:focus-within .tip{display:block}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.pair>div{min-width:0}.pair .shot{width:100%}
ul.changes{margin:6px 0 0;padding-left:18px;font-size:.9em}
.shot.checks-failed{border:2px solid #b42318}
.shot .checks{font-size:.78em;color:#b42318;font-weight:600;margin-top:2px}
@media (max-width:640px){body{padding:10px}.shot{width:100px}.tip{width:200px}h1{font-size:1.15rem}
.sheet{border-spacing:4px}.sheet tbody th{max-width:6em}svg text{font-size:17px}.shot figcaption{font-size:.72em}}
"""


def page(title: str, body: str, css: str = "") -> str:
    """A whole self-contained HTML document (`css`: the page's own rules, after the shared ones)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{css}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def write_page(path: str | Path, text: str) -> None:
    """Write a page, creating its directory; a failure is a located error, not a traceback."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the HTML file: {exc.strerror or exc}") from None
