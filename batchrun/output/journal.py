"""The submit journal, `<output>.journal.jsonl`: which queue requests were accepted remotely.

Every queue submit is appended and flushed *before* the run waits for its result, so a crash,
Ctrl-C or kill never loses a request that fal accepted (and bills). On the next run those
requests are re-attached (status and result fetched) instead of submitted again, and
`batchrun cancel OUT` can cancel them. Events, one JSON line each:

    {"event": "sending", "id", "job", "at"}      a queue submit is about to go out (write-ahead intent)
    {"event": "submitted", "id", "request_id", "job", "status_url", "response_url", "cancel_url", "at"}
    {"event": "done", "id", "request_id"}        its final record is in the output
    {"event": "cancelled", "id", "request_id"}   cancelled remotely; the id will be planned again
    {"event": "unknown", "id"}                   an intent settled as an outcome_unknown record
    {"event": "unsent", "id"}                    an intent withdrawn: stopped between attempts, nothing on the wire

A request is in flight when its newest "submitted" entry has no later "done" or "cancelled".
An intent is *open* when a "sending" entry has no later entry for its id: the process died while
the submit was on the wire, so fal may have accepted (and will bill) a request whose id we never
learnt. Submitting it again could pay twice, so the next run records it as outcome_unknown instead
(unless the job's retry policy opts in with `unknown_outcome`).
The journal holds no secrets: ids and the URLs the submit answered with, passed through the run's
redactor (`scrub`) like every record. A server whose request id or URLs carry the caller's key gets
them journaled redacted: such a request cannot be re-attached by a later run (batchrun.run.inflight
records it as an error instead of submitting it again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from batchrun.errors import SinkError
from batchrun.output.records import isoformat
from batchrun.output.resume import repair_tail
from batchrun.output.sink import describe, encode_record, write_line

__all__ = ["InFlight", "Journal", "journal_path", "read_in_flight", "read_journal"]


def journal_path(output: Path) -> Path:
    return output.with_name(output.name + ".journal.jsonl")


def _now() -> str:
    return isoformat(time.time())


@dataclasses.dataclass(frozen=True, slots=True)
class InFlight:
    """A journaled queue request without a final record."""

    id: str
    request_id: str
    job: str
    status_url: str
    response_url: str
    cancel_url: str
    at: str  # ISO 8601 UTC time of the submit answer

    def to_json(self) -> dict[str, Any]:
        return {"event": "submitted", **dataclasses.asdict(self)}


def _entries(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for line in f:
            try:
                entry = json.loads(line)
            except (ValueError, RecursionError):
                continue  # only a torn last line (or a damaged one) is invalid; repair_tail cuts the torn one
            if isinstance(entry, dict):
                yield entry


def read_in_flight(path: Path) -> dict[str, InFlight]:
    """Planned id -> the journaled request still in flight (a missing journal has none)."""
    return read_journal(path)[0]


def read_journal(path: Path) -> tuple[dict[str, InFlight], dict[str, str]]:
    """(planned id -> request in flight, planned id -> time of an open submit intent)."""
    if not path.exists():
        return {}, {}
    repair_tail(path, what="journal")
    open_: dict[str, InFlight] = {}
    intents: dict[str, str] = {}
    try:
        for entry in _entries(path):
            event, rid = entry.get("event"), entry.get("id")
            if not isinstance(rid, str):
                continue
            if event == "sending":
                intents[rid] = str(entry.get("at") or _now())
                continue
            intents.pop(rid, None)  # any later entry for the id settles its intent
            if event == "submitted":
                try:
                    open_[rid] = InFlight(
                        id=rid,
                        request_id=str(entry["request_id"]),
                        job=str(entry.get("job", "")),
                        status_url=str(entry["status_url"]),
                        response_url=str(entry["response_url"]),
                        cancel_url=str(entry["cancel_url"]),
                        at=str(entry.get("at") or _now()),
                    )
                except KeyError:
                    continue
            elif event in ("done", "cancelled"):
                current = open_.get(rid)
                if current is not None and entry.get("request_id") in (None, current.request_id):
                    del open_[rid]
    except OSError as exc:
        raise SinkError(f"cannot read the journal {path}: {exc.strerror or exc}", path=str(path)) from None
    return open_, intents


class Journal:
    """Append-only journal of queue submits for one output. Writes are flushed to the kernel at once.

    `in_flight` mirrors the file: loaded on open, added on submit, removed on done or cancel.
    `intents` are the open "sending" entries (planned id -> time), likewise.
    """

    def __init__(self, path: Path, *, scrub: Callable[[Any], Any] | None = None) -> None:
        self.path = path
        self._scrub = scrub  # the run's redactor: the file gets no secret, `in_flight` keeps the real handle
        self.in_flight: dict[str, InFlight] = {}
        self.intents: dict[str, str] = {}
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        self.in_flight, self.intents = read_journal(self.path)
        try:
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise SinkError(
                f"cannot open the journal {self.path}: {exc.strerror or exc}", path=str(self.path)
            ) from None

    def _append(self, entry: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("Cannot write to a journal that is not open.")
        line = encode_record(entry if self._scrub is None else self._scrub(entry))
        try:  # whole lines only: a cut line would swallow the entry appended after it
            write_line(self._file, line)
        except OSError as exc:
            raise SinkError(f"cannot write the journal {self.path}: {describe(exc)}", path=str(self.path)) from None

    def sending(self, id: str, job: str) -> None:
        """Write-ahead: a queue submit for `id` is about to go out."""
        at = _now()
        self._append({"event": "sending", "id": id, "job": job, "at": at})
        self.intents[id] = at

    def unknown(self, id: str) -> None:
        """The open intent of `id` became an outcome_unknown record."""
        self._append({"event": "unknown", "id": id})
        self.intents.pop(id, None)

    def unsent(self, id: str) -> None:
        """Withdraw the intent of `id`: the run stopped while no submit of it was on the wire."""
        if id in self.intents:
            self._append({"event": "unsent", "id": id})
            del self.intents[id]

    def submitted(self, *, id: str, job: str, request_id: str, status_url: str, response_url: str,
                  cancel_url: str) -> InFlight:
        entry = InFlight(id=id, request_id=request_id, job=job, status_url=status_url,
                         response_url=response_url, cancel_url=cancel_url, at=_now())
        self._append(entry.to_json())
        self.in_flight[id] = entry
        self.intents.pop(id, None)
        return entry

    def done(self, id: str, request_id: str | None) -> None:
        """The final record of `id` is in the output (settles its request or its intent)."""
        if self.in_flight.get(id, None) is None:
            if id in self.intents:  # the submit never got through (refused, or an input error)
                self._append({"event": "done", "id": id, "request_id": None})
                del self.intents[id]
            return  # otherwise not a queue request of ours (run mode, or already settled)
        self._append({"event": "done", "id": id, "request_id": request_id})
        del self.in_flight[id]

    def cancelled(self, id: str, request_id: str | None) -> None:
        self._append({"event": "cancelled", "id": id, "request_id": request_id})
        self.in_flight.pop(id, None)
        self.intents.pop(id, None)

    def close(self, *, keep: bool = False) -> None:
        """Close; a journal with nothing in flight and no open intent has no more use and is removed,
        unless `keep`: the output it settled requests into is gone (see batchrun.output.sink.JsonlSink)."""
        if self._file is None:
            return
        f, self._file = self._file, None
        f.close()
        if not keep and not self.in_flight and not self.intents:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
