"""Dataset rows for `${{ row.FIELD }}`: JSONL, CSV (header row; values are strings unless the spec
gives column `types`, see batchrun.spec.dataset_types), Parquet (typed columns, streamed by row group:
batchrun.spec.parquet_rows), a YAML or JSON list of objects, or an inline list in the spec.

`check` reads a dataset once and reports problems located in the dataset file itself (its own
line:col). `iter_rows` streams rows for the planner; JSONL and CSV are re-read per matrix
combination rather than held in memory, so a million-row file plans in bounded memory.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from batchrun.errors import BatchrunError, Problem
from batchrun.spec import dataset_types, parquet_rows, yamlsource
from batchrun.spec.dataset_types import CellError, RowTypes
from batchrun.spec.jsonvalues import bad_value
from batchrun.spec.yamlsource import json_path

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".json": "json",
           ".parquet": "parquet"}
MAX_PROBLEMS = 20  # per dataset; a broken 1M-row file should not print 1M lines
MAX_COLUMNS = 1000  # field names kept for a did-you-mean on a `types` key no row has


FILE_FIELDS = ("path", "name", "stem")  # the row of each file of a `dataset: {files: GLOB}`


def file_rows(spec_dir: Path, pattern: str) -> list[dict[str, str]]:
    """`dataset: {files: GLOB}`: one row per matching file, sorted by path: `path` as matched
    (relative to the spec's folder, `/`-separated: what `{$file: "${{ row.path }}"}` takes),
    `name` (`cat.png`) and `stem` (`cat`). A folder stands for the files in it; `**` recurses."""
    root = Path(spec_dir)
    if (root / pattern).is_dir():
        pattern = pattern.rstrip("/") + "/*"
    matches = sorted(glob.glob(pattern, root_dir=root, recursive=True))
    rows = []
    for match in matches:
        if (root / match).is_file():
            path = Path(match)
            rows.append({"path": path.as_posix(), "name": path.name, "stem": path.stem})
    return rows


class DatasetFormatError(BatchrunError):
    """Raised by iter_rows on a file that changed after validation."""


def format_of(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


@dataclasses.dataclass(slots=True)
class Report:
    rows: int = 0
    problems: list[Problem] = dataclasses.field(default_factory=list)
    more: int = 0  # problems beyond MAX_PROBLEMS
    # Whether no two rows have the same values in the fields `check` was asked to compare
    # (`distinct_on`); False when it was not asked, or for an inline or whole-document dataset.
    distinct: bool = False
    # With `types`: the field names the rows have (a CSV header; else first seen, up to
    # MAX_COLUMNS), so the spec check can say which typed name matches no column.
    columns: dict[str, None] = dataclasses.field(default_factory=dict)

    def add(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)
        else:
            self.more += 1


def check(path: Path, label: str, fields: dict[str, str], distinct_on: Sequence[str] = (),
          types: Mapping[str, str] | None = None) -> Report:
    """Validate a dataset file. `fields` maps each row field the templates use to where it is used.
    With `distinct_on`, a JSONL or CSV file also tells whether its rows differ in those fields.
    With `types`, each typed value is converted as the planner will, and a value that does not
    convert is a problem located at it (a CSV cell, a JSONL line's field)."""
    report = Report()
    typed = RowTypes(types) if types else None
    fmt = format_of(path)
    if not path.is_file():
        report.add(
            Problem(label, 1, 1, "$", "dataset file not found" if not path.exists() else "dataset is not a file")
        )
        return report
    if fmt is None:
        report.add(
            Problem(
                label, 1, 1, "$",
                f"unsupported dataset format '{path.suffix}'; use .jsonl, .csv, .parquet, .yaml, .yml or .json",
            )
        )
        return report
    try:
        if fmt == "jsonl":
            _check_jsonl(path, label, fields, _Distinct(distinct_on, canonical=True), report, typed)
        elif fmt == "parquet":
            _check_parquet(path, label, fields, _Distinct(distinct_on, canonical=True), report, typed)
        elif fmt == "csv":
            # Typed cells are compared as JSON values (1 and True hash alike in Python).
            _check_csv(path, label, fields, _Distinct(distinct_on, canonical=typed is not None), report, typed)
        else:
            _check_document(path, label, fields, fmt, report, typed)
    except UnicodeDecodeError as exc:
        report.add(Problem(label, 1, 1, "$", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except OSError as exc:
        report.add(Problem(label, 1, 1, "$", f"cannot read dataset: {exc.strerror or exc}"))
    if report.rows == 0 and not report.problems:
        report.add(Problem(label, 1, 1, "$", "dataset has no rows"))
    return report


def _missing(row: Mapping[str, Any], fields: dict[str, str], index: int) -> Iterator[str]:
    """A message for each field the templates use that row `index` lacks."""
    for name, used_at in fields.items():
        if name not in row:
            yield f"row {index} has no field '{name}' (used by {used_at})"


_SCALARS = (int, float, bool)


class _Distinct:
    """Whether rows differ in some of their fields, in one pass and about 70 MB per million rows:
    a set of hashes, not of values. A hash collision only says "not distinct", which is the safe
    answer (the caller then walks the plan to find real duplicates)."""

    def __init__(self, fields: Sequence[str], *, canonical: bool) -> None:
        self.fields = fields
        self.canonical = canonical  # JSON values: compared as canonical JSON (1 and 1.0 differ)
        self.seen: set[int] | None = set() if fields else None

    def add(self, row: Mapping[str, Any]) -> None:
        if self.seen is None:
            return
        values = [row.get(f) for f in self.fields]
        if self.canonical:
            # Strings as themselves (the usual prompt); other values as the canonical JSON the
            # request id hashes (so 1 and 1.0 differ, as their ids do), boxed apart from strings.
            # Scalars are boxed with their type's name instead (1, 1.0 and true differ as in JSON,
            # ~5x cheaper than dumping them; 0.0 and -0.0 compare equal, the safe "not distinct").
            values = [
                v
                if type(v) is str
                else (type(v).__name__, v)
                if v is None or type(v) in _SCALARS
                else (json.dumps(v, sort_keys=True, separators=(",", ":")),)
                for v in values
            ]
        key = hash(tuple(values))
        if key in self.seen:
            self.seen = None  # not distinct: nothing more to learn
        else:
            self.seen.add(key)

    def result(self) -> bool:
        return self.seen is not None


def _note_columns(row: Mapping[str, Any], report: Report, typed: RowTypes) -> None:
    """Keep the row's field names; past MAX_COLUMNS only the typed ones (all that must be known)."""
    columns = report.columns
    for name in row:
        if name not in columns and (len(columns) < MAX_COLUMNS or name in typed.names):
            columns[name] = None


def _jsonl_col(line: str, name: str) -> int:
    """The column of field `name`'s key in a JSONL line (1 when it is written with escapes)."""
    return line.find(json.dumps(name, ensure_ascii=False)) + 1 or 1


def _check_jsonl(
    path: Path, label: str, fields: dict[str, str], distinct: _Distinct, report: Report, typed: RowTypes | None
) -> None:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                report.add(Problem(label, lineno, exc.start + 1, "$", f"not UTF-8 text (byte 0x{raw[exc.start]:02x})"))
                return
            if not line.strip():
                continue
            index = report.rows
            report.rows += 1
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                report.add(Problem(label, lineno, exc.colno, f"$[{index}]", f"invalid JSON: {exc.msg}"))
                continue
            except RecursionError:
                report.add(Problem(label, lineno, 1, f"$[{index}]", "invalid JSON: nested too deeply"))
                continue
            except ValueError:  # int() of more digits than Python converts
                report.add(Problem(label, lineno, 1, f"$[{index}]", "an integer has more digits than batchrun "
                                   f"reads ({sys.get_int_max_str_digits()} at most); write it as a string"))
                continue
            if not isinstance(row, dict):
                report.add(Problem(label, lineno, 1, f"$[{index}]", f"a row must be a JSON object, not {kind(row)}"))
                continue
            for message in _missing(row, fields, index):
                report.add(Problem(label, lineno, 1, f"$[{index}]", message))
            if (bad := bad_value(row)) is not None:  # see batchrun.spec.jsonvalues
                where, why = bad
                column = where[0] if where and isinstance(where[0], str) else None
                col = 1 if column is None else _jsonl_col(line, column)
                report.add(Problem(label, lineno, col, json_path((index, *where)), why))
                continue
            if typed is not None:
                _note_columns(row, report, typed)
                cells = typed.errors(row)
                for cell in cells:
                    report.add(
                        Problem(
                            label, lineno, _jsonl_col(line, cell.column), json_path((index, cell.column)), str(cell)
                        )
                    )
                if cells:
                    continue
            distinct.add(row)
    report.distinct = distinct.result()


class _RawLines:
    """The file's lines as csv.reader takes them, keeping the text of the current record (the
    reader reads no further than the record it returns), to locate a typed cell's column."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.lines: list[str] = []

    def __iter__(self) -> Iterator[str]:
        for line in self.fh:
            self.lines.append(line)
            yield line

    def take(self) -> str:
        text = "".join(self.lines)
        self.lines.clear()
        return text


def _check_csv(
    path: Path, label: str, fields: dict[str, str], distinct: _Distinct, report: Report, typed: RowTypes | None
) -> None:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        raw = _RawLines(fh) if typed is not None else None
        reader = csv.reader(fh if raw is None else raw)
        try:
            header = next(reader, None)
            if header is None:
                return
            if len(set(header)) != len(header):
                dup = next(h for h in header if header.count(h) > 1)
                report.add(Problem(label, 1, 1, "$", f"duplicate column '{dup}' in the header row"))
                return
            report.columns = dict.fromkeys(header)
            if raw is not None:
                raw.take()
            start = reader.line_num + 1
            for record in reader:
                text = "" if raw is None else raw.take()
                line = start
                start = reader.line_num + 1
                if not record:
                    continue
                index = report.rows
                report.rows += 1
                if len(record) != len(header):
                    report.add(
                        Problem(
                            label,
                            line,
                            1,
                            f"$[{index}]",
                            f"row has {len(record)} fields but the header has {len(header)}",
                        )
                    )
                    continue
                row = dict(zip(header, record, strict=True))
                for message in _missing(row, fields, index):
                    report.add(Problem(label, line, 1, f"$[{index}]", message))
                if typed is not None:
                    cells = typed.errors(row)
                    for cell in cells:
                        down, col = dataset_types.csv_cell(text, header.index(cell.column))
                        report.add(Problem(label, line + down, col, json_path((index, cell.column)), str(cell)))
                    if cells:
                        continue
                distinct.add(row)
            report.distinct = distinct.result()
        except csv.Error as exc:
            report.add(Problem(label, reader.line_num or 1, 1, "$", f"invalid CSV: {exc}"))


def _check_parquet(
    path: Path, label: str, fields: dict[str, str], distinct: _Distinct, report: Report, typed: RowTypes | None
) -> None:
    """The footer gives the row count and the columns; rows are read (a row group at a time) only
    to compare them (`distinct_on`) or convert typed columns. A Parquet file has no lines: a
    problem is located by its row and column (`$[12].seed`)."""
    try:
        names = parquet_rows.columns(path)
        binary = parquet_rows.binary_columns(path)
        report.rows = parquet_rows.count(path)
    except parquet_rows.ArrowMissing as exc:
        report.add(Problem(label, 1, 1, "$", str(exc)))
        return
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        report.add(Problem(label, 1, 1, "$", f"cannot read the Parquet file: {exc}"))
        return
    report.columns = dict.fromkeys(names)
    for name, used_at in fields.items():
        if name in binary:
            report.add(Problem(label, 1, 1, "$", f"column '{name}' (used by {used_at}) is binary, which has no "
                                                 "JSON form; store it as text (a path or a URL) instead"))
        elif name not in report.columns:
            shown = ", ".join(names[:10]) + (f" (and {len(names) - 10} more)" if len(names) > 10 else "")
            report.add(Problem(label, 1, 1, "$", f"no column '{name}' (used by {used_at}); columns: {shown}"))
    if distinct.seen is None and typed is None:
        return
    wanted = sorted({*distinct.fields, *(typed.names if typed is not None else ())} & set(names) - binary)
    for index, row in enumerate(parquet_rows.rows(path, wanted)):
        if typed is not None:
            cells = typed.errors(row)
            for cell in cells:
                report.add(Problem(label, 1, 1, json_path((index, cell.column)), str(cell)))
            if cells:
                continue
        distinct.add(row)
    report.distinct = distinct.result()


def _check_document(
    path: Path, label: str, fields: dict[str, str], fmt: str, report: Report, typed: RowTypes | None
) -> None:
    text, problems = yamlsource.read_text(path, label)
    for p in problems:
        report.add(p)
    if text is None:
        return
    if fmt == "json":
        try:
            json.loads(text)  # only to locate a JSON syntax error; the rows are read below
        except json.JSONDecodeError as exc:
            report.add(Problem(label, exc.lineno, exc.colno, "$", f"invalid JSON: {exc.msg}"))
            return
        except RecursionError:
            report.add(Problem(label, 1, 1, "$", "invalid JSON: nested too deeply"))
            return
        except ValueError:
            pass  # an integer too long to convert: the YAML pass below locates it
        # JSON is YAML: re-parse for positions (cheap next to the error it lets us point at).
    located, problems = yamlsource.parse(text, label)
    for p in problems:
        report.add(p)
    if located is None:
        return
    check_inline(located, (), fields, report, typed)


def check_inline(
    located: yamlsource.Located,
    base: tuple[str | int, ...],
    fields: dict[str, str],
    report: Report,
    typed: RowTypes | None = None,
) -> None:
    """Check a list of row objects found at `base` inside a located document (a spec or a file),
    and with `typed` that its typed values convert (rows are converted in place)."""
    data = located.data
    for part in base:
        data = data[part]
    if not isinstance(data, list):
        report.add(located.problem(base, f"a dataset must be a list of objects, not {kind(data)}"))
        return
    for index, row in enumerate(data):
        report.rows += 1
        if not isinstance(row, dict):
            report.add(located.problem((*base, index), f"a row must be an object, not {kind(row)}"))
            continue
        for message in _missing(row, fields, index):
            report.add(located.problem((*base, index), message))
        if typed is not None:
            _note_columns(row, report, typed)
            for cell in typed.errors(row):
                report.add(located.problem((*base, index, cell.column), str(cell)))


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


class RowSource:
    """Re-iterable rows of one dataset, for the planner. Whole-document formats are read once."""

    def __init__(self, source: Path | Sequence[dict[str, Any]], types: Mapping[str, str] | None = None) -> None:
        self.source = source
        self.typed = RowTypes(types) if types else None
        self._cached: list[dict[str, Any]] | None = None
        if not isinstance(source, Path):
            self._cached = list(source)
        elif format_of(source) in ("yaml", "json"):
            self._cached = [_converted(row, self.typed, source) for row in _load_document(source)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._cached is not None:
            return iter(self._cached)
        assert isinstance(self.source, Path)
        rows = _stream(self.source)
        if self.typed is None:
            return rows
        return (_converted(row, self.typed, self.source) for row in rows)

    def count(self) -> int:
        if self._cached is not None:
            return len(self._cached)
        assert isinstance(self.source, Path)
        if format_of(self.source) == "parquet":
            return parquet_rows.count(self.source)  # from the footer
        return sum(1 for _ in _stream(self.source))  # counting needs no conversion


def _converted(row: dict[str, Any], typed: RowTypes | None, path: Path) -> dict[str, Any]:
    if typed is None:
        return row
    try:
        return typed.apply(row)
    except CellError as exc:
        raise DatasetFormatError(f"{path}: dataset changed since validation ({exc})") from None


def _load_document(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if format_of(path) == "json":
        data = json.loads(text)
    else:
        located, problems = yamlsource.parse(text, str(path))
        if located is None or problems:
            raise DatasetFormatError(f"{path}: dataset changed since validation")
        data = located.data
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetFormatError(f"{path}: dataset changed since validation")
    return data


def _stream(path: Path) -> Iterator[dict[str, Any]]:
    if format_of(path) == "parquet":
        yield from parquet_rows.rows(path)
        return
    if format_of(path) == "csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                return
            for record in reader:
                if record:
                    yield dict(zip(header, record, strict=False))
        return
    with path.open(encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise DatasetFormatError(f"{path}: dataset changed since validation")
                yield row
