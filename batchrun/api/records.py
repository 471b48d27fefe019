"""Reading outputs from Python: records newest per id, as dicts, typed records, pandas or Arrow.

An output holds superseded records (a `--retry-errors` resume, `batchrun check --write`): `read`
keeps the newest record of each id by default, with the rule `report` and `diff` use
(batchrun.output.reading.Newest: the latest `timing.finished_at`; on a tie, the later line), over
one output or several (shards, or runs of one spec), and yields them in plan order. It streams:
the first pass keeps a small choice per id, the second re-reads the chosen lines by offset.

`to_pandas()` / `to_arrow()` flatten what a user filters on into columns (`FLAT_COLUMNS`, then
`matrix.<key>`, `row.<column>` when the spec is given, `arguments.<name>`); pandas and pyarrow
are optional extras (`pip install 'batchrun-fal[pandas]'`, `'batchrun-fal[arrow]'`), imported only here.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from batchrun.errors import BatchrunError, UsageError
from batchrun.output.merge import MergeResult, Planned, merge_outputs
from batchrun.output.reading import (
    Newest,
    check_passed,
    expectation_checks,
    finished_at,
    iter_located,
    open_output,
    parse_time,
    record_at,
    seekable,
)

__all__ = [
    "EXPORT_FORMATS", "FLAT_COLUMNS", "MergeResult", "MissingExtra", "Record", "Records", "export", "flatten", "merge",
    "read",
]

EXPORT_FORMATS = ("parquet", "csv", "jsonl")

# The fixed columns of a flattened record, in order; matrix.*, row.* and arguments.* follow.
FLAT_COLUMNS = (
    "id", "index", "job", "endpoint", "path", "mode", "status", "repeat", "row", "error_type",
    "error_status_code", "error_detail", "request_id", "attempts", "latency_s", "queue_s", "started_at",
    "finished_at", "served_from", "rerouted_to", "cost_usd", "expectations_failed", "artifact_paths", "result",
    "output_file",
)


class MissingExtra(BatchrunError):
    """An optional library (pandas, pyarrow) a call needs is not installed."""

    exit_code = 2


def _missing(library: str, extra: str) -> MissingExtra:
    return MissingExtra(f"this needs {library}, which is not installed: pip install 'batchrun-fal[{extra}]'")


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise _missing("pandas", "pandas") from None
    return pandas


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise _missing("pyarrow", "arrow") from None
    return pyarrow


def _parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise _missing("pyarrow", "arrow") from None
    return pyarrow.parquet


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One output record, typed (the fields of schemas/record.schema.json); `extra` holds the
    optional fields (expectations, artifacts, cost_usd, inputs, ...)."""

    id: str
    index: int
    job: str
    endpoint: str
    path: str
    mode: str
    arguments: dict[str, Any]
    matrix: dict[str, Any]
    row: int | None
    repeat: int
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    request_id: str | None
    attempts: int
    logs: list[dict[str, Any]] | None
    metrics: dict[str, Any] | None
    timing: dict[str, Any]
    served_from: str | None
    rerouted_to: str | None = None  # the endpoint that served it when fal rerouted it (a fallback)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def latency_s(self) -> float | None:
        value = self.timing.get("latency_s")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def error_type(self) -> str | None:
        return self.error.get("type") if isinstance(self.error, dict) else None

    @property
    def finished_at(self) -> datetime | None:
        return parse_time(self.timing.get("finished_at"))

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        get: Any = record.get  # the reader checked id, index, job and status; the rest is the writer's schema
        return cls(
            id=get("id"), index=get("index"), job=get("job"), endpoint=get("endpoint"), path=get("path", ""),
            mode=get("mode"), arguments=dict(get("arguments") or {}), matrix=dict(get("matrix") or {}),
            row=get("row"), repeat=get("repeat"), status=get("status"), result=get("result"), error=get("error"),
            request_id=get("request_id"), attempts=get("attempts"), logs=get("logs"), metrics=get("metrics"),
            timing=dict(get("timing") or {}), served_from=get("served_from"), rerouted_to=get("rerouted_to"),
            extra={k: v for k, v in record.items() if k not in names},
        )


def read(*outputs: str | os.PathLike[str], all_records: bool = False, spec: Any = None) -> Records:
    """The records of one or more outputs (JSONL files written by `run`/`batchrun run`, shards,
    merged files).

    Args:
        outputs: the output files; several are read as one (the newest record of an id wins
            across them).
        all_records: every record in file order, superseded ones included.
        spec: a LoadedSpec (or anything `load` takes): adds `row.<column>` columns with each
            dataset request's row values to `to_pandas()`/`to_arrow()` (records keep only the
            row's number).

    Raises (when iterated):
        RecordsError: a file is missing, unreadable or has a damaged line (a truncated last line
            is skipped with a warning, as a run killed mid-write leaves it).
    """
    if not outputs:
        raise UsageError("read: give at least one output file")
    return Records([Path(o) for o in outputs], all_records=all_records, spec=spec)


