"""`batchrun diff`'s text, markdown and json renderings of a `Diff` (HTML: `batchrun.report.diff_html`).

Text is for terminals, markdown for $GITHUB_STEP_SUMMARY; both carry the whole-run numbers, the
no-shared-id warning, each non-empty category with its ids (labelled) and `summary`'s one line.
"""

from __future__ import annotations

import json
from typing import Any

from batchrun.report.diff import CATEGORIES, Diff, Entry, RunNumbers

__all__ = ["MAX_CHANGES_SHOWN", "no_shared_ids_warning", "render", "run_deltas", "summary"]


def no_shared_ids_warning(diff: Diff) -> str | None:
    """A warning when both files have records but no id in common: probably not two runs of one spec."""
    if diff.shared_ids or not diff.base_requests or not diff.new_requests:
        return None
    return (f"warning: {diff.base_file} and {diff.new_file} share no request id: are they outputs of the same "
            "spec? (every id is missing or added)")


def run_deltas(diff: Diff) -> str:
    """`ok 95.0% -> 90.0% · latency p50 1.200 s -> 1.500 s, p95 3.000 s -> 4.100 s` (ok records)."""
    b, n = diff.base_numbers, diff.new_numbers
    return (f"ok {_rate(b)} -> {_rate(n)} · latency of ok requests p50 {_secs(b.latency_p50)} -> "
            f"{_secs(n.latency_p50)}, p95 {_secs(b.latency_p95)} -> {_secs(n.latency_p95)}")


MAX_CHANGES_SHOWN = 10  # per id in text/markdown; json lists them all


def render(diff: Diff, fmt: str) -> str:
    """The diff as `text`, `markdown` or `json` (ending with a newline)."""
    if fmt == "json":
        return json.dumps(_json(diff), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _markdown(diff)
    return _text(diff)


def summary(diff: Diff) -> str:
    """One line: every non-empty category's count, and the verdict."""
    counts = [
        f"{len(diff.categories[key])} {one if len(diff.categories[key]) == 1 else label}"
        for key, label, _, one in CATEGORIES
        if diff.categories[key]
    ]
    verdict = "regressed" if diff.regressed else "no regressions"
    return f"{verdict}: {', '.join(counts)}" if counts else "no differences"


def _json(diff: Diff) -> dict[str, Any]:
    out: dict[str, Any] = {
        "base": {"file": diff.base_file, "requests": diff.base_requests},
        "new": {"file": diff.new_file, "requests": diff.new_requests},
        "regressed": diff.regressed,
        "shared_ids": diff.shared_ids,
        "warning": no_shared_ids_warning(diff),
        "numbers": {"base": diff.base_numbers.to_json(), "new": diff.new_numbers.to_json()},
        "counts": {key: len(diff.categories[key]) for key, _, _, _ in CATEGORIES},
    }
    for key, _, _, _ in CATEGORIES:
        items = []
        for entry in diff.categories[key]:
            item: dict[str, Any] = {"id": entry.id, "job": entry.job, "request": entry.request}
            if key in ("results_changed", "visually_same"):
                item["changes"] = [c.to_json() for c in entry.changes]
            elif key in ("expectation_regressions", "newly_failing", "latency_regressions", "served_by_changed"):
                item["detail"] = entry.detail
            items.append({**item, **entry.data})
        out[key] = items
    return out


def _lines(entry: Entry) -> list[str]:
    """The change lines of one results-changed entry, capped."""
    shown = [str(c) for c in entry.changes[:MAX_CHANGES_SHOWN]]
    hidden = len(entry.changes) - MAX_CHANGES_SHOWN
    return shown + ([f"… {hidden} more changes (see --format json)"] if hidden > 0 else [])


def _text(diff: Diff) -> str:
    out = [
        f"batchrun diff: {diff.base_file} ({diff.base_requests} requests) -> "
        f"{diff.new_file} ({diff.new_requests} requests)",
        run_deltas(diff),
    ]
    warning = no_shared_ids_warning(diff)
    if warning:
        out.append(warning)
    for key, label, _, _ in CATEGORIES:
        entries = diff.categories[key]
        if not entries:
            continue
        out += ["", f"{label} ({len(entries)})"]
        width = max(len(e.id) for e in entries)
        job_width = max(len(e.job) for e in entries)
        request_width = max(len(e.request) for e in entries)
        for entry in entries:
            request = f"  {entry.request:<{request_width}}" if request_width else ""
            head = f"  {entry.id:<{width}}  {entry.job:<{job_width}}{request}  {entry.detail}".rstrip()
            out.append(head)
            out += [f"      {line}" for line in _lines(entry)]
    out += ["", summary(diff)]
    return "\n".join(out) + "\n"


def _markdown(diff: Diff) -> str:
    warning = no_shared_ids_warning(diff)
    out = [
        "## batchrun diff",
        "",
        f"`{diff.base_file}` ({diff.base_requests} requests) → `{diff.new_file}` ({diff.new_requests} requests): "
        f"**{summary(diff)}**",
        "",
        *_md_numbers(diff),
        "",
        *([f"**{warning}**", ""] if warning else []),
        "| category | count |",
        "| --- | --- |",
        *(f"| {label} | {len(diff.categories[key])} |" for key, label, _, _ in CATEGORIES),
        "",
    ]
    for key, label, _, _ in CATEGORIES:
        entries = diff.categories[key]
        if not entries:
            continue
        out += [f"### {label[0].upper()}{label[1:]} ({len(entries)})", ""]
        if key in ("results_changed", "visually_same"):
            out += ["| id | job | request | change |", "| --- | --- | --- | --- |"]
            out += [f"| `{e.id}` | {_cell(e.job)} | {_cell(e.request)} | {_cell(line)} |" for e in entries
                    for line in _lines(e)]
        else:
            out += ["| id | job | request | detail |", "| --- | --- | --- | --- |"]
            out += [f"| `{e.id}` | {_cell(e.job)} | {_cell(e.request)} | {_cell(e.detail)} |" for e in entries]
        out.append("")
    return "\n".join(out)


def _md_numbers(diff: Diff) -> list[str]:
    """The whole-run numbers, base and new side by side."""
    rows = []
    for label, pick in (("ok", _rate), ("latency p50 (ok requests)", lambda n: _secs(n.latency_p50)),
                        ("latency p95 (ok requests)", lambda n: _secs(n.latency_p95))):
        rows.append(f"| {label} | {pick(diff.base_numbers)} | {pick(diff.new_numbers)} |")
    return ["| whole run | base | new |", "| --- | --- | --- |", *rows]


def _rate(numbers: RunNumbers) -> str:
    return "n/a" if numbers.ok_rate is None else f"{numbers.ok_rate:.1%} ({numbers.ok}/{numbers.requests})"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")
