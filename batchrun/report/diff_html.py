"""`batchrun diff BASE NEW --html diff.html`: the diff as one HTML page, base and new side by side.

The categories and their entries come from `batchrun.report.diff` (nothing is compared here). Each listed
id gets a card: the base request's images (or error) on the left, the new one's on the right, then
what changed. Missing ids have only a base side, added ids only a new side.
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
from batchrun.report.shots import MissingFiles, Shot, esc, load_shots, page, show, tile

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
    for key, label, _, _ in CATEGORIES:
        entries = diff.categories[key]
        if not entries:
            continue
        body.append(f'<h2 id="{key}">{esc(label[0].upper() + label[1:])} ({len(entries)})</h2>')
        # A newly failing id's error is on its new side already; other details say what the pictures cannot.
        cards = [
            _card(entry, base.get(entry.id), new.get(entry.id), detail=key != "newly_failing")
            for entry in entries[:MAX_CARDS]
        ]
        body.append(f'<div class="cards">{"".join(cards)}</div>')
        if len(entries) > MAX_CARDS:
            body.append(f'<p class="muted">{len(entries) - MAX_CARDS} more (see --format json)</p>')
    return page(title, "\n".join(body))


def _card(entry: Entry, base: Shot | None, new: Shot | None, *, detail: bool) -> str:
    explained = f"<div>{esc(entry.detail)}</div>" if entry.detail and detail else ""
    changes = ""
    if entry.changes:
        items = [f"<li>{esc(str(change))}</li>" for change in entry.changes[:MAX_CHANGES_SHOWN]]
        hidden = len(entry.changes) - MAX_CHANGES_SHOWN
        if hidden > 0:
            items.append(f'<li class="muted">… {hidden} more changes (see --format json)</li>')
        changes = f'<ul class="changes">{"".join(items)}</ul>'
    return (
        f'<section class="card" data-id="{esc(entry.id)}"><h3><code>{esc(entry.id)}</code> '
        f'<span class="muted">{esc(entry.job)}</span> {esc(entry.request)}</h3>{explained}'
        f'<div class="pair"><div class="side base"><div class="muted">base</div>{_side(base)}</div>'
        f'<div class="side new"><div class="muted">new</div>{_side(new)}</div></div>{changes}</section>'
    )


def _side(shot: Shot | None) -> str:
    if shot is None:
        return '<p class="muted">(absent)</p>'
    caption = ", ".join(f"{key}={show(value)}" for key, value in shot.matrix.items())
    return tile(shot, caption, lazy=False)
