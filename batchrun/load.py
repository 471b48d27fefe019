"""Load a spec: the spec stages (batchrun.spec.load), then the plan checks (batchrun.plan.checks).

Every command that reads a spec calls `load_spec` or `validate_spec`, so the CLI and the Python API
give the same problems in the same order.
"""

from __future__ import annotations

from pathlib import Path

from batchrun.errors import Problem, SpecError
from batchrun.plan.argcheck import argument_problems
from batchrun.plan.checks import plan_problems
from batchrun.spec.load import dedupe, read_spec, sort_problems
from batchrun.spec.model import Spec

__all__ = ["load_spec", "validate_spec"]


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


def validate_spec(path: str | Path, counts: dict[str, int] | None = None,
                  schemas: dict[str, list[str]] | None = None) -> tuple[Spec | None, list[Problem]]:
    """(spec or None, every problem: errors and warnings). The spec is None when there is an error.
    With a spec, `counts` (when given) receives the requests per job name, in job order, and
    `schemas` (when given) the jobs whose arguments were checked against a pinned input schema
    (`"checked"`) and those that were not (`"unchecked"`, their endpoint is not pinned)."""
    read = read_spec(path)
    if read.spec is None or read.located is None:
        return None, read.problems
    found, job_counts = plan_problems(read.spec, read.located, read.jobs, read.datasets)
    wrong, unchecked = argument_problems(read.spec, read.located, read.jobs, read.pinned)
    if schemas is not None:
        schemas["unchecked"] = [job.name for job in unchecked]
        skipped = {id(job) for job in unchecked}
        schemas["checked"] = [job.name for job in read.spec.jobs if id(job) not in skipped]
    problems = sort_problems(dedupe([*read.problems, *found, *wrong]), str(path))
    if any(p.severity == "error" for p in problems):
        return None, problems
    if counts is not None:
        counts.update(job_counts)
    return read.spec, problems
