"""Loading specs from Python: a path, a YAML string or a dict, with the CLI's checks and errors.

`load` runs the same stages as `batchrun validate` (batchrun.load): every problem at once, raised
as one `SpecError` whose `.problems` are located (`FILE:LINE:COL: $.path: message` for text,
`<dict>: $.path: message` for a dict). The `LoadedSpec` it returns plans lazily with the ids
`batchrun plan` prints, counts and estimates, and is what `run` takes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from batchrun.errors import Problem, SpecError
from batchrun.load import check_read, load_read
from batchrun.plan.estimate import estimate as _estimate
from batchrun.plan.planner import PlannedRequest, build_plan, parse_shard, with_sample
from batchrun.plan.sampling import check_sample
from batchrun.plan.selection import select
from batchrun.spec.load import SpecRead, read_spec, read_spec_data, read_spec_text
from batchrun.spec.model import Spec

__all__ = ["Estimate", "LoadedSpec", "SpecSource", "load", "validate"]

SpecSource = str | os.PathLike[str] | Mapping[str, Any]
"""A spec: a path (`str` without a newline, or `os.PathLike`), YAML text (a `str` holding a
newline), or a dict (a programmatic spec)."""

STRING_LABEL = "<string>"
DICT_LABEL = "<dict>"


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """Requests and estimated cost (USD; None: some price is unknown) per job and in total."""

    requests: int
    cost_usd: float | None
    jobs: dict[str, tuple[int, float | None]]  # job name -> (requests, cost), in job order


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedSpec:
    """A validated spec, ready to plan or run. Made by `load`; frozen."""

    spec: Spec  # the validated model (batchrun.spec.model)
    label: str  # what messages call it: the path, `<string>` or `<dict>`
    warnings: tuple[Problem, ...]  # problems that do not stop it (an unset ${{ env.X }}: `run` refuses it)
    job_counts: Mapping[str, int]  # the whole plan's requests per job name, in job order

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def jobs(self) -> list[str]:
        return [job.name for job in self.spec.jobs]

    def plan(self, *, shard: str | tuple[int, int] | None = None, only: str | Iterable[str] | None = None,
             limit: int | None = None, sample: int | None = None, seed: int | None = None
             ) -> Iterator[PlannedRequest]:
        """The planned requests, lazily and in plan order: exactly `batchrun plan SPEC [--shard I/N]
        [--only JOB,...] [--limit N] [--sample N [--seed S]]` (the same ids, indices and arguments;
        `${{ env.X }}` stays unresolved). Nothing is rendered before it is asked for, except that a
        sample walks each job once to rank its ids.

        Raises:
            UsageError: a malformed shard, an unknown job name in `only`, a sample or seed that is
                not a whole number (sample >= 1, seed >= 0), or a seed without a sample.
        """
        shard_t = _shard(shard)
        spec, counts = self._sampled(sample, seed)
        selection = select(spec, counts, _only(only), limit)
        return build_plan(spec, shard=shard_t, only=None if selection is None else selection.indices())

    def count(self, *, shard: str | tuple[int, int] | None = None, only: str | Iterable[str] | None = None,
              limit: int | None = None, sample: int | None = None, seed: int | None = None) -> int:
        """How many requests `plan(...)` yields with the same arguments (without a shard, from
        validation's counts: no dataset is read again)."""
        shard_t = _shard(shard)
        spec, counts = self._sampled(sample, seed)
        selection = select(spec, counts, _only(only), limit)
        if shard_t is None:
            return sum(counts.values()) if selection is None else selection.total
        return sum(1 for _ in self.plan(shard=shard_t, only=only, limit=limit, sample=sample, seed=seed))

    def estimate(self, *, shard: str | tuple[int, int] | None = None, sample: int | None = None,
                 seed: int | None = None) -> Estimate:
        """Requests and estimated cost per job, as `batchrun plan --count [--sample N]` prints them."""
        spec, counts = self._sampled(sample, seed)
        per_job = _estimate(spec, counts, _shard(shard))
        jobs = {name: (e.requests, e.cost) for name, e in per_job.items()}
        total: float | None = 0.0
        for _, cost in jobs.values():
            total = None if cost is None or total is None else total + cost
        return Estimate(sum(n for n, _ in jobs.values()), total if spec.pricing else None, jobs)

    def _sampled(self, sample: int | None, seed: int | None) -> tuple[Spec, dict[str, int]]:
        """The spec and per-job counts as `--sample N --seed S` makes them (unchanged without)."""
        counts = dict(self.job_counts)
        if sample is None and seed is None:
            return self.spec, counts
        check_sample(sample, seed)
        return with_sample(self.spec, counts, sample, seed), counts

    def __len__(self) -> int:
        return sum(self.job_counts.values())


def load(source: SpecSource | LoadedSpec, *, base_dir: str | os.PathLike[str] | None = None) -> LoadedSpec:
    """Load and validate a spec, with every check of `batchrun validate`.

    Args:
        source: a path to a YAML file; YAML text (any `str` holding a newline); or a dict, as
            parsed from YAML (`{"$file": path}` stands for `!file path`). A LoadedSpec is returned as is.
        base_dir: the folder relative paths (datasets, `!file`) start from for YAML text and dicts
            (default: the working directory); a file's own folder otherwise.

    Returns:
        The validated spec; its `warnings` hold the problems that do not stop it.

    Raises:
        SpecError: the spec is invalid; `.problems` holds every error, located.
    """
    if isinstance(source, LoadedSpec):
        return source
    read, label, unlocated = _read(source, base_dir)
    warnings: list[Problem] = []
    counts: dict[str, int] = {}
    spec = load_read(read, label, warnings, counts, unlocated=unlocated)
    return LoadedSpec(spec, label, tuple(warnings), counts)


def validate(source: SpecSource, *, base_dir: str | os.PathLike[str] | None = None) -> list[Problem]:
    """Every problem of a spec, errors and warnings (`Problem.severity`), as `batchrun validate`
    prints them; an empty list for a clean spec. Never raises for an invalid spec."""
    read, label, unlocated = _read(source, base_dir)
    return check_read(read, label, unlocated=unlocated)[1]


def _read(source: SpecSource, base_dir: str | os.PathLike[str] | None) -> tuple[SpecRead, str, bool]:
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if isinstance(source, Mapping):
        return read_spec_data(dict(source), DICT_LABEL, base / DICT_LABEL), DICT_LABEL, True
    if isinstance(source, str) and "\n" in source:
        return read_spec_text(source, STRING_LABEL, base / STRING_LABEL), STRING_LABEL, False
    if isinstance(source, (str, os.PathLike)):
        return read_spec(os.fspath(source)), os.fspath(source), False
    message = f"expected a path, YAML text or a dict, not {type(source).__name__}"
    raise SpecError([Problem("<spec>", 0, 0, "$", message)])


def _shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    if isinstance(shard, str):
        return parse_shard(shard)
    return parse_shard(f"{shard[0]}/{shard[1]}")


def _only(only: str | Iterable[str] | None) -> str | None:
    return only if only is None or isinstance(only, str) else ",".join(only)
