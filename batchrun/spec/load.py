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
from batchrun.spec import constraints, dataset, endpoints, expect, yamlsource
from batchrun.spec.checks import Checker, JobSource
from batchrun.spec.dataset import file_rows
from batchrun.spec.model import (
    MAX_ANSWER_BYTES,
    CachePolicy,
    Job,
    MediaLifetime,
    RateLimit,
    RetryPolicy,
    Sample,
    Spec,
    Target,
    duration_seconds,
)
from batchrun.spec.pricing import price_problems
from batchrun.spec.schema import schema_problems

__all__ = [
    "DEFAULT_MAX_REQUESTS", "SpecRead", "dedupe", "read_spec", "read_spec_data", "read_spec_text", "sort_problems",
]

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
    # The pinned endpoint files of the spec's endpoints (batchrun.spec.endpoints), by endpoint id.
    pinned: dict[str, endpoints.Pinned] = dataclasses.field(default_factory=dict)


def read_spec(path: str | Path) -> SpecRead:
    label = str(path)
    source = Path(path)
    text, problems = yamlsource.read_text(source, label)
    if text is None:
        return SpecRead(None, problems)
    return read_spec_text(text, label, source, problems)


def read_spec_text(text: str, label: str, source: Path, problems: list[Problem] | None = None) -> SpecRead:
    """A spec given as YAML text (a file's, or a string from Python). `label` names it in problems;
    `source.parent` is the folder its relative paths (datasets, `!file`) start from."""
    located, parsed = yamlsource.parse(text, label)
    problems = [*(problems or []), *parsed]
    if located is None:
        return SpecRead(None, problems)
    return _read_located(located, problems, label, source)


def read_spec_data(data: Any, label: str, source: Path) -> SpecRead:
    """A spec given as Python data (a dict built in code): the checks of a file, on a copy made
    JSON-shaped first (tuples become lists, paths strings). Nothing has a line or column here, so
    its problems are located by `$.path` alone (batchrun.load marks them so)."""
    located = yamlsource.Located(label, None)
    problems: list[Problem] = []
    located.data = _plain_data(data, (), located, problems)
    return _read_located(located, problems, label, source)


def _plain_data(value: Any, path: yamlsource.PathKey, located: yamlsource.Located, problems: list[Problem]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                message = f"mapping keys must be strings, not {type(key).__name__} {key!r}"
                problems.append(located.problem(path, message))
                continue
            out[key] = _plain_data(item, (*path, key), located, problems)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain_data(item, (*path, i), located, problems) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    problems.append(located.problem(path, f"unsupported value of type {type(value).__name__}; a spec holds "
                                          "JSON-shaped data (dicts, lists, strings, numbers, booleans, None)"))
    return None


def _read_located(located: yamlsource.Located, problems: list[Problem], label: str, source: Path) -> SpecRead:
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
    ids = [e for j in jobs if isinstance(e := j.options.get("endpoint"), str)]
    pinned, pin_problems = endpoints.read_pinned(endpoints.pinned_dir(source, data.get("pinned_dir")), ids)
    problems.extend(pin_problems)
    pinned_prices = {e: price for e, p in pinned.items() if (price := endpoints.pinned_price(p)) is not None}
    problems.extend(price_problems(located, jobs, checker.is_bad, pinned_prices))
    outputs = _pinned_outputs(jobs, pinned)
    problems.extend(_pinned_schema_problems(located, jobs, pinned, outputs, checker.is_bad))
    problems = dedupe(problems)
    if any(p.severity == "error" for p in problems):
        return SpecRead(None, sort_problems(problems, label))
    spec = _build(data, jobs, source, pinned_prices, outputs)
    return SpecRead(spec, problems, located, jobs, checker.datasets, pinned)


def dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def sort_problems(problems: list[Problem], label: str) -> list[Problem]:
    """The spec file's own problems first (by position), then those located in other files."""
    return sorted(problems, key=lambda p: (p.file != label, p.file, p.line, p.col))


# ---- building the dataclasses ---------------------------------------------------------------


def _build(data: dict[str, Any], jobs: list[JobSource], source: Path, pinned_prices: dict[str, Any],
           outputs: dict[str, dict[str, Any] | None]) -> Spec:  # fmt: skip
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
        jobs=[_build_job(j.options, source.parent, data.get("cache", False), outputs) for j in jobs],
        source=source,
        description=data.get("description"),
        target=target,
        output=Path(data["output"]) if "output" in data else None,
        concurrency=data.get("concurrency", 16),
        max_requests=(data.get("limits") or {}).get("max_requests", DEFAULT_MAX_REQUESTS),
        rate_limit=RateLimit(float(rate["per_second"])) if rate else None,
        gates=data.get("gates", {}),
        budget=data.get("budget", {}),
        # A pinned price fills in for an endpoint the spec does not price; the spec's own wins.
        pricing={**pinned_prices, **data.get("pricing", {})} if pinned_prices else data.get("pricing", {}),
    )


