"""`batchrun report`'s text and markdown renderings (and `render`, which also gives json).

Text is for terminals, markdown for $GITHUB_STEP_SUMMARY (used as it is); both start with the
verdict line, then what the plan and the manifest say, the numbers per job and overall, and the
listed requests (errors by type, failed requests, expectation failures), each named by its id and
what the request is.
"""

from __future__ import annotations

import json
from pathlib import Path

from batchrun.report.plan_status import PlannedId
from batchrun.report.stats import MAX_LISTED, Report, Stats, plural, verdict


def metric_rows(stats: Stats) -> list[tuple[str, str]]:
    """(label, value) rows shared by the text and markdown renderings."""
    rows = [
        ("requests", str(stats.requests)),
        ("ok", str(stats.ok)),
        ("error", f"{stats.error} ({stats.error_rate:.1%})"),
        ("expectation failures", _expectation_text(stats)),
        ("latency p50 / p95 / max", _secs(stats.latency_p50, stats.latency_p95, stats.latency_max)),
        ("queue p50 / p95", _secs(stats.queue_p50, stats.queue_p95)),
        ("attempts", f"{stats.attempts} ({plural(stats.retried_requests, 'request')} retried)"),
        ("throughput", _throughput_text(stats)),
    ]
    if stats.rerouted:
        rows.append(("rerouted", f"{plural(stats.rerouted, 'request')} served by a fallback endpoint"))
    if stats.cost_usd is not None:
        rows.append(("cost", f"${stats.cost_usd:.4f}"))
    return rows


def _expectation_text(stats: Stats) -> str:
    if not stats.expectation_failed_requests:
        return "0"
    return (
        f"{plural(stats.expectation_failed_requests, 'request')} "
        f"({plural(stats.expectation_failed_checks, 'check')})"
    )


def _throughput_text(stats: Stats) -> str:
    if stats.throughput_rps is None or stats.duration_s is None:
        return "n/a"
    return f"{stats.throughput_rps:.2f} requests/s over {stats.duration_s:.3f} s"


def _secs(*values: float | None) -> str:
    if all(v is None for v in values):
        return "n/a"
    return " / ".join("n/a" if v is None else f"{v:.3f} s" for v in values)


def plan_rows(report: Report) -> list[tuple[str, str]]:
    """(label, value) rows of what the plan and the manifest say; [] when neither is known."""
    rows = []
    plan, run = report.plan, report.run
    if plan is not None:
        rows += [("planned", str(plan.planned)), ("with a record", str(plan.with_record)),
                 ("never ran", str(plan.never_ran))]
        if plan.not_planned:
            rows.append(("not in the plan", f"{plural(plan.not_planned, 'request')} (left out of the numbers)"))
    if run is not None:
        outcome = [f"exit code {run.exit_code}" if run.exit_code is not None else "no exit code (not finished)"]
        if run.stopped_by:
            outcome.append(f"stopped early by {run.stopped_by}")
        elif run.interrupted:
            outcome.append("interrupted")
        outcome += [f"failed {gate}" for gate in run.gates if gate != run.stopped_by]
        if run.selection:
            size = f" ({plural(run.selected, 'request')})" if run.selected is not None else ""
            outcome.append(f"a part of the plan: {run.selection}{size}")
        rows.append(("run", "; ".join(outcome)))
    return rows


def _plan_title(report: Report) -> str:
    source = report.plan.source if report.plan is not None else report.run.manifest if report.run else ""
    return f"plan ({Path(source).name})"


def _planned_rows(items: list[PlannedId], total: int) -> list[list[str]]:
    rows = [[p.job or "?", p.id, p.request] for p in items]
    if total > len(items):
        rows.append(["…", "…", f"{total - len(items)} more"])
    return rows


