"""Load a spec file: YAML -> JSON Schema -> semantic checks -> plan checks -> frozen Spec.

Every stage collects located problems instead of stopping at the first, so one `batchrun validate`
shows everything that is wrong. Raw dicts never leave this module.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from batchrun.spec import dataset

from batchrun.spec import yamlsource
from batchrun.errors import Problem, SpecError
from batchrun.plan.planner import JobPlanner, job_count
from batchrun.spec.pricing import price_problems
from batchrun.spec.schemaerrors import schema_problems
from batchrun.spec.model import Job, RateLimit, RetryPolicy, Spec, Target
from batchrun.spec.checks import Checker, JobSource
from batchrun.spec.template import whole_refs

DEFAULT_MAX_REQUESTS = 10_000


def load_spec(path: str | Path, warnings: list[Problem] | None = None, counts: dict[str, int] | None = None) -> Spec:
    """Load and fully validate a spec. Raises SpecError with every error; warnings go to `warnings`,
    and the plan's requests per job name (in job order) to `counts`: validation counted them, so a
    command that shows them need not count again (which reads every dataset file once more)."""
    spec, problems = validate_spec(path, counts)
    errors = [p for p in problems if p.severity == "error"]
    if warnings is not None:
        warnings.extend(p for p in problems if p.severity != "error")
    if errors or spec is None:
        raise SpecError(errors)
    return spec


def validate_spec(path: str | Path, counts: dict[str, int] | None = None) -> tuple[Spec | None, list[Problem]]:
    """(spec or None, every problem: errors and warnings). The spec is None when there is an error.
    With a spec, `counts` (when given) receives the requests per job name, in job order."""
    label = str(path)
    source = Path(path)
    text, problems = yamlsource.read_text(source, label)
    if text is None:
        return None, problems
    located, problems = yamlsource.parse(text, label)
    if located is None:
        return None, problems
    data = located.data
    if data is None:
        return None, [*problems, Problem(label, 1, 1, "$", "empty spec; expected a mapping with version, name and jobs")]
    if not isinstance(data, dict):
        pos = located.value_pos(())
        kind = "a list" if isinstance(data, list) else "a single value"
        message = f"a spec must be a mapping with version, name and jobs, not {kind}"
        return None, [*problems, Problem(label, pos.line, pos.col, "$", message)]
    found, bad = schema_problems(located)
    problems.extend(found)
    checker = Checker(located, bad, source.parent)
    jobs = checker.run()
    problems.extend(checker.problems)
    problems.extend(price_problems(located, jobs, checker.is_bad))
    problems = _dedupe(problems)
    if any(p.severity == "error" for p in problems):
        return None, _sorted(problems, label)
    spec = _build(data, jobs, source)
    plan_problems, job_counts = _plan_problems(spec, located, jobs, checker.datasets)
    problems.extend(plan_problems)
    problems = _sorted(_dedupe(problems), label)
    if any(p.severity == "error" for p in problems):
        return None, problems
    if counts is not None:
        counts.update(job_counts)
    return spec, problems


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _sorted(problems: list[Problem], label: str) -> list[Problem]:
    return sorted(problems, key=lambda p: (p.file != label, p.file, p.line, p.col))


# ---- building the dataclasses ---------------------------------------------------------------

def _build(data: dict[str, Any], jobs: list[JobSource], source: Path) -> Spec:
    target_raw = data.get("target", "fal")
    if isinstance(target_raw, dict):
        target = Target("custom", target_raw["run_url"], target_raw["queue_url"])
    else:
        target = Target(target_raw)
    rate = data.get("rate_limit")
    return Spec(
        version=data["version"],
        name=data["name"],
        jobs=[_build_job(j.options, source.parent) for j in jobs],
        source=source,
        description=data.get("description"),
        target=target,
        output=Path(data["output"]) if "output" in data else None,
        concurrency=data.get("concurrency", 16),
        max_requests=(data.get("limits") or {}).get("max_requests", DEFAULT_MAX_REQUESTS),
        rate_limit=RateLimit(float(rate["per_second"])) if rate else None,
        gates=data.get("gates", {}),
        budget=data.get("budget", {}),
        pricing=data.get("pricing", {}),
    )


def _build_job(o: dict[str, Any], spec_dir: Path) -> Job:
    dataset = o.get("dataset")
    types: dict[str, str] = {}
    if isinstance(dataset, dict):  # {path, types}
        types = dict(dataset.get("types") or {})
        dataset = dataset["path"]
    if isinstance(dataset, str):
        dataset = Path(os.path.normpath(os.path.join(os.path.abspath(spec_dir), dataset)))
    rate = o.get("rate_limit")
    retries = o.get("retries") or {}
    return Job(
        name=o["name"],
        endpoint=o["endpoint"],
        path=o.get("path", ""),
        mode=o.get("mode", "subscribe"),
        arguments=o.get("arguments", {}),
        matrix=o.get("matrix", {}),
        include=o.get("include", []),
        exclude=o.get("exclude", []),
        dataset=dataset,
        dataset_types=types,
        repeat=o.get("repeat", 1),
        concurrency=o.get("concurrency"),
        timeout=_float(o.get("timeout")),
        start_timeout=_float(o.get("start_timeout")),
        client_timeout=_float(o.get("client_timeout")),
        hint=o.get("hint"),
        priority=o.get("priority"),
        headers=o.get("headers", {}),
        with_logs=o.get("with_logs", False),
        retries=RetryPolicy(
            max_attempts=retries.get("max_attempts", 10),
            initial_delay=float(retries.get("initial_delay", 0.1)),
            max_delay=float(retries.get("max_delay", 10.0)),
            server_errors=retries.get("server_errors", False),
            unknown_outcome=retries.get("unknown_outcome", False),
        ),
        rate_limit=RateLimit(float(rate["per_second"])) if rate else None,
        expect=o.get("expect", []),
        download=o.get("download", False),
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# ---- checks that need the expanded plan -----------------------------------------------------

def _plan_problems(spec: Spec, located: yamlsource.Located, jobs: list[JobSource],
                   datasets: dict[int, dataset.Report]) -> tuple[list[Problem], dict[str, int]]:
    """The plan's problems and its requests per job name (empty when it was too big to count)."""
    # include/exclude make counting walk the product; refuse absurd products before walking them.
    scan_cap = max(10 * spec.max_requests, 1_000_000)
    for job, source in zip(spec.jobs, jobs, strict=True):
        raw = math.prod(len(v) for v in job.matrix.values())
        if (job.include or job.exclude) and raw > scan_cap:
            return [located.problem(
                source.at("matrix"),
                f"the matrix of job '{job.name}' has {raw} combinations before exclude/include, far more than "
                f"limits.max_requests ({spec.max_requests})",
            )], {}
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
        message = f"the plan has {total} requests ({per_job}), more than limits.max_requests ({spec.max_requests}); {fix}"
        return [located.problem(where, message, at_key=where == ("jobs",))], counts
    problems: list[Problem] = []
    index = 0
    for job, source in zip(spec.jobs, jobs, strict=True):
        problems.extend(_job_plan_problems(spec, job, source, located, index, datasets.get(source.index)))
        index += counts[job.name]
    return problems, counts


