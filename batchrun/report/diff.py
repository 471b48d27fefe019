"""`batchrun diff BASE NEW`: compare a new output with a baseline, request by request (joined by id).

Categories, each naming its ids in plan order:

- newly failing (ok in base, error in new) and newly passing (the reverse);
- missing (in base, not in new) and added (in new, not in base);
- results changed: field-level changes between two ok results, as `images[0].width: 512 -> 768`;
  an image whose bytes differ says how far apart the two pictures' perceptual hashes are
  (`images[0]: sha256 ab12.. -> cd34.. (visually changed, pHash distance 31/64)`);
- visually the same: ids whose only changes are images with other bytes but the same look (pHash
  distance at most the threshold, `resultdiff.PHASH_THRESHOLD` by default): a re-encode, not a
  regression;
- expectation regressions: a check that passed in base and fails in new (matched by the check
  itself, else by position);
- latency regressions: new latency > ratio x base latency *and* more than `LATENCY_FLOOR_S` slower
  (so 0.02 s -> 0.06 s is noise, not a 3x regression);
- served by another endpoint: fal rerouted the request to an alternative endpoint (a model
  fallback, record field `rerouted_to`) on one side and not the other, or to another one: its result
  is another model's, whatever the other categories say.

Volatile fields are ignored by default (see `batchrun.report.resultdiff`): URLs, `request_id`, timings;
media behind a URL compare by content hash when both sides downloaded it. Everything except newly
passing, added and visually the same is a regression (exit 1).

Listed ids carry a label of what the request is (`records_io.request_label`: matrix values, or
dataset row and first arguments), read again by offset for the listed ids only. Above the
categories, whole-run numbers (ok rate, p50/p95 latency of ok records) base -> new; two files that
share no id get a warning (probably the wrong files). The text, markdown and json renderings live
in `batchrun.report.diff_text`, HTML in `batchrun.report.diff_html`.

Memory holds a small summary per id and file (`_Side`: status, latency, a digest of the result,
which checks passed, where the record's line starts), not the records. Ids whose digests differ,
newly failing ids and possible expectation regressions are then re-read by offset, one pair at a
time, for their detail.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from batchrun.output.reading import (
    Newest,
    check_message,
    check_passed,
    error_text,
    expectation_checks,
    finished_at,
    iter_located,
    open_output,
    record_at,
    record_label,
    seconds,
    seekable,
)
from batchrun.output.summary import percentile
from batchrun.report.resultdiff import (
    ABSENT,
    PHASH_THRESHOLD,
    VOLATILE_KEYS,
    Change,
    compare_results,
    fingerprint,
)
from batchrun.spec.resultpath import Part

__all__ = ["ABSENT", "CATEGORIES", "LATENCY_FLOOR_S", "PHASH_THRESHOLD", "VOLATILE_KEYS", "Change", "Diff", "Entry",
           "RunNumbers", "compare_results", "diff_files"]

LATENCY_FLOOR_S = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One id in one category. `detail` is a one-line explanation; `changes` for results changed."""

    id: str
    job: str
    detail: str = ""
    changes: tuple[Change, ...] = ()
    data: dict[str, Any] = dataclasses.field(default_factory=dict)  # extra fields for json
    request: str = ""  # what the request is (`records_io.request_label`)


@dataclasses.dataclass(frozen=True, slots=True)
class RunNumbers:
    """Whole-run numbers of one side (its newest record per id)."""

    requests: int
    ok: int
    latency_p50: float | None  # of ok records, nearest rank, as `batchrun report`
    latency_p95: float | None

    @property
    def ok_rate(self) -> float | None:
        return self.ok / self.requests if self.requests else None

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "ok": self.ok,
                "ok_rate": round(self.ok_rate, 6) if self.ok_rate is not None else None,
                "latency_s": {"p50": self.latency_p50, "p95": self.latency_p95}}


