"""`batchrun diff BASE NEW --html diff.html`: the diff as one HTML page, base and new side by side.

The categories and their entries come from `batchrun.report.diff` (nothing is compared here). Each listed
id gets a card: the base request's images (or error) on the left, the new one's on the right, and for
a changed picture whose two files were downloaded a difference image (`batchrun.report.pixeldiff`),
all three at the same width; then what changed, with each image's verdict by look (visually the
same / visually changed and the pHash distance). Missing ids have only a base side, added ids only a
new side. Within a category the cards are grouped by job, in plan order (so by matrix values); each
side names its dataset row, matrix values and repeat, and a side whose expectation checks failed is
outlined and says so.

A row of category buttons filters the page with CSS alone (radio inputs and `:has()`): the page
keeps to one file with no script.
"""

from __future__ import annotations

from pathlib import Path

from batchrun.report.diff import CATEGORIES, Diff, Entry
from batchrun.report.diff_text import (
    MAX_CHANGES_SHOWN,
    no_shared_ids_warning,
    run_deltas,
    summary,
)
from batchrun.report.pixeldiff import NO_PILLOW, available, difference_uri
from batchrun.report.resultdiff import Change
from batchrun.report.shots import MissingFiles, Shot, esc, load_shots, page, tile

MAX_CARDS = 100  # per category; the json rendering lists them all


def render_diff_html(diff: Diff, html_path: str | Path, missing: MissingFiles | None = None) -> str:
    """The HTML page for a computed diff (image paths relative to where `html_path` will be).

    Raises:
        RecordsError: either output file cannot be read any more.
    """
    # Only the ids that get a card: a big diff's shots would not fit in memory.
    shown = {entry.id for entries in diff.categories.values() for entry in entries[:MAX_CARDS]}
    missing = missing if missing is not None else MissingFiles()
    base = {shot.id: shot for shot in load_shots(diff.base_file, html_path, shown, missing)}
    new = {shot.id: shot for shot in load_shots(diff.new_file, html_path, shown, missing)}
    verdict = "bad" if diff.regressed else "good"
    title = f"batchrun diff: {Path(diff.base_file).name} → {Path(diff.new_file).name}"
    counts = "".join(
        f'<tr><th>{esc(label)}</th><td class="{"bad" if regression and diff.categories[key] else ""}">'
        f"{len(diff.categories[key])}</td></tr>"
        for key, label, regression, _ in CATEGORIES
    )
    body = [
        f"<header><h1>{esc(title)}</h1>",
        f'<div class="muted">base {esc(diff.base_file)} ({diff.base_requests} requests) → '
        f"new {esc(diff.new_file)} ({diff.new_requests} requests)</div>",
        f'<p class="{verdict}" id="verdict">{esc(summary(diff))}</p>',
        f'<p class="muted" id="deltas">{esc(run_deltas(diff))}</p>',
        *(
            [f'<p class="bad" id="warning">{esc(no_shared_ids_warning(diff))}</p>']
            if no_shared_ids_warning(diff)
            else []
        ),
        *(
            [f'<p class="bad" id="missing-files">{esc(missing.message(f"{diff.base_file} or {diff.new_file}"))}</p>']
            if missing.count
            else []
        ),
        "</header>",
        f'<div class="cards"><section class="card"><h3>Categories</h3><table>{counts}</table></section></div>',
    ]
    listed = [(key, label) for key, label, _, _ in CATEGORIES if diff.categories[key]]
    if listed:
        body.append(_filter(diff, listed))
    pictures = _Pictures()
    for key, label in listed:
        entries = diff.categories[key]
        body.append(f'<div class="category" data-category="{key}">')
        body.append(f'<h2 id="{key}">{esc(label[0].upper() + label[1:])} ({len(entries)})</h2>')
        # A newly failing id's error is on its new side already; other details say what the pictures cannot.
        cards, job = [], None
        for entry in entries[:MAX_CARDS]:
            if entry.job != job:
                job = entry.job
                cards.append(f'<h3 class="job">job {esc(job)}</h3>')
            cards.append(_card(entry, base.get(entry.id), new.get(entry.id), pictures, detail=key != "newly_failing"))
        body.append(f'<div class="cards wide">{"".join(cards)}</div>')
        if len(entries) > MAX_CARDS:
            body.append(f'<p class="muted">{len(entries) - MAX_CARDS} more (see --format json)</p>')
        body.append("</div>")
    if pictures.wanted and not pictures.available:
        body.append(f'<p class="muted" id="no-difference">{esc(NO_PILLOW)}</p>')
    return page(title, "\n".join(body), _filter_css(listed))


