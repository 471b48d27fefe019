"""`batchrun report OUT.jsonl --html report.html [--grid ROWS,COLS]`: the report as one HTML page.

The page holds the numbers of the text report (`batchrun.report.stats` computes them; nothing is
recomputed here), a latency histogram and per-job percentiles drawn in inline SVG, the errors by
type with an example each, and for every job whose results have images a contact sheet: a table
whose rows and columns are two matrix keys, values in plan order (the matrix order).

The default axes are the two matrix keys with the most distinct values (ties: the earlier key),
kept in the matrix's key order; a job with fewer than two varying keys gets a plain grid in plan
order. `--grid style,seed` picks the axes for every job that has both keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchrun.errors import UsageError
from batchrun.report.shots import (
    MissingFiles,
    Shot,
    esc,
    lazy_images,
    load_shots,
    page,
    show,
    tile,
)
from batchrun.report.stats import MAX_LISTED, Report, Stats, verdict
from batchrun.report.text import metric_rows, plan_rows

ABSENT_KEY = "\x00absent"  # the axis value of a record whose matrix lacks the key
HIST_BINS_MAX = 24


def parse_grid(text: str) -> tuple[str, str]:
    """`ROWS,COLS` -> (rows, cols): two different matrix key names."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise UsageError(f"--grid: expected two different matrix keys as ROWS,COLS (e.g. style,seed), got {text!r}")
    return parts[0], parts[1]


def render_report_html(report: Report, html_path: str | Path, grid: tuple[str, str] | None = None,
                       missing: MissingFiles | None = None) -> str:
    """The HTML page of a computed report (its file is read again for the contact sheet; image
    paths are made relative to where `html_path` will be). Downloaded artifacts whose file is gone
    are counted in `missing` and named in a note on the page.

    Raises:
        RecordsError: the file cannot be read any more.
        UsageError: `grid` names keys that no job with images has.
    """
    missing = missing if missing is not None else MissingFiles()
    shots = load_shots(report.file, html_path, missing=missing)
    sheets = [_sheet(job, members, grid, lazy_images(shots)) for job, members in _image_jobs(shots).items()]
    if grid is not None and not any(grid_used for _, grid_used in sheets):
        keys = sorted({key for members in _image_jobs(shots).values() for key in matrix_keys(members)})
        known = ", ".join(keys) if keys else "none"
        raise UsageError(
            f"--grid {grid[0]},{grid[1]}: no job with images has both matrix keys (matrix keys: {known})"
        )
    title = f"batchrun report: {Path(report.file).name}"
    line = verdict(report)
    state = "good" if line.startswith("PASS") else "running" if line.startswith("RUNNING") else "bad"
    body = [
        f"<header><h1>{esc(title)}</h1><div class=\"muted\">{esc(report.file)}{_superseded(report)}</div>"
        f'<p class="{state}" id="verdict">{esc(line)}</p></header>',
        *_plan(report),
    ]
    if missing.count:
        body.append(f'<p class="bad" id="missing-files">{esc(missing.message(report.file))}</p>')
    if not report.overall.requests:
        body.append("<p>No records.</p>")
        return page(title, "\n".join(body))
    body += _summary(report)
    body += _latency(report, shots)
    body += _errors(report)
    if sheets:
        body += ["<h2>Contact sheet</h2>", *(html for html, _ in sheets)]
    return page(title, "\n".join(body))


def _superseded(report: Report) -> str:
    return f" · {esc(report.superseded_note())}" if report.superseded else ""


def _plan(report: Report) -> list[str]:
    rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in plan_rows(report))
    if not rows:
        return []
    listed = ""
    if report.plan is not None and report.plan.never_ran_listed:
        items = "".join(f"<li><code>{esc(p.id)}</code> {esc(p.job)} {esc(p.request)}</li>"
                        for p in report.plan.never_ran_listed)
        listed = f'<div class="muted">never ran:</div><ul class="changes">{items}</ul>'
    return [f'<div class="cards"><section class="card"><h3>Plan</h3><table class="metrics">{rows}</table>'
            f"{listed}</section></div>"]


def _summary(report: Report) -> list[str]:
    sections = [("All jobs", report.overall), *((f"Job {name}", stats) for name, stats in report.jobs.items())]
    cards = []
    for heading, stats in sections:
        rows = "".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>" for label, value in metric_rows(stats))
        verdict = "bad" if stats.error else "good"
        cards.append(
            f'<section class="card"><h3>{esc(heading)} <span class="{verdict}">'
            f'{stats.ok}/{stats.requests} ok</span></h3><table class="metrics">{rows}</table></section>'
        )
    return ["<h2>Summary</h2>", f'<div class="cards">{"".join(cards)}</div>']


def _latency(report: Report, shots: list[Shot]) -> list[str]:
    latencies = sorted(s.latency_s for s in shots if s.ok and s.latency_s is not None)
    if not latencies:
        return []
    return [
        "<h2>Latency</h2>",
        '<div class="cards wide">',
        f'<section class="card"><h3>Histogram <span class="muted">{len(latencies)} successful requests</span></h3>'
        f"{histogram_svg(latencies, report.overall)}</section>",
        f'<section class="card"><h3>Percentiles per job</h3>{percentiles_svg(report.jobs)}</section>',
        "</div>",
    ]


