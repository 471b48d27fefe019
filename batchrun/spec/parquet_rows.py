"""Parquet datasets: rows streamed one row group at a time, column types kept (batchrun.spec.dataset).

pyarrow is an optional extra (`pip install 'batchrun-fal[arrow]'`), imported only when a spec uses a
`.parquet` dataset; without it, validation says so at the dataset's key. Values become the
JSON-shaped data a request is made of: integers, floats, strings, booleans, lists and objects
as they are; timestamps, dates and times as ISO 8601 text; decimals as floats. Binary columns
have no JSON form: they are left out of the rows, and a template that uses one is a problem.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ArrowMissing", "binary_columns", "columns", "count", "rows"]

ARROW_MISSING = "a Parquet dataset needs pyarrow, which is not installed: pip install 'batchrun-fal[arrow]'"


class ArrowMissing(Exception):
    """pyarrow is not installed."""


def _parquet() -> Any:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ArrowMissing(ARROW_MISSING) from None
    return pyarrow.parquet


def _file(path: Path) -> Any:
    return _parquet().ParquetFile(path)


def columns(path: Path) -> list[str]:
    """The file's column names, in order (its schema: no row is read)."""
    return list(_file(path).schema_arrow.names)


def binary_columns(path: Path) -> set[str]:
    import pyarrow as pa

    schema = _file(path).schema_arrow
    return {f.name for f in schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)
            or pa.types.is_fixed_size_binary(f.type)}


def count(path: Path) -> int:
    """Rows in the file, from its footer (no row is read)."""
    return int(_file(path).metadata.num_rows)


def rows(path: Path, only: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The rows as dicts of JSON-shaped values, one row group in memory at a time. `only`: just
    these columns (a check that needs a few)."""
    pf = _file(path)
    skip = binary_columns(path)
    wanted = [c for c in (only if only is not None else pf.schema_arrow.names) if c not in skip]
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group, columns=wanted)
        for row in table.to_pylist():
            yield {k: _json(v) for k, v in row.items()}


def _json(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # a Parquet map column reads as a list of (key, value) pairs: kept as pairs
        return [_json(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return str(value)