def _filter(diff: Diff, listed: list[tuple[str, str]]) -> str:
    total = sum(len(diff.categories[key]) for key, _ in listed)
    buttons = [f'<input type="radio" name="show" id="show-all" checked><label for="show-all">all ({total})</label>']
    buttons += [f'<input type="radio" name="show" id="show-{key}"><label for="show-{key}">{esc(label)} '
                f"({len(diff.categories[key])})</label>" for key, label in listed]
    return f'<nav class="filter" aria-label="show one category">{"".join(buttons)}</nav>'


def _filter_css(listed: list[tuple[str, str]]) -> str:
    rules = [
        ".filter{display:flex;flex-wrap:wrap;gap:6px;margin:16px 0 0}"
        ".filter input{position:absolute;opacity:0;width:1px;height:1px}"
        ".filter label{cursor:pointer;border:1px solid #c4cad3;border-radius:999px;padding:3px 12px;background:#fff}"
        ".filter input:checked+label{background:#1d232a;color:#fff;border-color:#1d232a}"
        ".filter input:focus-visible+label{outline:2px solid #4f7cac}"
        ".cards h3.job{grid-column:1/-1;margin:4px 0 0}"
        ".pair.triple{grid-template-columns:1fr 1fr 1fr}"
        ".visual{font-size:.85em;font-weight:600;margin:2px 0 6px}"
        ".visual.same{color:#067647}.visual.changed{color:#b42318}"
        ".side.difference img{background:#000}"
    ]
    rules += [f'body:has(#show-{key}:checked) .category:not([data-category="{key}"]){{display:none}}'
              for key, _ in listed]
    return "".join(rules)


class _Pictures:
    """Difference images are made only for cards that show two downloaded pictures."""

    def __init__(self) -> None:
        self.available = available()
        self.wanted = False

    def difference(self, base: Shot | None, new: Shot | None, changes: tuple[Change, ...]) -> list[str | None] | None:
        """One data: URI (or None) per image pair; None when this card gets no difference column."""
        if base is None or new is None or not any(c.media for c in changes):
            return None
        pairs = [(a.file, b.file) for a, b in zip(base.images, new.images, strict=False)]
        if not any(a and b for a, b in pairs):
            return None
        self.wanted = True
        if not self.available:
            return None
        return [difference_uri(a, b) if a and b else None for a, b in pairs]


def _card(entry: Entry, base: Shot | None, new: Shot | None, pictures: _Pictures, *, detail: bool) -> str:
    explained = f"<div>{esc(entry.detail)}</div>" if entry.detail and detail else ""
    changes = ""
    if entry.changes:
        items = [f"<li>{esc(str(change))}</li>" for change in entry.changes[:MAX_CHANGES_SHOWN]]
        hidden = len(entry.changes) - MAX_CHANGES_SHOWN
        if hidden > 0:
            items.append(f'<li class="muted">… {hidden} more changes (see --format json)</li>')
        changes = f'<ul class="changes">{"".join(items)}</ul>'
    looks = [c for c in entry.changes if c.visual is not None]
    visual = ""
    if looks:
        worst = max(looks, key=lambda c: (not c.looks_same, c.distance or 0))
        visual = f'<div class="visual {worst.visual}">{esc(worst.visual_note)}</div>'
    differences = pictures.difference(base, new, entry.changes)
    third = ""
    if differences is not None:
        figures = "".join(
            f'<figure class="shot"><img src="{uri}" alt="difference of {esc(entry.id)}"></figure>' if uri
            else '<p class="muted">(no difference image)</p>'
            for uri in differences
        )
        third = f'<div class="side difference"><div class="muted">difference</div>{figures}</div>'
    return (
        f'<section class="card" data-id="{esc(entry.id)}" data-visual="{worst.visual if looks else ""}">'
        f'<h3><code>{esc(entry.id)}</code> <span class="muted">{esc(entry.job)}</span> {esc(entry.request)}</h3>'
        f'{visual}{explained}<div class="pair{" triple" if third else ""}">'
        f'<div class="side base"><div class="muted">base</div>{_side(base)}</div>'
        f'<div class="side new"><div class="muted">new</div>{_side(new)}</div>{third}</div>{changes}</section>'
    )


def _side(shot: Shot | None) -> str:
    if shot is None:
        return '<p class="muted">(absent)</p>'
    return tile(shot, shot.label(), lazy=False)