def histogram_svg(latencies: Sequence[float], overall: Stats) -> str:
    """Counts of successful latencies in equal-width bins, with p50 and p95 marked."""
    width, height, left, bottom, top = 520, 220, 34, 24, 22
    low, high = latencies[0], latencies[-1]
    bins = min(HIST_BINS_MAX, max(1, math.ceil(math.sqrt(len(latencies)))))
    span = (high - low) or 1.0
    counts = [0] * bins
    for value in latencies:
        counts[min(int((value - low) / span * bins), bins - 1)] += 1
    peak = max(counts)
    plot_w, plot_h = width - left - 10, height - bottom - top
    bar_w = plot_w / bins
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="latency histogram">']
    for i, count in enumerate(counts):
        bar_h = plot_h * count / peak
        x, y = left + i * bar_w, top + plot_h - bar_h
        lo, hi = low + span * i / bins, low + span * (i + 1) / bins
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{bar_h:.1f}" fill="#4f7cac">'
            f"<title>{lo:.3f}–{hi:.3f} s: {count} request{'s' if count != 1 else ''}</title></rect>"
        )
    legend = []
    for name, mark, colour in (("p50", overall.latency_p50, "#067647"), ("p95", overall.latency_p95, "#b42318")):
        if mark is not None:
            x = left + plot_w * (mark - low) / span
            parts.append(
                f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{colour}" stroke-width="2" '
                f'stroke-dasharray="4 3"><title>{name} {mark:.3f} s</title></line>'
            )
            legend.append(f'<tspan style="fill:{colour}">┆ {name} {mark:.3f} s</tspan>')
    if legend:  # above the plot, so marker labels never collide with each other or the edges
        parts.append(f'<text x="{left + plot_w}" y="{top - 8}" text-anchor="end">{"  ".join(legend)}</text>')
    axis_y = top + plot_h
    parts += [
        f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" stroke="#8a94a3"/>',
        f'<text x="{left}" y="{axis_y + 16}">{low:.3f} s</text>',
        f'<text x="{left + plot_w}" y="{axis_y + 16}" text-anchor="end">{high:.3f} s</text>',
        f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 6}" y="{axis_y}" text-anchor="end">0</text>',
        "</svg>",
    ]
    return "".join(parts)