def _job_plan_problems(spec: Spec, job: Job, source: JobSource, located: yamlsource.Located, start: int,
                       rows: dataset.Report | None) -> list[Problem]:
    """Duplicate ids within a job (ids include the job name, so jobs never collide with each other)
    and templated $file paths that name no file."""
    problems: list[Problem] = []
    check_files = "$file" in repr(job.arguments) and "${{" in repr(job.arguments)
    if not check_files and _distinct_by_construction(job, rows):
        return problems  # no walk needed: see _distinct_by_construction
    # A set of 64-bit ints (not ids, not a dict) keeps a 1M-request job near 70 MB; the rare
    # duplicate is then located by a second pass.
    seen: set[int] = set()
    duplicates = 0
    dup_key: int | None = None
    dup_index = 0
    missing_files: set[str] = set()
    for request in JobPlanner.create(job, spec).requests(start, None):
        key = int(request.id, 16)
        if key in seen:
            duplicates += 1
            if dup_key is None:
                dup_key, dup_index = key, request.index
        else:
            seen.add(key)
        if check_files:
            _missing_files(request.arguments, missing_files)
    seen.clear()
    if dup_key is not None:
        first = next(r for r in JobPlanner.create(job, spec).requests(start, None) if int(r.id, 16) == dup_key)
        more = f" ({duplicates} duplicates in all)" if duplicates > 1 else ""
        problems.append(
            located.problem(
                (*source.path, "name"),
                f"requests {first.index} and {dup_index} of job '{job.name}' are identical (id {first.id}){more}; "
                "each matrix combination and dataset row must change the arguments or path "
                "(use repeat: for deliberate repeats)",
            )
        )
    for missing in sorted(missing_files)[:5]:
        problems.append(
            located.problem(source.at("arguments"), f"file not found: {missing} (from a templated $file)", at_key=True)
        )
    return problems


def _distinct_by_construction(job: Job, rows: dataset.Report | None = None) -> bool:
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
