"""batchrun as a Python library: load and plan specs, run them, read their outputs as data.

    import batchrun.api as br

    spec = br.load("specs/quickstart.yaml")      # or YAML text, or a dict; raises br.SpecError
    spec.count(), [r.id for r in spec.plan(limit=2)], spec.estimate()
    result = br.run(spec, "outputs/q.jsonl", on_record=print)   # also inside a running event loop
    frame = br.read(result.output).to_pandas()    # newest record per id; needs batchrun-fal[pandas]

`run_async` is `run` for async code. docs/api.md walks through a notebook session. Heavy modules
(the HTTP client stack, pandas, pyarrow) load only when a call needs them.
"""

from __future__ import annotations

from batchrun.api.records import (
    EXPORT_FORMATS,
    FLAT_COLUMNS,
    MergeResult,
    MissingExtra,
    Record,
    Records,
    export,
    flatten,
    merge,
    read,
)
from batchrun.api.running import RunResult, run, run_async
from batchrun.api.specs import Estimate, LoadedSpec, SpecSource, load, validate
from batchrun.errors import BatchrunError, Problem, SinkError, SpecError, UsageError
from batchrun.output.reading import RecordsError
from batchrun.plan.planner import PlannedRequest
from batchrun.run.callbacks import CallbackError, Completed, InProgress, Queued, Status

__all__ = [
    "EXPORT_FORMATS", "FLAT_COLUMNS", "BatchrunError", "CallbackError", "Completed", "Estimate", "InProgress",
    "LoadedSpec", "MergeResult", "MissingExtra", "PlannedRequest", "Problem", "Queued", "Record", "Records",
    "RecordsError", "RunResult", "SinkError", "SpecError", "SpecSource", "Status", "UsageError", "export", "flatten",
    "load", "merge", "read", "run", "run_async", "validate",
]