def percentiles_svg(jobs: dict[str, Stats]) -> str:
    """One row per job: bars for latency p50, p95 and max (successful requests)."""
    rows = [(name, stats) for name, stats in jobs.items() if stats.latency_max is not None]
    if not rows:
        return '<p class="muted">No successful requests.</p>'
    scale = max(stats.latency_max or 0.0 for _, stats in rows) or 1.0
    width, label_w, row_h = 520, 96, 60
    plot_w = width - label_w - 112
    height = row_h * len(rows) + 24
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="latency percentiles per job">']
    for i, (name, stats) in enumerate(rows):
        y = 8 + i * row_h
        shown = name if len(name) <= 12 else name[:11] + "…"
        parts.append(f'<text x="0" y="{y + 26}"><title>{esc(name)}</title>{esc(shown)}</text>')
        marks = (
            ("p50", stats.latency_p50, "#4f7cac"),
            ("p95", stats.latency_p95, "#e3a008"),
            ("max", stats.latency_max, "#b42318"),
        )
        for j, (label, value, colour) in enumerate(marks):
            if value is None:
                continue
            bar = max(plot_w * value / scale, 1.0)
            parts.append(
                f'<rect x="{label_w}" y="{y + j * 17}" width="{bar:.1f}" height="14" fill="{colour}">'
                f"<title>{esc(name)} {label}: {value:.3f} s</title></rect>"
                f'<text x="{label_w + bar + 4:.1f}" y="{y + j * 17 + 12}">{label} {value:.3f} s</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _errors(report: Report) -> list[str]:
    out = []
    if report.errors:
        rows = "".join(
            f"<tr><td>{esc(g.job)}</td><td><code>{esc(g.type)}</code></td><td>{g.count}</td>"
            f"<td>{_request(g.example_id, g.example_request)}</td><td>{esc(g.example)}</td></tr>"
            for g in report.errors
        )
        out += [
            "<h2>Errors</h2>",
            f'<div class="scroll card"><table><thead><tr><th>job</th><th>type</th><th>count</th><th>first request</th>'
            f"<th>example</th></tr></thead><tbody>{rows}</tbody></table></div>",
        ]
    if report.failed_requests:
        rows = "".join(
            f"<tr><td>{esc(f.job)}</td><td>{_request(f.id, f.request)}</td><td>{esc(f.error)}</td></tr>"
            for f in report.failed_requests[:MAX_LISTED]
        )
        if len(report.failed_requests) > MAX_LISTED:
            rows += (f'<tr><td colspan="3" class="muted">{len(report.failed_requests) - MAX_LISTED} more '
                     "(see --format json)</td></tr>")
        out += [
            "<h2>Failed requests</h2>",
            f'<div class="scroll card"><table><thead><tr><th>job</th><th>request</th><th>error</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>",
        ]
    failures = report.expectation_failures
    if failures:
        rows = "".join(
            f"<tr><td>{esc(f.job)}</td><td>{_request(f.id, f.request)}</td><td>{esc(f.message)}</td></tr>"
            for f in failures[:MAX_LISTED]
        )
        if len(failures) > MAX_LISTED:
            rows += f'<tr><td colspan="3" class="muted">{len(failures) - MAX_LISTED} more (see --format json)</td></tr>'
        out += [
            "<h2>Expectation failures</h2>",
            f'<div class="scroll card"><table><thead><tr><th>job</th><th>request</th><th>message</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></div>",
        ]
    return out


def _request(rid: str, label: str) -> str:
    """An id and what the request is (`seed=3 style=anime`)."""
    return f"<code>{esc(rid)}</code>" + (f" {esc(label)}" if label else "")


def _image_jobs(shots: list[Shot]) -> dict[str, list[Shot]]:
    """Jobs with at least one image, each with all its shots (failures too), in plan order."""
    jobs: dict[str, list[Shot]] = {}
    for shot in shots:
        jobs.setdefault(shot.job, []).append(shot)
    return {job: members for job, members in jobs.items() if any(s.images for s in members)}


def matrix_keys(shots: list[Shot]) -> list[str]:
    """Matrix keys in order of first appearance (the spec's key order)."""
    keys: dict[str, None] = {}
    for shot in shots:
        keys.update(dict.fromkeys(shot.matrix))
    return list(keys)


def axis_values(shots: list[Shot], key: str) -> dict[str, Any]:
    """Canonical text -> value of one key, in plan order of first appearance."""
    values: dict[str, Any] = {}
    for shot in shots:
        canon = _canon(shot, key)
        values.setdefault(canon, shot.matrix.get(key))
    return values


def _canon(shot: Shot, key: str) -> str:
    if key not in shot.matrix:
        return ABSENT_KEY
    return json.dumps(shot.matrix[key], sort_keys=True, ensure_ascii=False)


def default_axes(shots: list[Shot]) -> tuple[str, str] | None:
    """The two keys with the most distinct values (at least two each), in matrix key order."""
    keys = matrix_keys(shots)
    varying = [(len(axis_values(shots, key)), position, key) for position, key in enumerate(keys)]
    best = sorted((-count, position, key) for count, position, key in varying if count >= 2)[:2]
    if len(best) < 2:
        return None
    first, second = sorted(best, key=lambda item: item[1])
    return first[2], second[2]


def _sheet(job: str, shots: list[Shot], grid: tuple[str, str] | None, lazy: bool) -> tuple[str, bool]:
    """(html, whether the requested grid was used) for one job's contact sheet."""
    keys = matrix_keys(shots)
    grid_used = grid is not None and grid[0] in keys and grid[1] in keys
    axes = grid if grid_used else default_axes(shots)
    head = f"<h3>Job {esc(job)}"
    if axes is None:
        plain = "".join(tile(s, _caption(s, ()), lazy=lazy) for s in shots)
        return f'{head} <span class="muted">plan order</span></h3><div class="plain">{plain}</div>', grid_used
    rows_key, cols_key = axes
    rows, cols = axis_values(shots, rows_key), axis_values(shots, cols_key)
    cells: dict[tuple[str, str], list[Shot]] = {}
    for shot in shots:
        cells.setdefault((_canon(shot, rows_key), _canon(shot, cols_key)), []).append(shot)
    header = "".join(f'<th scope="col">{_axis_label(cols_key, c, v)}</th>' for c, v in cols.items())
    body = []
    for r, r_value in rows.items():
        tds = "".join(
            f"<td>{''.join(tile(s, _caption(s, axes), lazy=lazy) for s in cells.get((r, c), []))}</td>" for c in cols
        )
        body.append(f'<tr><th scope="row">{_axis_label(rows_key, r, r_value)}</th>{tds}</tr>')
    return (
        f'{head} <span class="muted">rows: {esc(rows_key)} · columns: {esc(cols_key)}</span></h3>'
        f'<div class="scroll"><table class="sheet" data-rows="{esc(rows_key)}" data-cols="{esc(cols_key)}">'
        f'<thead><tr><th></th>{header}</tr></thead><tbody>{"".join(body)}</tbody></table></div>',
        grid_used,
    )


def _axis_label(key: str, canon: str, value: Any) -> str:
    shown = "(none)" if canon == ABSENT_KEY else show(value)
    return f'{esc(key)} = <span class="value">{esc(shown)}</span>'


def _caption(shot: Shot, axes: Sequence[str]) -> str:
    """The dataset row, the matrix values not already given by the row and column, the repeat (or
    the plan index): shots stacked in one cell are told apart."""
    text = shot.label(axes)
    return text or ("" if axes else f"#{shot.index}")
