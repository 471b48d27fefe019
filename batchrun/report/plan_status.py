"""What `batchrun report` knows of the plan behind an output, and of how its run ended.

Two sources. `OUT.manifest.json` (written by `batchrun run`, see `batchrun.output.manifest`) says how many
requests were planned, how the run ended (exit code, the gate or budget that stopped it, an
interruption) and names `OUT.plan-ids`, the plan's sorted ids, which is used when its sha256 is the
manifest's. `report --spec SPEC` plans the spec as it is now instead (a spec changed since the run
is counted against its new plan); the manifest still tells how the run ended.

A smoke run (`run --only/--limit`, the manifest's `plan.selection`) planned a part of the plan: that
part's count is no plan for the output (which may hold earlier runs' records of the rest), so without
--spec every record counts; either way the report names the selection, so requests it left out on
purpose are never a bare "never ran". Version 1 and 2 manifests share every field read here.

Ids are streamed from either source and matched against the report's per-id entries: nothing is
held per planned id beyond the first few that never ran (listed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from batchrun.output.manifest import manifest_path
from batchrun.output.sink import output_in_use

log = logging.getLogger(__name__)

MAX_PLAN_LISTED = 10  # never-ran and not-planned ids named in text/markdown/json; counts are exact


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedId:
    id: str
    job: str  # "" when unknown: the .plan-ids file holds ids only
    request: str  # `records_io.request_label`, "" when unknown


@dataclasses.dataclass(frozen=True, slots=True)
class PlanStatus:
    source: str  # the spec or manifest file the plan came from
    planned: int
    # Without the plan's ids (only its size), every record is taken as planned.
    with_record: int
    never_ran: int
    never_ran_listed: list[PlannedId]
    not_planned: int  # ids in the output that the plan does not have (left out of the numbers)
    not_planned_listed: list[PlannedId]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "planned": self.planned,
            "with_record": self.with_record,
            "never_ran": self.never_ran,
            "never_ran_listed": [dataclasses.asdict(p) for p in self.never_ran_listed],
            "not_planned": self.not_planned,
            "not_planned_listed": [dataclasses.asdict(p) for p in self.not_planned_listed],
        }


@dataclasses.dataclass(frozen=True, slots=True)
class RunOutcome:
    """How the run that wrote the output ended, as its manifest says."""

    manifest: str
    finished: bool  # False: still running, or killed before it could say
    exit_code: int | None
    stopped_by: str | None  # `gate max_errors: ...` or `budget: ...`
    gates: list[str]  # every breached gate's message
    interrupted: bool
    shard: str | None
    # `--only`/`--limit` as the newest run was given them (a smoke run of a part of the plan), and
    # how many requests that part has; None: the run took the whole plan.
    selection: str | None = None
    selected: int | None = None
    running: bool = False  # not finished, and a run holds the output's lock: it is being written now

    @property
    def stop_reason(self) -> str | None:
        """`gate max_errors`, `budget`, `interrupted`, `still running`, `run not finished`; None when it
        ran to its end."""
        if self.stopped_by:
            return self.stopped_by.split(":", 1)[0]
        if self.interrupted:
            return "interrupted"
        if self.running:
            return "still running"
        if not self.finished:
            return "run not finished"
        return None

    def notes(self) -> list[str]:
        """Why planned requests may lack a record, for the verdict and JUnit's skipped cases: what
        stopped the run, and a smoke run's `--only`/`--limit` (it left the rest out on purpose)."""
        reason = self.stop_reason
        return ([reason] if reason else []) + ([f"run with {self.selection}"] if self.selection else [])

    def to_json(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest, "finished": self.finished, "exit_code": self.exit_code,
            "stopped_by": self.stopped_by, "gates": self.gates, "interrupted": self.interrupted, "shard": self.shard,
            "selection": self.selection, "selected": self.selected, "running": self.running,
        }


