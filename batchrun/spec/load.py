"""Read a spec file through the spec stages: YAML -> JSON Schema -> semantic checks -> frozen Spec.

Every stage collects located problems instead of stopping at the first, so one `batchrun validate`
shows everything that is wrong. Raw dicts never leave this module. The checks that need the
expanded plan (size, duplicate ids) are the plan's (batchrun.plan.checks); batchrun.load puts the
two together.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from batchrun.errors import Problem
from batchrun.spec import dataset, yamlsource
from batchrun.spec.checks import Checker, JobSource
from batchrun.spec.model import MAX_ANSWER_BYTES, Job, RateLimit, RetryPolicy, Spec, Target
from batchrun.spec.pricing import price_problems
from batchrun.spec.schema import schema_problems

__all__ = ["DEFAULT_MAX_REQUESTS", "SpecRead", "dedupe", "read_spec", "sort_problems"]

DEFAULT_MAX_REQUESTS = 10_000


@dataclasses.dataclass(slots=True)
class SpecRead:
    """What the spec stages made of a file: the Spec (None after an error), every problem so far,
    and what the plan checks need to locate theirs (the located YAML, the jobs, checked datasets)."""

    spec: Spec | None
    problems: list[Problem]
    located: yamlsource.Located | None = None
    jobs: list[JobSource] = dataclasses.field(default_factory=list)
    datasets: dict[int, dataset.Report] = dataclasses.field(default_factory=dict)


def read_spec(path: str | Path) -> SpecRead:
    label = str(path)
    source = Path(path)
    text, problems = yamlsource.read_text(source, label)
    if text is None:
        return SpecRead(None, problems)
    located, problems = yamlsource.parse(text, label)
    if located is None:
        return SpecRead(None, problems)
    data = located.data
    if data is None:
        return SpecRead(
            None, [*problems, Problem(label, 1, 1, "$", "empty spec; expected a mapping with version, name and jobs")]
        )
    if not isinstance(data, dict):
        pos = located.value_pos(())
        kind = "a list" if isinstance(data, list) else "a single value"
        message = f"a spec must be a mapping with version, name and jobs, not {kind}"
        return SpecRead(None, [*problems, Problem(label, pos.line, pos.col, "$", message)])
    found, bad = schema_problems(located)
    problems.extend(found)
    checker = Checker(located, bad, source.parent)
    jobs = checker.run()
    problems.extend(checker.problems)
    problems.extend(price_problems(located, jobs, checker.is_bad))
    problems = dedupe(problems)
    if any(p.severity == "error" for p in problems):
        return SpecRead(None, sort_problems(problems, label))
    return SpecRead(_build(data, jobs, source), problems, located, jobs, checker.datasets)


def dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def sort_problems(problems: list[Problem], label: str) -> list[Problem]:
    """The spec file's own problems first (by position), then those located in other files."""
    return sorted(problems, key=lambda p: (p.file != label, p.file, p.line, p.col))


# ---- building the dataclasses ---------------------------------------------------------------


def _build(data: dict[str, Any], jobs: list[JobSource], source: Path) -> Spec:
    target_raw = data.get("target", "fal")
    if isinstance(target_raw, dict):
        bundle = target_raw.get("ca_bundle")
        if bundle is not None:  # relative to the spec, like datasets
            bundle = os.path.normpath(os.path.join(os.path.abspath(source.parent), bundle))
        target = Target("custom", target_raw["run_url"], target_raw["queue_url"], bundle)
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
        max_answer_bytes=o.get("max_answer_bytes", MAX_ANSWER_BYTES),
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
