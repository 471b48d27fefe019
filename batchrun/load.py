"""Load a spec: the spec stages (batchrun.spec.load), then the plan checks (batchrun.plan.checks).

Every command that reads a spec calls `load_spec` or `validate_spec`, and the Python API
(batchrun.api) `load_read`/`check_read` on the same stages, so the CLI and the API give the same
problems in the same order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from batchrun.errors import Problem, SpecError
from batchrun.plan.argcheck import argument_problems
from batchrun.plan.checks import plan_problems
from batchrun.spec.load import SpecRead, dedupe, read_spec, sort_problems
from batchrun.spec.model import Spec

__all__ = ["check_read", "load_read", "load_spec", "validate_spec"]


def load_spec(path: str | Path, warnings: list[Problem] | None = None, counts: dict[str, int] | None = None) -> Spec:
    """Load and fully validate a spec. Raises SpecError with every error; warnings go to `warnings`,
    and the plan's requests per job name (in job order) to `counts`: validation counted them, so a
    command that shows them need not count again (which reads every dataset file once more)."""
    return load_read(read_spec(path), str(path), warnings, counts)


def validate_spec(path: str | Path, counts: dict[str, int] | None = None,
                  schemas: dict[str, list[str]] | None = None) -> tuple[Spec | None, list[Problem]]:
    """(spec or None, every problem: errors and warnings). The spec is None when there is an error.
    With a spec, `counts` (when given) receives the requests per job name, in job order, and
    `schemas` (when given) which jobs were checked against a pinned input schema (see check_read)."""
    return check_read(read_spec(path), str(path), counts, schemas=schemas)


def load_read(read: SpecRead, label: str, warnings: list[Problem] | None = None,
              counts: dict[str, int] | None = None, *, unlocated: bool = False) -> Spec:
    """`load_spec` for what the spec stages read from a file, a YAML string or a dict."""
    spec, problems = check_read(read, label, counts, unlocated=unlocated)
    errors = [p for p in problems if p.severity == "error"]
    if warnings is not None:
        warnings.extend(p for p in problems if p.severity != "error")
    if errors or spec is None:
        raise SpecError(errors)
    return spec


def check_read(read: SpecRead, label: str, counts: dict[str, int] | None = None, *,
               unlocated: bool = False,
               schemas: dict[str, list[str]] | None = None) -> tuple[Spec | None, list[Problem]]:
    """`validate_spec` for a SpecRead. `unlocated`: the spec was a dict, so its own problems have no
    line and column (they say line 0, which prints as `<dict>: $.path: message`). `schemas` (when
    given) receives the jobs whose arguments were checked against a pinned input schema
    (`"checked"`) and those that were not (`"unchecked"`, their endpoint is not pinned)."""
    spec, problems = _check(read, label, counts, schemas)
    if unlocated:
        problems = [dataclasses.replace(p, line=0, col=0) if p.file == label else p for p in problems]
    return spec, problems


def _check(read: SpecRead, label: str, counts: dict[str, int] | None,
           schemas: dict[str, list[str]] | None) -> tuple[Spec | None, list[Problem]]:
    if read.spec is None or read.located is None:
        return None, read.problems
    found, job_counts = plan_problems(read.spec, read.located, read.jobs, read.datasets)
    # Arguments against the pinned input schemas (endpoints/<id>.json beside the spec), for the CLI
    # and the Python API alike.
    wrong, unchecked = argument_problems(read.spec, read.located, read.jobs, read.pinned)
    if schemas is not None:
        schemas["unchecked"] = [job.name for job in unchecked]
        skipped = {id(job) for job in unchecked}
        schemas["checked"] = [job.name for job in read.spec.jobs if id(job) not in skipped]
    problems = sort_problems(dedupe([*read.problems, *found, *wrong]), label)
    if any(p.severity == "error" for p in problems):
        return None, problems
    if counts is not None:
        counts.update(job_counts)
    return read.spec, problems
