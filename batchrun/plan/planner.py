"""The planner: Spec -> a lazy stream of PlannedRequest with stable ids. Pure; no network.

Per job the expansion order is: matrix combination (the job's design, batchrun.plan.design: the
full product with GitHub Actions semantics or a covering design), then dataset row, then repeat.
Nothing is materialised: a million-request plan streams in bounded memory (see
bench/plan_memory.py); a sampled job keeps its n chosen requests (batchrun.plan.sampling).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson  # writes the same canonical bytes as json for plain values, about 8x faster

from batchrun.errors import UsageError
from batchrun.plan import design, sampling
from batchrun.plan.fileids import file_identity, has_file_objects
from batchrun.spec.dataset import RowSource
from batchrun.spec.model import Job, Mode, Sample, Spec
from batchrun.spec.template import (
    Compiled,
    Context,
    compile_value,
    interpolate,
    resolve_env,
)


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedRequest:
    id: str  # stable content hash of {job, endpoint, path, arguments, repeat}; `$file`s by path and content
    index: int  # position in the whole plan (0-based)
    job: Job
    arguments: dict[str, Any]  # matrix/row/repeat resolved; ${{ env.X }} left for send time
    matrix: dict[str, Any]
    row: int | None
    repeat: int
    # Per-request values of the job's templated options (None: the job's own value, untemplated).
    resolved_path: str | None = None
    resolved_hint: str | None = None
    resolved_headers: dict[str, str] | None = None  # ${{ env.X }} still unresolved, like arguments
    # The dataset row itself (`row` is its index): expectations render `${{ row.X }}` per request.
    row_values: dict[str, Any] | None = None

    @property
    def endpoint(self) -> str:
        return self.job.endpoint

    @property
    def path(self) -> str:
        return self.job.path if self.resolved_path is None else self.resolved_path

    @property
    def mode(self) -> Mode:
        return self.job.mode

    @property
    def hint(self) -> str | None:
        return self.job.hint if self.resolved_hint is None else self.resolved_hint

    @property
    def headers(self) -> dict[str, str]:
        return self.job.headers if self.resolved_headers is None else self.resolved_headers

    def to_json(self) -> dict[str, Any]:
        """The plan line as `batchrun plan` prints it (env templates stay unresolved)."""
        return {
            "id": self.id,
            "index": self.index,
            "job": self.job.name,
            "endpoint": self.endpoint,
            "path": self.path,
            "mode": self.mode,
            "arguments": self.arguments,
            "matrix": self.matrix,
            "row": self.row,
            "repeat": self.repeat,
        }


def _fast_constructor() -> Any:
    """PlannedRequest(...) with positional fields, about 2x faster than the frozen dataclass's
    __init__ (which goes through object.__setattr__ by name for each of its eleven fields). The
    object is the same: slots set directly by their descriptors, in field order."""
    setters = tuple(getattr(PlannedRequest, f.name).__set__ for f in dataclasses.fields(PlannedRequest))
    s_id, s_index, s_job, s_args, s_matrix, s_row, s_repeat, s_path, s_hint, s_headers, s_values = setters
    make = object.__new__

    def new(id: str, index: int, job: Job, arguments: dict[str, Any], matrix: dict[str, Any], row: int | None,
            repeat: int, resolved_path: str | None, resolved_hint: str | None,
            resolved_headers: dict[str, str] | None, row_values: dict[str, Any] | None) -> PlannedRequest:
        request: PlannedRequest = make(PlannedRequest)
        s_id(request, id)
        s_index(request, index)
        s_job(request, job)
        s_args(request, arguments)
        s_matrix(request, matrix)
        s_row(request, row)
        s_repeat(request, repeat)
        s_path(request, resolved_path)
        s_hint(request, resolved_hint)
        s_headers(request, resolved_headers)
        s_values(request, row_values)
        return request

    return new


_new_request = _fast_constructor()


def request_id(job: str, endpoint: str, path: str, arguments: Any, repeat: int) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace), first 16 hex digits."""
    canonical = json.dumps(
        {"job": job, "endpoint": endpoint, "path": path, "arguments": arguments, "repeat": repeat},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


_INT64 = 2**63


def _plain(value: Any) -> bool:
    """Values whose orjson encoding (OPT_SORT_KEYS) is byte-for-byte `request_id`'s json.dumps:
    str, bool, None, 64-bit ints, lists and str-keyed dicts of those. Floats are not (orjson
    writes 1e16 where json writes 1e+16), so a job that can render a float keeps the stdlib."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_INT64 <= value < _INT64
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def _fast_request_id(job: str, endpoint: str, path: str, arguments: Any, repeat: int) -> str:
    """`request_id` for arguments rendered only from plain values (see `_plain`); same id."""
    canonical = {"job": job, "endpoint": endpoint, "path": path, "arguments": arguments, "repeat": repeat}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# ---- shards ---------------------------------------------------------------------------------

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """"2/4" -> (2, 4): shard 2 of 4, 1-based. Raises UsageError."""
    m = _SHARD.match(text)
    if m is None:
        raise UsageError(f"--shard must look like I/N (e.g. 2/4), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {text}: I must be between 1 and N (N >= 1)")
    return i, n


def in_shard(request_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a request belongs to shard I/N. Depends on the id alone, so adding requests to a
    spec never moves existing ones between shards."""
    if shard is None:
        return True
    i, n = shard
    if n == 1:
        return True
    digest = hashlib.sha256(request_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n == i - 1


# ---- expansion ------------------------------------------------------------------------------

@dataclasses.dataclass(slots=True)
class JobPlanner:
    job: Job
    arguments: Compiled
    path: Compiled | None
    hint: Compiled | None
    headers: Compiled | None
    rows: RowSource | None
    end: int = 0  # the index after this job's last request, set once `requests` is exhausted
    plain_ids: bool = False  # every rendered argument is plain (no dataset, no floats): orjson ids
    file_base: str | None = None  # the spec's folder when the arguments have `$file` objects (see fileids)

    @classmethod
    def create(cls, job: Job, spec: Spec) -> JobPlanner:
        base = os.path.abspath(spec.base_dir)

        def templated(value: Any) -> Compiled | None:
            return compile_value(value)[0] if "${{" in json.dumps(value) else None

        return cls(
            job=job,
            arguments=compile_value(job.arguments, file_base=base)[0],
            path=templated(job.path),
            hint=templated(job.hint) if job.hint is not None else None,
            headers=templated(job.headers) if job.headers else None,
            rows=RowSource(job.dataset, job.dataset_types) if job.dataset is not None else None,
            # Arguments render from the literals, matrix (and include) values and the repeat index.
            plain_ids=job.dataset is None and _plain(job.arguments)
            and type(job.matrix) is dict and _plain(job.matrix)
            and type(job.include) is list and _plain(job.include) and type(job.name) is str
            and type(job.endpoint) is str and _plain(job.path),
            file_base=base if has_file_objects(job.arguments) else None,
        )

    def combos(self) -> Iterator[dict[str, Any]]:
        return design.combos(self.job)

    def requests(self, start: int, shard: tuple[int, int] | None,
                 only: _Wanted | None = None) -> Iterator[PlannedRequest]:
        """This job's requests from plan index `start`. With `only`, just the requests at its plan
        indices; the others are stepped over without being rendered (a whole combination at once)."""
        sample = self.job.sample
        if sample is None:
            yield from self._walk(start, shard, only)
            return
        # A sample is chosen from every request of the job (their ids decide), then numbered from
        # `start` like any job's requests: shard and `only` apply to those numbers.
        chosen = sampling.choose(self._walk(0, None, None), sample.n, sample.seed)
        for index, request in enumerate(chosen, start):
            if only is not None:
                if index != only.next:
                    continue
                only.advance()
            if shard is None or in_shard(request.id, shard):
                yield dataclasses.replace(request, index=index)
        self.end = start + len(chosen)

    def _walk(self, start: int, shard: tuple[int, int] | None, only: _Wanted | None) -> Iterator[PlannedRequest]:
        # The hot loop of every plan walk (plan, validate, each resume): names are bound to locals
        # and per-job decisions hoisted out of it.
        job = self.job
        index = start
        no_rows: list[tuple[None, None]] = [(None, None)]
        make_id = _fast_request_id if self.plain_ids else request_id
        render = self.arguments.render
        path_t, hint_t, headers_t = self.path, self.hint, self.headers
        name, endpoint, job_path = job.name, job.endpoint, job.path
        repeats = range(job.repeat)
        check_shard = shard is not None and shard[1] != 1
        new = _new_request
        file_base = self.file_base
        per_combo = 0 if only is None else job.repeat * (1 if self.rows is None else self.rows.count())
        for combo in self.combos():
            if only is not None:
                wanted = only.next
                if wanted is None:
                    break  # nothing more wanted (build_plan stops too, so `end` is not needed)
                if wanted >= index + per_combo:
                    index += per_combo
                    continue
            for row_index, row in no_rows if self.rows is None else enumerate(self.rows):
                # With `only`, just the wanted repeats of this row: a huge `repeat` is stepped over
                # at once, not one index at a time (minutes for --limit 2 of a 10^11 repeat).
                for repeat in repeats if only is None else only.within(index, job.repeat):
                    ctx = Context(combo, row, repeat)
                    arguments = render(ctx)
                    path = job_path if path_t is None else _text(path_t.render(ctx))
                    rid = make_id(name, endpoint, path,
                                  arguments if file_base is None else file_identity(arguments, file_base), repeat)
                    if not check_shard or in_shard(rid, shard):
                        yield new(
                            rid, index + repeat, job, arguments, combo, row_index, repeat,
                            None if path_t is None else path,
                            None if hint_t is None else _text(hint_t.render(ctx)),
                            None if headers_t is None
                            else {k: _header_text(v) for k, v in headers_t.render(ctx).items()},
                            row,
                        )
                index += job.repeat
        self.end = index


class _Wanted:
    """A cursor over ascending plan indices, shared by the jobs of one walk."""

    __slots__ = ("_it", "next")

    def __init__(self, indices: Iterable[int]) -> None:
        self._it = iter(indices)
        self.next: int | None = None
        self.advance()

    def advance(self) -> None:
        self.next = next(self._it, None)

    def within(self, base: int, count: int) -> Iterator[int]:
        """The wanted indices in [base, base + count), as offsets from `base`, consuming them."""
        while self.next is not None and self.next < base + count:
            offset = self.next - base
            self.advance()
            if offset >= 0:  # indices are ascending: one below `base` was stepped over already
                yield offset


def _text(value: Any) -> str:
    """path and hint are final strings: no env is allowed in them, so only escapes remain to undo."""
    return resolve_env(interpolate(value), {})


def _header_text(value: Any) -> str:
    """Header values stay plan text (env resolved at send time) but are always strings."""
    return interpolate(value)


def build_plan(spec: Spec, *, shard: tuple[int, int] | None = None,
               only: Iterable[int] | None = None) -> Iterator[PlannedRequest]:
    """Every planned request of `spec`, lazily, in plan order. With `shard` (I, N), only the
    requests of shard I; `index` stays the position in the whole plan.

    `only`: ascending plan indices (of requests in the shard, as an earlier walk yielded them);
    just those requests are yielded, and the rest of the plan is stepped over without rendering
    or hashing, so a resume that has already counted what is left walks the plan cheaply."""
    wanted = None if only is None else _Wanted(only)
    index = 0
    for job in spec.jobs:
        if wanted is not None and wanted.next is None:
            return  # nothing more wanted: the remaining jobs need no walk at all
        planner = JobPlanner.create(job, spec)
        yield from planner.requests(index, shard, wanted)
        index = planner.end


def job_count(job: Job, rows: int | None = None) -> int:
    """The job's request count. `rows`: its dataset's row count when already known (validation
    counts them while checking the file), which spares reading the dataset again."""
    combos = design.count(job)
    if rows is None:
        rows = 1 if job.dataset is None else RowSource(job.dataset, job.dataset_types).count()
    total = combos * rows * job.repeat
    return total if job.sample is None else min(total, job.sample.n)


def with_sample(spec: Spec, counts: dict[str, int], n: int | None, seed: int | None) -> Spec:
    """`--sample N --seed S` (None: not given): every job sampled so, instead of by its own
    `sample:`; `counts` (requests per job name, validation's) becomes the sampled plan's."""
    if n is None:
        if seed is not None:
            raise UsageError("--seed S goes with --sample N (it is the sample's seed)")
        return spec
    seed = 0 if seed is None else seed
    jobs = []
    for job in spec.jobs:
        full = counts[job.name] if job.sample is None else job_count(dataclasses.replace(job, sample=None))
        jobs.append(dataclasses.replace(job, sample=Sample(n, seed)))
        counts[job.name] = min(full, n)
    return dataclasses.replace(spec, jobs=jobs)


def count_plan(spec: Spec) -> dict[str, int]:
    """Requests per job name, in job order, without expanding the plan."""
    return {job.name: job_count(job) for job in spec.jobs}
