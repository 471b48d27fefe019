"""`batchrun diff BASE NEW`: compare a new output with a baseline, request by request (joined by id).

Categories, each naming its ids in plan order:

- newly failing (ok in base, error in new) and newly passing (the reverse);
- missing (in base, not in new) and added (in new, not in base);
- results changed: field-level changes between two ok results, as `images[0].width: 512 -> 768`;
- expectation regressions: a check that passed in base and fails in new (matched by the check
  itself, else by position);
- latency regressions: new latency > ratio x base latency *and* more than `LATENCY_FLOOR_S` slower
  (so 0.02 s -> 0.06 s is noise, not a 3x regression).

Volatile fields are ignored by default: any string that is an http(s) URL, keys named `url`,
`request_id`, `timings` or `timing`. When both records downloaded their artifacts (sha256 known),
a media URL is compared by content hash instead, so a re-uploaded identical image is no change and
a changed image behind the same URL is one. Everything except newly passing and added is a
regression (exit 1).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from batchrun.records_io import check_message, check_passed, expectation_checks, iter_records, newest_per_id
from batchrun.resultpath import Part, format_path, json_equal, matches_prefix, show_value
from batchrun.report import error_text, seconds

LATENCY_FLOOR_S = 0.05
VOLATILE_KEYS = frozenset({"url", "request_id", "timings", "timing"})
_KEPT = ("id", "index", "job", "status", "error", "result", "expectations", "timing", "artifacts")
ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One changed field. `base`/`new` are the JSON values (`ABSENT` on the side that lacks the
    field); for media compared by content they are the sha256 hashes and `media` is true."""

    path: str
    base: Any
    new: Any
    media: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self._shown(self.base)} -> {self._shown(self.new)}"

    def _shown(self, value: Any) -> str:
        if value is ABSENT:
            return "(absent)"
        return f"sha256 {value[:12]}" if self.media else show_value(value, limit=60)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.media:
            out.update(base_sha256=self.base, new_sha256=self.new)
        else:
            out.update({side: value for side, value in (("base", self.base), ("new", self.new)) if value is not ABSENT})
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One id in one category. `detail` is a one-line explanation; `changes` for results changed."""

    id: str
    job: str
    detail: str = ""
    changes: tuple[Change, ...] = ()
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra fields for json


# (key, label, is a regression, label for a count of one)
CATEGORIES = (
    ("newly_failing", "newly failing", True, "newly failing"),
    ("newly_passing", "newly passing", False, "newly passing"),
    ("missing", "missing", True, "missing"),
    ("added", "added", False, "added"),
    ("results_changed", "results changed", True, "result changed"),
    ("expectation_regressions", "expectation regressions", True, "expectation regression"),
    ("latency_regressions", "latency regressions", True, "latency regression"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    base_file: str
    new_file: str
    base_requests: int
    new_requests: int
    categories: dict[str, list[Entry]]

    @property
    def regressed(self) -> bool:
        return any(self.categories[key] for key, _, regression, _ in CATEGORIES if regression)


def diff_files(
    base: str | Path, new: str | Path, *, ignore: Sequence[tuple[Part, ...]] = (), latency_ratio: float = 1.5
) -> Diff:
    """Compare two output files (the newest record of each id in each).

    Args:
        ignore: parsed `--ignore` patterns (result paths; `[*]`/`*` wildcards; a pattern ignores
            its whole subtree).
        latency_ratio: a latency regression is new > ratio x base (and > base + LATENCY_FLOOR_S).

    Raises:
        RecordsError: either file cannot be read.
    """
    old_records = _load(base)
    new_records = _load(new)
    cats: dict[str, list[Entry]] = {key: [] for key, _, _, _ in CATEGORIES}
    for rid, b in old_records.items():
        n = new_records.get(rid)
        if n is None:
            cats["missing"].append(Entry(rid, b["job"]))
            continue
        b_ok, n_ok = b["status"] == "ok", n["status"] == "ok"
        if b_ok and not n_ok:
            cats["newly_failing"].append(Entry(rid, n["job"], error_text(n), data={"error": n.get("error")}))
        elif n_ok and not b_ok:
            cats["newly_passing"].append(Entry(rid, n["job"]))
        elif b_ok and n_ok:
            changes = compare_results(b, n, ignore=ignore)
            if changes:
                cats["results_changed"].append(Entry(rid, n["job"], changes=tuple(changes)))
            slower = _latency_regression(b, n, latency_ratio)
            if slower is not None:
                cats["latency_regressions"].append(slower)
        cats["expectation_regressions"] += _expectation_regressions(rid, b, n)
    cats["added"] = [Entry(rid, n["job"]) for rid, n in new_records.items() if rid not in old_records]
    order = {rid: (r["index"], rid) for rid, r in {**old_records, **new_records}.items()}
    for entries in cats.values():
        entries.sort(key=lambda e: order[e.id])
    return Diff(str(base), str(new), len(old_records), len(new_records), cats)


def _load(path: str | Path) -> dict[str, dict[str, Any]]:
    slim = ({key: record.get(key) for key in _KEPT} for record in iter_records(path))
    return newest_per_id(slim)


def _latency_regression(b: dict[str, Any], n: dict[str, Any], ratio: float) -> Entry | None:
    old, new = _latency(b), _latency(n)
    if old is None or new is None or not (new > old * ratio and new - old > LATENCY_FLOOR_S):
        return None
    factor = f" (x{new / old:.2f})" if old > 0 else ""
    return Entry(n["id"], n["job"], f"{old:.3f} s -> {new:.3f} s{factor}", data={"base_s": old, "new_s": new})


def _latency(record: dict[str, Any]) -> float | None:
    return seconds((record.get("timing") or {}).get("latency_s"))


def _expectation_regressions(rid: str, b: dict[str, Any], n: dict[str, Any]) -> list[Entry]:
    """Checks that passed in base and failed in new (`records_io.check_passed` decides both)."""

    def keyed(record: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """check key -> (the check's definition, its outcome)."""
        found: dict[str, tuple[Any, Any]] = {}
        for position, outcome in enumerate(expectation_checks(record)):
            check = outcome.get("check") if isinstance(outcome, dict) else None
            key = json.dumps(check, sort_keys=True) if check is not None else f"#{position}"
            found.setdefault(key, (check, outcome))
        return found

    old = keyed(b)
    return [
        Entry(rid, n["job"], check_message(outcome), data={"check": check})
        for key, (check, outcome) in keyed(n).items()
        if not check_passed(outcome) and key in old and check_passed(old[key][1])
    ]


def compare_results(
    base: dict[str, Any], new: dict[str, Any], *, ignore: Sequence[tuple[Part, ...]] = ()
) -> list[Change]:
    """Field-level changes between two records' results, volatile fields and `ignore` left out."""
    walker = _Walker(_hashes(base), _hashes(new), ignore)
    walker.walk(base.get("result"), new.get("result"), ())
    return walker.changes


def _hashes(record: dict[str, Any]) -> dict[str, str]:
    """URL -> sha256 of the record's downloaded artifacts (failed downloads have no hash)."""
    out = {}
    for artifact in record.get("artifacts") or []:
        if isinstance(artifact, dict) and isinstance(artifact.get("sha256"), str) and isinstance(artifact.get("url"), str):
            out[artifact["url"]] = artifact["sha256"]
    return out


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


class _Walker:
    def __init__(self, base_hashes: dict[str, str], new_hashes: dict[str, str], ignore: Sequence[tuple[Part, ...]]):
        self.base_hashes = base_hashes
        self.new_hashes = new_hashes
        self.ignore = ignore
        self.changes: list[Change] = []

    def walk(self, a: Any, b: Any, parts: tuple[Part, ...]) -> None:
        if any(matches_prefix(pattern, parts) for pattern in self.ignore):
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in [*a, *(k for k in b if k not in a)]:
                if key in VOLATILE_KEYS:
                    if key == "url" and key in a and key in b:
                        self._media(a[key], b[key], (*parts, key))
                    continue
                self.walk(a.get(key, ABSENT), b.get(key, ABSENT), (*parts, key))
        elif isinstance(a, list) and isinstance(b, list):
            for i in range(max(len(a), len(b))):
                self.walk(a[i] if i < len(a) else ABSENT, b[i] if i < len(b) else ABSENT, (*parts, i))
        elif _is_url(a) and _is_url(b):
            self._media(a, b, parts)
        elif a is ABSENT or b is ABSENT or not json_equal(a, b):
            self.changes.append(Change(format_path(parts), a, b))

    def _media(self, a: Any, b: Any, parts: tuple[Part, ...]) -> None:
        """URLs are volatile; their content hashes, when both sides have them, are not."""
        old = self.base_hashes.get(a) if isinstance(a, str) else None
        new = self.new_hashes.get(b) if isinstance(b, str) else None
        if old is not None and new is not None and old != new:
            self.changes.append(Change(format_path(parts), old, new, media=True))


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
        "counts": {key: len(diff.categories[key]) for key, _, _, _ in CATEGORIES},
    }
    for key, _, _, _ in CATEGORIES:
        items = []
        for entry in diff.categories[key]:
            item: dict[str, Any] = {"id": entry.id, "job": entry.job}
            if key == "results_changed":
                item["changes"] = [c.to_json() for c in entry.changes]
            elif key in ("expectation_regressions", "newly_failing", "latency_regressions"):
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
        f"{diff.new_file} ({diff.new_requests} requests)"
    ]
    for key, label, _, _ in CATEGORIES:
        entries = diff.categories[key]
        if not entries:
            continue
        out += ["", f"{label} ({len(entries)})"]
        width = max(len(e.id) for e in entries)
        job_width = max(len(e.job) for e in entries)
        for entry in entries:
            head = f"  {entry.id:<{width}}  {entry.job:<{job_width}}  {entry.detail}".rstrip()
            out.append(head)
            out += [f"      {line}" for line in _lines(entry)]
    out += ["", summary(diff)]
    return "\n".join(out) + "\n"


def _markdown(diff: Diff) -> str:
    out = [
        "## batchrun diff",
        "",
        f"`{diff.base_file}` ({diff.base_requests} requests) → `{diff.new_file}` ({diff.new_requests} requests): "
        f"**{summary(diff)}**",
        "",
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
        if key == "results_changed":
            out += ["| id | job | change |", "| --- | --- | --- |"]
            out += [f"| `{e.id}` | {_cell(e.job)} | {_cell(line)} |" for e in entries for line in _lines(e)]
        else:
            out += ["| id | job | detail |", "| --- | --- | --- |"]
            out += [f"| `{e.id}` | {_cell(e.job)} | {_cell(e.detail)} |" for e in entries]
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")
