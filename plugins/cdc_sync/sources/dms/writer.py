"""Write change files the way AWS DMS writes them to an S3 target (Parquet, or CSV).

Used by captures that are not DMS (binlog, repair) and by the local stand-in of DMS, so
that every change reaches the targets through the same loaders.

What DMS does, and this writer copies:
  * CDC files start with `Op` (I/U/D); full-load files have no `Op` column (unless the
    task sets includeOpForFullLoad);
  * TimestampColumnName, when set, is a text column `YYYY-MM-DD HH:MM:SS.ffffff` (UTC);
  * MySQL types: TINYINT → int8, SMALLINT → int16, INT/MEDIUMINT → int32, BIGINT → int64,
    DECIMAL(p,s) → decimal(p,s), FLOAT/DOUBLE → float/double, DATE → date,
    DATETIME/TIMESTAMP → timestamp (µs, UTC), CHAR/VARCHAR/TEXT/JSON/ENUM → string,
    BINARY/VARBINARY/BLOB → binary;
  * names: `LOAD00000001.parquet`, `20261123-074501123.parquet` (`.csv` for CSV);
  * CSV (dms/csv_files.py reads it back): no header unless AddColumnName, `Op` and the
    timestamp column first, RFC 4180 quoting, NULL as CsvNullValue (empty by default),
    an empty string as `""`, bytes as hexadecimal, DATETIME as `YYYY-MM-DD HH:MM:SS.ffffff`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from cdc_sync.config import DmsCsvSettings


@dataclass(frozen=True)
class Change:
    op: str  # I, U or D
    row: dict
    commit_ts: datetime


def format_commit_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def cdc_file_name(when: datetime, extension: str = "parquet") -> str:
    when = when.astimezone(UTC)
    return f"{when:%Y%m%d-%H%M%S}{when.microsecond // 1000:03d}.{extension}"


def load_file_name(number: int, extension: str = "parquet") -> str:
    return f"LOAD{number:08d}.{extension}"


def write_change_file(
    columns: list[tuple[str, pa.DataType]],
    changes: list[Change],
    *,
    timestamp_column: str | None,
    include_op: bool,
) -> bytes:
    """One DMS-style Parquet file holding `changes` in order."""
    table = change_table(columns, changes, timestamp_column=timestamp_column, include_op=include_op)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def change_table(
    columns: list[tuple[str, pa.DataType]],
    changes: list[Change],
    *,
    timestamp_column: str | None,
    include_op: bool,
) -> pa.Table:
    """`changes` as the Arrow table of a DMS-style Parquet file (one row group's worth)."""
    fields, arrays = [], []
    if include_op:
        fields.append(pa.field("Op", pa.string(), nullable=False))
        arrays.append(pa.array([c.op for c in changes], pa.string()))
    if timestamp_column:
        fields.append(pa.field(timestamp_column, pa.string(), nullable=False))
        arrays.append(pa.array([format_commit_ts(c.commit_ts) for c in changes], pa.string()))
    for name, arrow_type in columns:
        fields.append(pa.field(name, arrow_type))
        arrays.append(pa.array([_arrow_value(c.row.get(name), arrow_type) for c in changes], arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class ChangeFileWriter:
    """A DMS-style Parquet file written to `path` a row group at a time: memory holds one
    group of changes, however many the file ends up with."""

    def __init__(
        self, path: str, columns: list[tuple[str, pa.DataType]], *, timestamp_column: str | None, include_op: bool
    ):
        self.path, self.columns = path, columns
        self.timestamp_column, self.include_op = timestamp_column, include_op
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, changes: list[Change]) -> None:
        if not changes:
            return
        table = change_table(self.columns, changes, timestamp_column=self.timestamp_column, include_op=self.include_op)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema, compression="snappy")
        self._writer.write_table(table)
        self.rows += len(changes)

    def close(self, metadata: dict[str, str] | None = None) -> None:
        """Finish the file; `metadata` goes into its footer (key-value metadata)."""
        if self._writer is not None:
            if metadata:
                self._writer.add_key_value_metadata(metadata)
            self._writer.close()


def write_dms_file(
    columns: list[tuple[str, pa.DataType]],
    changes: list[Change],
    *,
    timestamp_column: str | None,
    include_op: bool,
    csv: DmsCsvSettings | None = None,
) -> bytes:
    """One DMS-style file: Parquet, or CSV as an endpoint with the settings `csv` writes it."""
    if csv is None:
        return write_change_file(columns, changes, timestamp_column=timestamp_column, include_op=include_op)
    return write_change_file_csv(
        columns, changes, timestamp_column=timestamp_column, include_op=include_op, settings=csv
    )


def write_change_file_csv(
    columns: list[tuple[str, pa.DataType]],
    changes: list[Change],
    *,
    timestamp_column: str | None,
    include_op: bool,
    settings: DmsCsvSettings,
) -> bytes:
    """One DMS-style CSV file holding `changes` in order, as an endpoint with `settings` writes it."""
    null_value, delimiter = settings.null_value, settings.delimiter
    names = (["Op"] if include_op else []) + ([timestamp_column] if timestamp_column else [])
    names += [name for name, _ in columns]
    lines = [delimiter.join(names)] if settings.add_column_name else []
    for change in changes:
        fields = ([change.op] if include_op else []) + (
            [format_commit_ts(change.commit_ts)] if timestamp_column else []
        )
        fields += [_csv_text(change.row.get(name), null_value, delimiter) for name, _ in columns]
        lines.append(delimiter.join(fields))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _csv_text(value, null_value: str, delimiter: str) -> str:
    if value is None:
        return null_value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex() or '""'  # empty bytes are not NULL
    if isinstance(value, datetime):  # UTC wall time; a naive value already is
        return (value.astimezone(UTC) if value.tzinfo else value).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return mysql_time_text(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    if text == "" or text == null_value or any(c in text for c in (delimiter, '"', "\n", "\r")):
        return '"' + text.replace('"', '""') + '"'
    return text


def _arrow_value(value, arrow_type: pa.DataType):
    if value is None:
        return None
    if pa.types.is_timestamp(arrow_type) and isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # MySQL DATETIME read in a UTC session
    if pa.types.is_string(arrow_type) and isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8")
    if isinstance(value, timedelta):  # a MySQL TIME, as the server prints it
        return mysql_time_text(value)
    if pa.types.is_string(arrow_type) and not isinstance(value, str):
        return str(value)
    return value


def mysql_time_text(value: timedelta) -> str:
    """'[-]HH:MM:SS[.ffffff]' (hours up to 838; str(timedelta) would say '-35 days, 1:00:01')."""
    sign, value = ("-", -value) if value < timedelta(0) else ("", value)
    seconds, micro = divmod(value // timedelta(microseconds=1), 1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{text}.{micro:06d}" if micro else text