# (key, label, is a regression, label for a count of one)
CATEGORIES = (
    ("newly_failing", "newly failing", True, "newly failing"),
    ("newly_passing", "newly passing", False, "newly passing"),
    ("missing", "missing", True, "missing"),
    ("added", "added", False, "added"),
    ("results_changed", "results changed", True, "result changed"),
    ("visually_same", "visually the same", False, "visually the same"),
    ("expectation_regressions", "expectation regressions", True, "expectation regression"),
    ("latency_regressions", "latency regressions", True, "latency regression"),
    ("served_by_changed", "served by another endpoint", True, "served by another endpoint"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Diff:
    base_file: str
    new_file: str
    base_requests: int
    new_requests: int
    categories: dict[str, list[Entry]]
    base_numbers: RunNumbers = RunNumbers(0, 0, None, None)
    new_numbers: RunNumbers = RunNumbers(0, 0, None, None)
    shared_ids: int = 0

    @property
    def regressed(self) -> bool:
        return any(self.categories[key] for key, _, regression, _ in CATEGORIES if regression)


@dataclasses.dataclass(frozen=True, slots=True)
class _Side:
    """What the first pass keeps of an id's newest record in one file."""

    index: int
    job: str
    ok: bool
    latency_s: float | None
    digest: bytes | None  # `resultdiff.fingerprint` of an ok record's result; None: compare it
    checks_passed: bool  # some expectation check passed
    checks_failed: bool  # some expectation check did not pass
    offset: int  # where the record's line starts, to re-read it
    rerouted_to: str | None = None  # the endpoint a model fallback moved it to


def diff_files(
    base: str | Path, new: str | Path, *, ignore: Sequence[tuple[Part, ...]] = (), latency_ratio: float = 1.5,
    phash_threshold: int = PHASH_THRESHOLD,
) -> Diff:
    """Compare two output files (the newest record of each id in each).

    Args:
        ignore: parsed `--ignore` patterns (result paths; `[*]`/`*` wildcards; a pattern ignores
            its whole subtree).
        latency_ratio: a latency regression is new > ratio x base (and > base + LATENCY_FLOOR_S).
        phash_threshold: images whose perceptual hashes differ by at most this many bits (of 64)
            are visually the same.

    Raises:
        RecordsError: either file cannot be read.
    """
    with seekable(base) as base_copy, seekable(new) as new_copy:
        old_sides = _load(base_copy, str(base), ignore)
        new_sides = _load(new_copy, str(new), ignore)
        labels: dict[str, str] = {}
        cats = _compare(base_copy, old_sides, new_copy, new_sides, ignore, latency_ratio, labels, phash_threshold)
        cats["added"] = [Entry(rid, n.job) for rid, n in new_sides.items() if rid not in old_sides]
        _label(cats, base_copy, old_sides, new_copy, new_sides, labels)

    def order(entry: Entry) -> tuple[int, str]:
        side = new_sides.get(entry.id) or old_sides[entry.id]
        return (side.index, entry.id)

    for entries in cats.values():
        entries.sort(key=order)
    shared = sum(1 for rid in old_sides if rid in new_sides)
    return Diff(str(base), str(new), len(old_sides), len(new_sides), cats, _numbers(old_sides), _numbers(new_sides),
                shared)


def _label(cats: dict[str, list[Entry]], base: Path, old_sides: dict[str, _Side], new: Path,
           new_sides: dict[str, _Side], labels: dict[str, str]) -> None:
    """Give every listed entry its request label, from `labels` or its record read again by offset
    (the new side's when it has one); an id listed in several categories is read once."""
    with open_output(base) as base_handle, open_output(new) as new_handle:
        for entries in cats.values():
            for position, entry in enumerate(entries):
                if entry.id not in labels:
                    side = new_sides.get(entry.id)
                    handle = new_handle if side is not None else base_handle
                    record = record_at(handle, (side or old_sides[entry.id]).offset)
                    labels[entry.id] = record_label(record)
                entries[position] = dataclasses.replace(entry, request=labels[entry.id])


def _numbers(sides: dict[str, _Side]) -> RunNumbers:
    latencies = sorted(s.latency_s for s in sides.values() if s.ok and s.latency_s is not None)
    return RunNumbers(
        requests=len(sides),
        ok=sum(s.ok for s in sides.values()),
        latency_p50=percentile(latencies, 50) if latencies else None,
        latency_p95=percentile(latencies, 95) if latencies else None,
    )


def _compare(
    base: Path, old_sides: dict[str, _Side], new: Path, new_sides: dict[str, _Side],
    ignore: Sequence[tuple[Part, ...]], latency_ratio: float, labels: dict[str, str], phash_threshold: int,
) -> dict[str, list[Entry]]:
    """Every category but `added`, in base file order (sorted by the caller). `labels` receives
    the label of each id whose new record was read here, so that `_label` need not read it again."""
    cats: dict[str, list[Entry]] = {key: [] for key, _, _, _ in CATEGORIES}
    with open_output(base) as base_handle, open_output(new) as new_handle:
        for rid, b in old_sides.items():
            n = new_sides.get(rid)
            if n is None:
                cats["missing"].append(Entry(rid, b.job))
                continue
            # Records are re-read (by offset, each at most once) only for the ids whose detail is shown.
            pair = _Pair(base_handle, b.offset, new_handle, n.offset)
            if b.ok and not n.ok:
                record = pair.new()
                cats["newly_failing"].append(Entry(rid, n.job, error_text(record), data={"error": record.get("error")}))
            elif n.ok and not b.ok:
                cats["newly_passing"].append(Entry(rid, n.job))
            elif b.ok and n.ok:
                if b.digest is None or b.digest != n.digest:
                    changes = compare_results(pair.base(), pair.new(), ignore=ignore, phash_threshold=phash_threshold)
                    if changes:
                        key = "visually_same" if all(c.looks_same for c in changes) else "results_changed"
                        cats[key].append(Entry(rid, n.job, changes=tuple(changes)))
                slower = _latency_regression(rid, b, n, latency_ratio)
                if slower is not None:
                    cats["latency_regressions"].append(slower)
            if b.rerouted_to != n.rerouted_to:
                endpoint = pair.new().get("endpoint")
                cats["served_by_changed"].append(Entry(
                    rid, n.job, f"{b.rerouted_to or endpoint} -> {n.rerouted_to or endpoint}",
                    data={"base_rerouted_to": b.rerouted_to, "new_rerouted_to": n.rerouted_to}))
            if b.checks_passed and n.checks_failed:
                cats["expectation_regressions"] += _expectation_regressions(rid, pair.base(), pair.new())
            if pair.new_record is not None:
                labels[rid] = record_label(pair.new_record)
    return cats


@dataclasses.dataclass(slots=True)
class _Pair:
    """One shared id's two records, each read by offset when first asked for."""

    base_handle: IO[bytes]
    base_offset: int
    new_handle: IO[bytes]
    new_offset: int
    base_record: dict[str, Any] | None = None
    new_record: dict[str, Any] | None = None

    def base(self) -> dict[str, Any]:
        if self.base_record is None:
            self.base_record = record_at(self.base_handle, self.base_offset)
        return self.base_record

    def new(self) -> dict[str, Any]:
        if self.new_record is None:
            self.new_record = record_at(self.new_handle, self.new_offset)
        return self.new_record


def _load(path: Path, name: str, ignore: Sequence[tuple[Part, ...]]) -> dict[str, _Side]:
    newest: Newest[_Side] = Newest()
    jobs: dict[str, str] = {}  # one str object per job name, not one per record
    for located in iter_located(path, name):
        record = located.record
        ok = record["status"] == "ok"
        checks = [check_passed(check) for check in expectation_checks(record)]
        side = _Side(
            index=record["index"],
            job=jobs.setdefault(record["job"], record["job"]),
            ok=ok,
            latency_s=seconds((record.get("timing") or {}).get("latency_s")),
            digest=fingerprint(record, ignore=ignore) if ok else None,
            checks_passed=any(checks),
            checks_failed=not all(checks),
            offset=located.offset,
            rerouted_to=record.get("rerouted_to"),
        )
        newest.offer(record["id"], finished_at(record), side)
    return newest.values


def _latency_regression(rid: str, b: _Side, n: _Side, ratio: float) -> Entry | None:
    old, new = b.latency_s, n.latency_s
    if old is None or new is None or not (new > old * ratio and new - old > LATENCY_FLOOR_S):
        return None
    factor = f" (x{new / old:.2f})" if old > 0 else ""
    return Entry(rid, n.job, f"{old:.3f} s -> {new:.3f} s{factor}", data={"base_s": old, "new_s": new})


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
