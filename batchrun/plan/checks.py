"""Checks that need the expanded plan: its size against limits.max_requests, designs that are empty
or too big to compute, duplicate request ids within a job, and templated `$file` paths that name
no file. They run after the spec stages
(batchrun.spec.load) on the frozen Spec, and locate their problems in the spec's YAML.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from batchrun.errors import Problem
from batchrun.plan import design
from batchrun.plan.planner import JobPlanner, job_count
from batchrun.spec import dataset, yamlsource
from batchrun.spec.checks import JobSource
from batchrun.spec.model import Job, Spec
from batchrun.spec.template import ref_names, whole_refs

__all__ = ["distinct_by_construction", "plan_problems"]

def plan_problems(spec: Spec, located: yamlsource.Located, jobs: list[JobSource],
                   datasets: dict[int, dataset.Report]) -> tuple[list[Problem], dict[str, int]]:
    """The plan's problems and its requests per job name (empty when it was too big to count)."""
    # include/exclude make counting walk the product; refuse absurd products before walking them.
    scan_cap = max(10 * spec.max_requests, 1_000_000)
    for job, source in zip(spec.jobs, jobs, strict=True):
        raw = math.prod(len(v) for v in job.matrix.values())
        if (job.include or job.exclude or job.constraints) and job.strategy is None and raw > scan_cap:
            return [located.problem(
                source.at("matrix"),
                f"the matrix of job '{job.name}' has {raw} combinations before exclude/include"
                f"{'/constraints' if job.constraints else ''}, far more than limits.max_requests ({spec.max_requests})",
            )], {}
        too_big = design.design_problem(job)
        if too_big is not None:
            return [located.problem(source.at("strategy"), too_big)], {}
    empty = _empty_designs(spec, located, jobs)
    if empty:
        return empty, {}
    counts = {
        job.name: job_count(job, datasets[source.index].rows if source.index in datasets else None)
        for job, source in zip(spec.jobs, jobs, strict=True)
    }
    total = sum(counts.values())
    if total > spec.max_requests:
        per_job = ", ".join(f"{name}: {n}" for name, n in list(counts.items())[:5])
        if "limits" in located.data and "max_requests" in (located.data.get("limits") or {}):
            where: yamlsource.PathKey = ("limits", "max_requests")
            fix = f"raise limits.max_requests to {total} if you mean it"
        else:
            where = ("jobs",)
            fix = f"add `limits: {{max_requests: {total}}}` if you mean it"
        message = (
            f"the plan has {total} requests ({per_job}), more than limits.max_requests ({spec.max_requests}); {fix}"
        )
        return [located.problem(where, message, at_key=where == ("jobs",))], counts
    problems: list[Problem] = []
    index = 0
    for job, source in zip(spec.jobs, jobs, strict=True):
        problems.extend(_job_plan_problems(spec, job, source, located, index, datasets.get(source.index)))
        index += counts[job.name]
    return problems, counts


def _empty_designs(spec: Spec, located: yamlsource.Located, jobs: list[JobSource]) -> list[Problem]:
    """A job whose constraints (or exclude, under a covering strategy) leave no combination would
    plan nothing: surely not what was meant."""
    problems = []
    for job, source in zip(spec.jobs, jobs, strict=True):
        if job.matrix and (job.constraints or job.strategy is not None) and design.count(job) == 0:
            where = "constraints" if job.constraints else "exclude" if job.exclude else "strategy"
            problems.append(located.problem(
                source.at(where),
                f"job '{job.name}' plans no request: its {where} rule out every combination of its matrix",
                at_key=True,
            ))
    return problems


