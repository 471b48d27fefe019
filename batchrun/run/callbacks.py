"""The Python API's per-request callbacks, as the executor calls them (batchrun.api.run documents them).

fal-client's `subscribe(..., on_enqueue=, on_queue_update=)` is the model: `on_enqueue(request,
request_id)` once a queue submit is accepted (and journaled), `on_queue_update(request, status)`
with fal-client's status shapes (`Queued(position)`, `InProgress(logs)`, `Completed(logs,
metrics)`), and batchrun's own `on_record(record)` for every record, once it is written.

A callback is user code inside the run: one that raises is reported (the first few on stderr, all
in `Callbacks.errors`) and the run goes on. `on_record` is called after the record is written and
counted, so a raising callback can never lose a record. Only `Exception` is caught: a
KeyboardInterrupt or SystemExit from a callback propagates as it would anywhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from batchrun.plan.planner import PlannedRequest

__all__ = ["CallbackError", "Callbacks", "Completed", "InProgress", "Queued", "Status"]

SHOWN_CALLBACK_ERRORS = 3  # callback failures told on stderr one by one (all are in Callbacks.errors)


@dataclasses.dataclass(frozen=True, slots=True)
class Queued:
    """The request waits in the queue; `position` counts the requests ahead (None: not told)."""

    position: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class InProgress:
    """A runner works on the request; `logs`: its log lines so far (None without `with_logs`)."""

    logs: list[dict[str, Any]] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Completed:
    """The queue says the request is done (ok or not: the record says which)."""

    logs: list[dict[str, Any]] | None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


Status = Queued | InProgress | Completed


@dataclasses.dataclass(frozen=True, slots=True)
class CallbackError:
    """A callback raised: which one, on which request, and what (redacted, shortened)."""

    callback: str  # "on_enqueue" | "on_queue_update" | "on_record"
    request_id: str  # the planned request's id (the record's `id`)
    error: str


@dataclasses.dataclass(slots=True)
class Callbacks:
    on_enqueue: Callable[[PlannedRequest, str], object] | None = None
    on_queue_update: Callable[[PlannedRequest, Status], object] | None = None
    on_record: Callable[[dict[str, Any]], object] | None = None
    errors: list[CallbackError] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.on_enqueue, self.on_queue_update, self.on_record))

    def call(self, name: str, request_id: str, report: Callable[[str], None], scrub: Callable[[str], str],
             *args: Any) -> None:
        """Call the callback `name` (if set) with `args`; a raised Exception is reported, never raised."""
        fn = getattr(self, name)
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - user code must not stop the run (module docstring)
            what = scrub(f"{type(exc).__name__}: {exc}")[:300]
            self.errors.append(CallbackError(name, request_id, what))
            if len(self.errors) <= SHOWN_CALLBACK_ERRORS:
                report(f"batchrun: callback {name} raised on request {request_id}: {what}; the run goes on "
                       "(its record is written either way)")