def _build_job(o: dict[str, Any], spec_dir: Path, spec_cache: Any,
               outputs: dict[str, dict[str, Any] | None]) -> Job:  # fmt: skip
    dataset = o.get("dataset")
    types: dict[str, str] = {}
    if isinstance(dataset, dict) and "files" in dataset:  # {files: GLOB}: the rows are the files, now
        dataset = file_rows(spec_dir, dataset["files"])
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
        strategy=_strategy(o.get("strategy", "full")),
        constraints=constraints.build(o.get("constraints", [])),
        sample=Sample(o["sample"]["n"], o["sample"].get("seed", 0)) if "sample" in o else None,
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
        upload=o.get("upload"),
        fallbacks=o.get("fallbacks"),
        media_lifetime=MediaLifetime.of(o.get("media_lifetime")),
        retries=RetryPolicy(
            max_attempts=retries.get("max_attempts", 10),
            initial_delay=float(retries.get("initial_delay", 0.1)),
            max_delay=float(retries.get("max_delay", 10.0)),
            server_errors=retries.get("server_errors", False),
            unknown_outcome=retries.get("unknown_outcome", False),
        ),
        rate_limit=RateLimit(float(rate["per_second"])) if rate else None,
        expect=o.get("expect", []),
        pinned_output=outputs.get(o["endpoint"]) if _expects_pinned(o) else None,
        download=o.get("download", False),
        cache=_cache(o.get("cache", spec_cache)),
    )




def _cache(value: Any) -> CachePolicy | None:
    """`cache:` (validated by the schema): false -> None, true -> the defaults, {ttl, scope}."""
    if value is False or value is None:
        return None
    if value is True:
        return CachePolicy()
    ttl = duration_seconds(value.get("ttl"))
    return CachePolicy(ttl_s=None if ttl is None else float(ttl), scope=value.get("scope", "project"))


def _expects_pinned(options: dict[str, Any]) -> bool:
    checks = options.get("expect")
    return isinstance(checks, list) and any(expect.is_pinned_schema(check) for check in checks)


def _pinned_outputs(jobs: list[JobSource], pinned: dict[str, endpoints.Pinned]) -> dict[str, dict[str, Any] | None]:
    """The pinned output schema, as JSON Schema, of each pinned endpoint a `{schema: pinned}` check
    uses (None: its document has none): converted once per endpoint, however many jobs use it."""
    used = {e for j in jobs if _expects_pinned(j.options) and isinstance(e := j.options.get("endpoint"), str)}
    return {e: pinned[e].output_json_schema() for e in used if e in pinned}


def _pinned_schema_problems(located: yamlsource.Located, jobs: list[JobSource], pinned: dict[str, endpoints.Pinned],
                            outputs: dict[str, dict[str, Any] | None], is_bad: Any) -> list[Problem]:  # fmt: skip
    """`{schema: pinned}` needs the job's endpoint pinned, with an output schema in its document."""
    problems = []
    for job in jobs:
        checks = job.options.get("expect")
        endpoint = job.options.get("endpoint")
        if not isinstance(checks, list) or not isinstance(endpoint, str):
            continue
        for i, check in enumerate(checks):
            where = (*job.at("expect"), i, "schema")
            if not expect.is_pinned_schema(check) or is_bad(where):
                continue
            found = pinned.get(endpoint)
            if found is None:
                message = (f"no pinned endpoint file for {endpoint} (job '{job.name}'): pin it with "
                           f"`batchrun endpoints pull {endpoint}`")
            elif outputs.get(endpoint) is None:
                message = f"the pinned document of {endpoint} ({found.file}) has no output schema to check against"
            else:
                continue
            problems.append(located.problem(where, message))
    return problems


def _strategy(value: Any) -> int | None:
    """`full` -> None, `pairwise` -> 2, `{tway: T}` -> T."""
    if value == "full":
        return None
    if value == "pairwise":
        return 2
    return int(value["tway"])


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