def read_manifest(output: Path) -> dict[str, Any] | None:
    """The output's manifest, or None when there is none (or it cannot be read: a warning)."""
    path = manifest_path(output)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("%s: not used (%s)", path, getattr(exc, "strerror", None) or exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s: not used (not a JSON object)", path)
        return None
    return data


def run_outcome(output: Path, manifest: dict[str, Any]) -> RunOutcome:
    gates = manifest.get("gates")
    exit_code = manifest.get("exit_code")
    selection, selected = _selection(manifest)
    finished = manifest.get("finished_at") is not None
    return RunOutcome(
        manifest=str(manifest_path(output)),
        finished=finished,
        running=not finished and output_in_use(output),
        exit_code=exit_code if isinstance(exit_code, int) and not isinstance(exit_code, bool) else None,
        stopped_by=manifest.get("stopped_by") if isinstance(manifest.get("stopped_by"), str) else None,
        gates=[g for g in gates if isinstance(g, str)] if isinstance(gates, list) else [],
        interrupted=manifest.get("interrupted") is True,
        shard=manifest.get("shard") if isinstance(manifest.get("shard"), str) else None,
        selection=selection,
        selected=selected,
    )


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _selection(manifest: dict[str, Any]) -> tuple[str | None, int | None]:
    """(`--only`/`--limit` of the newest run, the size of that part) from `plan.selection` (manifest
    version 2); (None, None) when the run took the whole plan."""
    plan = manifest.get("plan")
    if not isinstance(plan, dict) or not isinstance(plan.get("selection"), str):
        return None, None
    return plan["selection"], _count(plan.get("count"))


def manifest_plan(output: Path, manifest: dict[str, Any]) -> tuple[int, Iterator[PlannedId] | None] | None:
    """(planned count, the planned ids or None when unknown) from the manifest, or None when it has
    no plan count (a run that failed before planning) or only a part's (a run with --only/--limit:
    the output may hold records of the rest from earlier runs, and the rest is not "never ran")."""
    plan = manifest.get("plan")
    if not isinstance(plan, dict) or isinstance(plan.get("selection"), str):
        return None
    count = _count(plan.get("count"))
    if count is None:
        return None
    ids_file, digest = plan.get("ids_file"), plan.get("ids_sha256")
    if not isinstance(ids_file, str) or not isinstance(digest, str):
        return count, None
    path = output.with_name(Path(ids_file).name)
    if _file_sha256(path) != digest:  # missing, or written by another run: the count alone is still right
        return count, None
    return count, _sidecar_ids(path)


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _sidecar_ids(path: Path) -> Iterator[PlannedId]:
    with path.open("rb") as handle:
        for line in handle:
            rid = line.strip().decode("utf-8", "replace")
            if rid:
                yield PlannedId(rid, "", "")


@dataclasses.dataclass(frozen=True, slots=True)
class SpecPlan:
    """A spec's plan as it is now, for `report --spec`: the spec's path (named in the report) and a
    function from the run's shard (None: the whole plan) to the planned ids. The caller builds it
    (commands/report.py), so the report package needs none of the spec or plan machinery."""

    source: str
    ids: Callable[[str | None], Iterator[PlannedId]]


def match_plan(source: str, planned_count: int | None, plan: Iterator[PlannedId] | None,
               present: Mapping[str, Any], describe: Callable[[list[str]], list[PlannedId]],
               never_ran: list[PlannedId] | None = None) -> tuple[PlanStatus, set[str] | None]:
    """Match the plan's ids against the ids present in the output.

    Returns the status and the set of present ids the plan has (None when the ids are unknown: then
    every record counts). `describe` names the present ids the plan lacks that are listed (a few).
    `never_ran`, when given, receives every planned id without a record (JUnit lists them all).
    """
    if plan is None:  # only the size is known: every record counts, as if planned
        count = planned_count or 0
        with_record = min(len(present), count)
        return PlanStatus(source, count, with_record, count - with_record, [], 0, []), None
    planned = 0
    planned_present: set[str] = set()
    never = 0
    never_listed: list[PlannedId] = []
    for item in plan:
        planned += 1
        if item.id in present:
            planned_present.add(item.id)
            continue
        never += 1
        if len(never_listed) < MAX_PLAN_LISTED:
            never_listed.append(item)
        if never_ran is not None:
            never_ran.append(item)
    not_planned = [rid for rid in present if rid not in planned_present]
    listed = describe(not_planned[:MAX_PLAN_LISTED]) if not_planned else []
    status = PlanStatus(source, planned, len(planned_present), never, never_listed, len(not_planned), listed)
    return status, planned_present