def _job_plan_problems(
    spec: Spec, job: Job, source: JobSource, located: yamlsource.Located, start: int, rows: dataset.Report | None
) -> list[Problem]:
    """Duplicate ids within a job (ids include the job name, so jobs never collide with each other)
    and templated $file paths that name no file."""
    problems: list[Problem] = []
    check_files = "$file" in repr(job.arguments) and "${{" in repr(job.arguments)
    whole = isinstance(job.arguments, str)  # `arguments: "${{ row }}"`: each row must hold an object
    not_object: tuple[int, str] | None = None
    if not check_files and not whole and distinct_by_construction(job, rows):
        return problems  # no walk needed: see distinct_by_construction
    # Requests of different repeats never share an id (the repeat index is hashed into it), and
    # when nothing renders `${{ repeat }}` the requests of one repeat are those of any other: one
    # repeat is walked, not `repeat` of them (a huge repeat walked for minutes). Plan index
    # start + k of that walk is start + k * repeat of the real plan (repeat is the innermost loop).
    stride = 1
    if job.repeat > 1 and not _renders_repeat(job):
        stride, job = job.repeat, dataclasses.replace(job, repeat=1)
    # A set of 64-bit ints (not ids, not a dict) keeps a 1M-request job near 70 MB; the rare
    # duplicate is then located by a second pass.
    seen: set[int] = set()
    duplicates = 0
    dup_key: int | None = None
    dup_index = 0
    dup_matrix: dict[str, Any] = {}
    missing_files: set[str] = set()
    for request in JobPlanner.create(job, spec).requests(start, None):
        key = int(request.id, 16)
        if key in seen:
            duplicates += 1
            if dup_key is None:
                dup_key, dup_index = key, start + (request.index - start) * stride
                dup_matrix = request.matrix
        else:
            seen.add(key)
        if check_files:
            _missing_files(request.arguments, missing_files)
        if whole and not_object is None and not isinstance(request.arguments, dict):
            not_object = (request.row or 0, dataset.kind(request.arguments))
    seen.clear()
    if not_object is not None:
        row, kind = not_object
        message = (f"{str(job.arguments).strip()} is the whole request body, so it must be an object; "
                   f"row {row} gives {kind}")
        problems.append(located.problem(source.at("arguments"), message))
    if dup_key is not None:
        first = next(r for r in JobPlanner.create(job, spec).requests(start, None) if int(r.id, 16) == dup_key)
        first_index = start + (first.index - start) * stride
        duplicates *= stride  # each repeat of the pair is a duplicate too
        more = f" ({duplicates} duplicates in all)" if duplicates > 1 else ""
        problems.append(
            located.problem(
                (*source.path, "name"),
                f"requests {first_index} and {dup_index} of job '{job.name}' are identical (id {first.id}){more}; "
                "each matrix combination and dataset row must change the arguments or path "
                f"(use repeat: for deliberate repeats){_options_only(job, first.matrix, dup_matrix)}",
            )
        )
    for missing in sorted(missing_files)[:5]:
        problems.append(
            located.problem(source.at("arguments"), f"file not found: {missing} (from a templated $file)", at_key=True)
        )
    return problems


def distinct_by_construction(job: Job, rows: dataset.Report | None = None) -> bool:
    """True when no two requests of `job` can have the same id, so the duplicate walk is skipped
    (it is a full plan walk: seconds for a million requests, repeated by every `batchrun run`).

    Holds when the job has no include (exclude only removes combinations), each matrix list's
    values are distinct as canonical JSON, every matrix key is the whole value of some argument
    (`seed: "${{ matrix.seed }}"`) outside `$file` objects, and a dataset's rows (`rows`, its
    check's report) are distinct in the fields that are whole arguments (`dataset.check`'s
    `distinct_on`). Then two requests of different combinations differ in a matrix argument, and
    two of the same combination but different rows in a row argument (a whole-value template
    renders the value itself, only escaping `${{` in strings, which is injective), so their
    arguments differ and so do the ids (the repeat index is part of the id too). Anything else
    keeps the walk, and so does a job without matrix or dataset (its walk is trivial)."""
    if job.include or (not job.matrix and job.dataset is None):
        return False
    if job.dataset is not None and (rows is None or not rows.distinct):
        return False
    for values in job.matrix.values():
        if not isinstance(values, list):
            return False
        try:
            canonical = {json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False) for v in values}
        except (TypeError, ValueError):
            return False
        if len(canonical) != len(values):
            return False
    return whole_refs(job.arguments, "matrix") >= set(job.matrix)


def _renders_repeat(job: Job) -> bool:
    """Whether `${{ repeat }}` appears in what makes a request's id (its arguments or path)."""
    return bool(ref_names([job.arguments, job.path], "repeat"))  # {""}: `repeat` has no name part


def _missing_files(value: Any, out: set[str]) -> None:
    if isinstance(value, dict):
        target = value.get("$file")
        if isinstance(target, str) and len(value) == 1:
            if target not in out and not os.path.isfile(target):
                out.add(target)
            return
        for v in value.values():
            _missing_files(v, out)
    elif isinstance(value, list):
        for v in value:
            _missing_files(v, out)


def _options_only(job: Job, first: dict[str, Any], second: dict[str, Any]) -> str:
    """Why two combinations collided when their matrix values differ: those keys reach only the
    hint or headers, which shape how a request is sent, not which request it is (its id)."""
    in_options = ref_names([job.hint, job.headers], "matrix")
    differ = sorted(key for key in first.keys() | second.keys() if first.get(key) != second.get(key))
    used = [key for key in differ if key in in_options]
    if not used:
        return ""
    keys = ", ".join(f"'{key}'" for key in used)
    return (f"; matrix {'keys' if len(used) > 1 else 'key'} {keys} {'differ' if len(used) > 1 else 'differs'} "
            "between them but only in the hint or headers, which are not part of a request's id: give each "
            "variant its own job (the job name is part of the id)")
