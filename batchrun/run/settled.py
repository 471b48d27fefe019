"""What an output already settles of a plan, counted before a run sends anything.

A resume walks the plan once before the run (`count_plan`): it counts what the output settles (for
the "N of M already done" message and the manifest), lists the plan indices left to do (so the
executor renders only those) and, per job, the settled requests the executor then skips in bulk
(`SettledJob`). A fresh, unsharded run needs no walk: validation's per-job counts are the plan's size.
"""

from __future__ import annotations

import array
import dataclasses
from collections.abc import Mapping
from typing import Any

from batchrun.output.planids import PlanIds
from batchrun.output.resume import ResumeState
from batchrun.plan.planner import build_plan
from batchrun.plan.selection import Selection
from batchrun.spec.model import Spec

__all__ = ["PlanCount", "SettledJob", "count_plan"]


@dataclasses.dataclass(slots=True)
class SettledJob:
    """Requests of one job that an earlier run's records settle, as a resume's counting walk found
    them; the executor's walk then renders only the rest (`build_plan(only=...)`) and skips these
    in bulk when its walk reaches `start`, where it would have skipped the first of them (so the
    summary's counts and job order are the same; only a walk interrupted inside the job counts
    all of the job's settled requests rather than those walked so far)."""

    name: str
    start: int  # plan index of the job's first settled request
    skipped: int = 0
    skipped_errors: int = 0
    expect_failed: int = 0  # of them with a failed expectation (resume.expect_failed)
    intents: list[str] = dataclasses.field(default_factory=list)  # settled ids with an open submit intent


@dataclasses.dataclass(slots=True)
class PlanCount:
    total: int  # planned requests
    settled: int = 0  # settled by the output
    errors: int = 0  # of which errors
    requeued_errors: int = 0  # ids to send again whose newest record is an error (--retry-errors)
    # When the plan was walked: the plan indices left to do (the executor renders only those) and
    # the settled requests per job (it skips them in bulk). None: the executor walks everything.
    todo: array.array[int] | None = None
    settled_jobs: list[SettledJob] = dataclasses.field(default_factory=list)

    @property
    def expect_failed(self) -> int:
        """Settled requests whose record failed an expectation."""
        return sum(j.expect_failed for j in self.settled_jobs)


def count_plan(spec: Spec, counts: Mapping[str, int], shard: tuple[int, int] | None, state: ResumeState,
               retry_errors: bool, attach: Mapping[str, Any], intents: Mapping[str, Any], ids: PlanIds,
               selection: Selection | None = None) -> PlanCount:
    """Count the plan (or the `selection` of it) and what the output settles. Counting needs no
    expansion unless the plan is sharded or there is something to resume; then this walk also
    collects the plan's `ids` and what the executor's walk needs (so that one renders only the
    requests left to do)."""
    if shard is None and not state.newest_ok:
        if selection is not None:  # its ranges come from validation's counts too
            return PlanCount(selection.total, todo=array.array("Q", selection.indices()))
        return PlanCount(sum(counts.values()))  # validation's count: no dataset read again
    count = PlanCount(0, todo=array.array("Q"))
    todo = count.todo
    assert todo is not None
    newest_ok, expect_failed = state.newest_ok, state.expect_failed
    job: SettledJob | None = None
    only = None if selection is None else selection.indices()
    for request in ids.wrap(build_plan(spec, shard=shard, only=only)):
        count.total += 1
        rid = request.id
        if rid not in attach and state.skip(rid, retry_errors=retry_errors):
            count.settled += 1
            if job is None or job.name != request.job.name:
                job = SettledJob(request.job.name, request.index)
                count.settled_jobs.append(job)
            job.skipped += 1
            if not newest_ok[rid]:
                count.errors += 1
                job.skipped_errors += 1
            if rid in expect_failed:
                job.expect_failed += 1
            if rid in intents:
                job.intents.append(rid)
        else:
            todo.append(request.index)
            if newest_ok.get(rid) is False:
                count.requeued_errors += 1
    return count