class Records:
    """Iterable of record dicts (plan order, newest per id by default); made by `read`."""

    def __init__(self, paths: list[Path], *, all_records: bool = False, spec: Any = None) -> None:
        self.paths = paths
        self.all_records = all_records
        self._spec = spec

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, _, record in self._chosen():
            yield record

    def typed(self) -> Iterator[Record]:
        """The same records as `Record` objects."""
        for record in self:
            yield Record.from_dict(record)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self)

    def lines(self) -> Iterator[bytes]:
        """The same records as their lines, byte for byte (newline included)."""
        for _, line, _ in self._chosen():
            yield line

    def flat(self) -> Iterator[dict[str, Any]]:
        """The records flattened (see `flatten`), with `output_file` the file each came from."""
        rows = self._row_values()
        for i, _, record in self._chosen():
            flat = flatten(record, None if rows is None else rows.get(record["id"]))
            flat["output_file"] = str(self.paths[i])
            yield flat

    def to_pandas(self) -> Any:
        """A pandas DataFrame of the flattened records (needs `batchrun-fal[pandas]`)."""
        pd = _pandas()
        rows = list(self.flat())
        # Column by column as objects, then pandas' nullable types: an integer column with gaps
        # (a matrix key one job lacks) stays Int64 instead of turning into floats around NaN.
        frame = pd.DataFrame({name: pd.Series([row.get(name) for row in rows], dtype=object)
                              for name in _columns(rows)})
        frame = frame.convert_dtypes()
        for column in ("started_at", "finished_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def to_arrow(self) -> Any:
        """A pyarrow Table of the flattened records (needs `batchrun-fal[arrow]`). A column whose
        values have no common type (a matrix key that is a number here, a string there) is
        stored as text (JSON for objects and lists)."""
        pa = _pyarrow()
        rows = list(self.flat())
        known = {"index": pa.int64(), "repeat": pa.int64(), "row": pa.int64(), "error_type": pa.string(),
                 "error_status_code": pa.int64(), "error_detail": pa.string(), "request_id": pa.string(),
                 "attempts": pa.int64(), "latency_s": pa.float64(), "queue_s": pa.float64(),
                 "served_from": pa.string(), "rerouted_to": pa.string(), "cost_usd": pa.float64(),
                 "expectations_failed": pa.int64(),
                 "artifact_paths": pa.list_(pa.string()), "result": pa.string(), "path": pa.string()}
        arrays = {}
        for name in _columns(rows):
            values = [row.get(name) for row in rows]
            try:
                arrays[name] = pa.array(values, type=known.get(name))
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                arrays[name] = pa.array([_text(v) for v in values], type=pa.string())
        return pa.table(arrays)

    # ---- the two passes -------------------------------------------------------------------

    def _chosen(self) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
        """(file number, line, record) of each record to yield."""
        with contextlib.ExitStack() as stack:
            paths = [stack.enter_context(seekable(p)) for p in self.paths]
            names = [str(p) for p in self.paths]
            if self.all_records:
                for i, (path, name) in enumerate(zip(paths, names, strict=True)):
                    with open_output(path) as handle:
                        for located in iter_located(path, name):
                            yield i, _line_at(handle, located.offset), located.record
                return
            newest: Newest[tuple[int, int, int]] = Newest()
            for i, (path, name) in enumerate(zip(paths, names, strict=True)):
                for located in iter_located(path, name):
                    record = located.record
                    newest.offer(record["id"], finished_at(record), (record["index"], i, located.offset))
            handles = [stack.enter_context(open_output(p)) for p in paths]
            for _, i, offset in sorted(newest.values.values()):
                line = _line_at(handles[i], offset)
                yield i, line, record_at(handles[i], offset)

    def _row_values(self) -> dict[str, dict[str, Any]] | None:
        if self._spec is None:
            return None
        from batchrun.api.specs import load

        loaded = load(self._spec)
        return {r.id: r.row_values for r in loaded.plan() if r.row_values is not None}


def _line_at(handle: IO[bytes], offset: int) -> bytes:
    handle.seek(offset)
    line = handle.readline()
    return line if line.endswith(b"\n") else line + b"\n"


def flatten(record: Mapping[str, Any], row_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One record as flat columns: FLAT_COLUMNS (times as datetimes, `result` as JSON text, the
    downloaded artifacts' paths as a list), then `matrix.<key>`, `row.<column>` (when the row's
    values are given) and `arguments.<name>` (objects and lists as JSON text)."""
    raw_error, raw_timing = record.get("error"), record.get("timing")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    timing: dict[str, Any] = raw_timing if isinstance(raw_timing, dict) else {}
    checks = record.get("expectations")
    failed = None if checks is None else sum(not check_passed(c) for c in expectation_checks(dict(record)))
    artifacts = record.get("artifacts")
    result = record.get("result")
    flat: dict[str, Any] = {
        "id": record.get("id"), "index": record.get("index"), "job": record.get("job"),
        "endpoint": record.get("endpoint"), "path": record.get("path"), "mode": record.get("mode"),
        "status": record.get("status"), "repeat": record.get("repeat"), "row": record.get("row"),
        "error_type": error.get("type"), "error_status_code": error.get("status_code"),
        "error_detail": None if error.get("detail") is None else _text(error.get("detail")),
        "request_id": record.get("request_id"), "attempts": record.get("attempts"),
        "latency_s": timing.get("latency_s"), "queue_s": timing.get("queue_s"),
        "started_at": parse_time(timing.get("started_at")), "finished_at": parse_time(timing.get("finished_at")),
        "served_from": record.get("served_from"), "rerouted_to": record.get("rerouted_to"),
        "cost_usd": record.get("cost_usd"), "expectations_failed": failed,
        "artifact_paths": None if not isinstance(artifacts, list) else [
            a.get("path") for a in artifacts if isinstance(a, dict) and a.get("path") is not None],
        "result": None if result is None else json.dumps(result, ensure_ascii=False, sort_keys=True),
        "output_file": None,
    }
    groups = (("matrix", record.get("matrix")), ("row", row_values), ("arguments", record.get("arguments")))
    for prefix, values in groups:
        if isinstance(values, Mapping):
            for key, value in values.items():
                flat[f"{prefix}.{key}"] = _text(value) if isinstance(value, (dict, list)) else value
    return flat


def _columns(rows: Iterable[dict[str, Any]]) -> list[str]:
    columns = dict.fromkeys(FLAT_COLUMNS)
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def export(outputs: Iterable[str | os.PathLike[str]], destination: str | os.PathLike[str], *,
           format: str | None = None, all_records: bool = False, spec: Any = None) -> int:
    """Write the records (newest per id unless `all_records`) to `destination` as Parquet, CSV
    (flattened columns) or JSONL (the records' own lines). `format`: from the file name's suffix
    when None. Written to a temporary file renamed into place. Returns the number of records.

    Raises:
        UsageError: an unknown format. MissingExtra: Parquet without pyarrow.
    """
    dest = Path(destination)
    fmt = format or {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(dest.suffix.lower(), "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"export: format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    records = Records([Path(o) for o in outputs], all_records=all_records, spec=spec)
    if fmt == "parquet":
        pq = _parquet()
        table = records.to_arrow()
        return _atomic(dest, lambda f: pq.write_table(table, f), table.num_rows)
    if fmt == "csv":
        rows = list(records.flat())
        columns = _columns(rows)

        def write_csv(f: IO[bytes]) -> None:
            text = _TextOut(f)
            writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _csv(v) for k, v in row.items()})

        return _atomic(dest, write_csv, len(rows))
    count = [0]

    def write_jsonl(f: IO[bytes]) -> None:
        for line in records.lines():
            f.write(line)
            count[0] += 1

    return _atomic(dest, write_jsonl, None, count)


class _TextOut:
    """csv.writer's text interface over a binary file (UTF-8)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f

    def write(self, text: str) -> int:
        return self.f.write(text.encode("utf-8"))


def _csv(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return value


def _atomic(dest: Path, write: Any, n: int | None, count: list[int] | None = None) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n if n is not None else (count[0] if count else 0)


def merge(outputs: Iterable[str | os.PathLike[str]], destination: str | os.PathLike[str], *,
          spec: Any = None) -> MergeResult:
    """`batchrun merge`: collate shard outputs into one file in plan order, one record per id (an
    ok record wins over an error, otherwise the newest), lines copied byte for byte, artifact paths
    rebased. With `spec` (a LoadedSpec or anything `load` takes), `missing` lists the planned
    requests no shard has (`planned` is the plan's size).

    Raises:
        RecordsError: an output cannot be read. SinkError: the destination cannot be written.
    """
    plan = None
    if spec is not None:
        from batchrun.api.specs import load

        plan = [Planned(p.id, p.index, p.job.name) for p in load(spec).plan()]
    return merge_outputs([os.fspath(o) for o in outputs], os.fspath(destination), plan=plan)
