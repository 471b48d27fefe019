"""`batchrun report OUT --format junit`: the report as JUnit XML, for CI test tabs (GitHub, GitLab,
Jenkins, Buildkite read it).

One testcase per planned id (every id in the output when the plan is unknown), grouped by job in
one testsuite each: classname `batchrun.<job>`, name `<id> <request label>`, time = the request's
latency. A failed request is a `<failure type="<error type>">`; a failed expectation is a
`<failure type="expectation">` with every failed check's message; a planned request that never ran
is `<skipped>` saying what stopped the run. Properties carry the verdict.
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from batchrun.report.plan_status import PlannedId
from batchrun.report.stats import Report, RequestEntry, verdict

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # characters XML 1.0 cannot hold


def _attr(value: str) -> str:
    return quoteattr(_NOT_XML.sub("?", value))


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("?", value))


def render_junit(report: Report) -> str:
    """The XML document (a `build_report(..., keep_requests=True)` report)."""
    suites: dict[str, list[str]] = {}
    counts: dict[str, list[float]] = {}  # job -> [tests, failures, skipped, time]

    def add(job: str, case: str, failed: bool, skipped: bool, seconds: float) -> None:
        suites.setdefault(job, []).append(case)
        tally = counts.setdefault(job, [0, 0, 0, 0.0])
        tally[0] += 1
        tally[1] += failed
        tally[2] += skipped
        tally[3] += seconds

    for entry in report.requests:
        case, failed = _case(entry)
        add(entry.job, case, failed, False, entry.latency_s or 0.0)
    reason = "; ".join(report.run.notes()) if report.run is not None else None
    for planned in report.never_ran:
        add(planned.job or "(unknown job)", _skipped(planned, reason), False, True, 0.0)
    total = [sum(t[i] for t in counts.values()) for i in range(4)]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<testsuites name={_attr('batchrun ' + report.file)} tests=\"{int(total[0])}\" failures=\"{int(total[1])}\" "
        f"errors=\"0\" skipped=\"{int(total[2])}\" time=\"{total[3]:.3f}\">",
    ]
    for job, cases in suites.items():
        tests, failures, skipped, seconds = counts[job]
        out.append(f"  <testsuite name={_attr(job)} tests=\"{int(tests)}\" failures=\"{int(failures)}\" errors=\"0\" "
                   f"skipped=\"{int(skipped)}\" time=\"{seconds:.3f}\">")
        out.append(f"    <properties><property name=\"verdict\" value={_attr(verdict(report))}/></properties>")
        out += cases
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def _name(rid: str, label: str) -> str:
    return f"{rid} {label}" if label else rid


def _case(entry: RequestEntry) -> tuple[str, bool]:
    head = (f"    <testcase classname={_attr('batchrun.' + entry.job)} name={_attr(_name(entry.id, entry.label))} "
            f"time=\"{entry.latency_s or 0.0:.3f}\"")
    body = []
    if not entry.ok:
        error = f"{entry.error_type or 'unknown'}: {entry.error_example}".rstrip(": ")
        body.append(f"      <failure type={_attr(entry.error_type or 'unknown')} message={_attr(error)}>"
                    f"{_text(error)}</failure>")
    if entry.failed_checks:
        first = entry.failed_checks[0]
        body.append(f"      <failure type=\"expectation\" message={_attr(first)}>"
                    f"{_text(chr(10).join(entry.failed_checks))}</failure>")
    if not body:
        return head + "/>", False
    return "\n".join([head + ">", *body, "    </testcase>"]), True


def _skipped(planned: PlannedId, reason: str | None) -> str:
    why = "never ran" + (f" ({reason})" if reason else "")
    return (f"    <testcase classname={_attr('batchrun.' + (planned.job or 'unknown'))} "
            f"name={_attr(_name(planned.id, planned.request))} time=\"0.000\">\n"
            f"      <skipped message={_attr(why)}/>\n    </testcase>")