def _plan_tables(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for the planned ids that never ran and the ids the plan lacks."""
    plan = report.plan
    if plan is None:
        return []
    out = []
    if plan.never_ran_listed:
        out.append(("never ran", ["job", "id", "request"], _planned_rows(plan.never_ran_listed, plan.never_ran)))
    if plan.not_planned_listed:
        out.append(("not in the plan", ["job", "id", "request"],
                    _planned_rows(plan.not_planned_listed, plan.not_planned)))
    return out


def render(report: Report, fmt: str) -> str:
    """The report as `text`, `markdown` or `json` (ending with a newline)."""
    if fmt == "json":
        return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return _markdown(report)
    return _text(report)


def _sections(report: Report) -> list[tuple[str, str, Stats]]:
    """(text title, markdown heading, stats) for the overall numbers, then each job."""
    jobs = [(f"job {name}", f"Job `{name}`", stats) for name, stats in report.jobs.items()]
    return [("all jobs", "All jobs", report.overall), *jobs]


def _text(report: Report) -> str:
    out = [f"batchrun report: {report.file}", verdict(report)]
    if report.superseded:
        out.append(f"({report.superseded_note()})")
    rows = plan_rows(report)
    if rows:
        width = max(len(label) for label, _ in rows)
        out += ["", _plan_title(report), *(f"  {label:<{width}}  {value}" for label, value in rows)]
    for title, header, table in _plan_tables(report):
        out += ["", title, *text_table(header, table)]
    if not report.overall.requests:
        return "\n".join([*out, *([""] if rows else []), "no records"]) + "\n"
    for title, _, stats in _sections(report):
        rows = metric_rows(stats)
        width = max(len(label) for label, _ in rows)
        out += ["", title, *(f"  {label:<{width}}  {value}" for label, value in rows)]
    if report.errors:
        out += ["", "errors", *text_table(*_error_table(report))]
    if report.failed_requests:
        out += ["", "failed requests", *text_table(*_failed_table(report))]
    if report.expectation_failures:
        out += ["", "expectation failures", *text_table(*_failure_table(report))]
    return "\n".join(out) + "\n"


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, indented by two (trailing spaces dropped)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _error_table(report: Report) -> tuple[list[str], list[list[str]]]:
    """The errors by type, each with its first request (id and label) and that request's error."""
    rows = [[g.job, g.type, str(g.count), _named(g.example_id, g.example_request), g.example] for g in report.errors]
    return ["job", "type", "count", "first request", "example"], rows


def _failed_table(report: Report) -> tuple[list[str], list[list[str]]]:
    rows = [[f.job, f.id, f.request, f.error] for f in report.failed_requests]
    return _listed(["job", "id", "request", "error"], rows)


def _failure_table(report: Report) -> tuple[list[str], list[list[str]]]:
    return _listed(
        ["job", "id", "request", "message"], [[f.job, f.id, f.request, f.message] for f in report.expectation_failures]
    )


def _listed(header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The first MAX_LISTED rows (and how many more); the `request` column only when some row has
    a label (a plain job's requests have none)."""
    shown = rows[:MAX_LISTED]
    hidden = len(rows) - MAX_LISTED
    if hidden > 0:
        shown.append(["…"] * (len(header) - 1) + [f"{hidden} more (see --format json)"])
    column = header.index("request")
    if not any(row[column] for row in rows):
        header = header[:column] + header[column + 1 :]
        shown = [row[:column] + row[column + 1 :] for row in shown]
    return header, shown


def _named(rid: str, label: str) -> str:
    """`83622b97baac5a03 (seed=3 style=anime)`: an id and what the request is."""
    return f"{rid} ({label})" if label else rid


def _markdown(report: Report) -> str:
    out = [f"## batchrun report: `{report.file}`", "", f"**{verdict(report)}**", ""]
    if report.superseded:
        out += [f"{report.superseded_note()}.", ""]
    rows = plan_rows(report)
    if rows:
        out += [
            f"### {_plan_title(report)[0].upper()}{_plan_title(report)[1:]}",
            "",
            *_md_table(["metric", "value"], [list(r) for r in rows]),
            "",
        ]
    for title, header, table in _plan_tables(report):
        out += [f"### {title[0].upper()}{title[1:]}", "", *_md_table(header, table), ""]
    if not report.overall.requests:
        return "\n".join([*out, "No records."]) + "\n"
    for _, heading, stats in _sections(report):
        out += [f"### {heading}", "", *_md_table(["metric", "value"], [list(r) for r in metric_rows(stats)]), ""]
    if report.errors:
        out += ["### Errors", "", *_md_table(*_error_table(report)), ""]
    if report.failed_requests:
        out += ["### Failed requests", "", *_md_table(*_failed_table(report)), ""]
    if report.expectation_failures:
        out += ["### Expectation failures", "", *_md_table(*_failure_table(report)), ""]
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
