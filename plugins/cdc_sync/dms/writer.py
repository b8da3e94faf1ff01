"""Write change files the way AWS DMS writes them to an S3 target (Parquet).

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
  * names: `LOAD00000001.parquet`, `20261123-074501123.parquet`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

_MYSQL_TYPES = {
    "tinyint": pa.int8(), "smallint": pa.int16(), "mediumint": pa.int32(), "int": pa.int32(),
    "integer": pa.int32(), "bigint": pa.int64(), "float": pa.float32(), "double": pa.float64(),
    "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC"), "timestamp": pa.timestamp("us", tz="UTC"),
    "char": pa.string(), "varchar": pa.string(), "tinytext": pa.string(), "text": pa.string(),
    "mediumtext": pa.string(), "longtext": pa.string(), "json": pa.string(), "enum": pa.string(),
    "set": pa.string(), "binary": pa.binary(), "varbinary": pa.binary(), "tinyblob": pa.binary(),
    "blob": pa.binary(), "mediumblob": pa.binary(), "longblob": pa.binary(), "time": pa.string(),
    "year": pa.int32(), "bit": pa.binary(),
}


def arrow_type_for_mysql(column_type: str) -> pa.DataType:
    """Arrow type DMS writes for a MySQL COLUMN_TYPE such as `decimal(18,4)` or `bigint(20) unsigned`."""
    text = column_type.lower().strip()
    if match := re.match(r"(decimal|numeric)\((\d+),(\d+)\)", text):
        return pa.decimal128(int(match[2]), int(match[3]))
    base = re.match(r"[a-z]+", text)[0]  # type: ignore[index]
    if base == "bigint" and "unsigned" in text:
        return pa.decimal128(20, 0)
    if base in ("int", "integer") and "unsigned" in text:
        return pa.int64()
    try:
        return _MYSQL_TYPES[base]
    except KeyError as error:
        raise ValueError(f"no DMS Parquet type known for MySQL type {column_type!r}") from error


@dataclass(frozen=True)
class Change:
    op: str  # I, U or D
    row: dict
    commit_ts: datetime


def format_commit_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def cdc_file_name(when: datetime) -> str:
    when = when.astimezone(UTC)
    return f"{when:%Y%m%d-%H%M%S}{when.microsecond // 1000:03d}.parquet"


def load_file_name(number: int) -> str:
    return f"LOAD{number:08d}.parquet"


def write_change_file(
    columns: list[tuple[str, pa.DataType]], changes: list[Change], *,
    timestamp_column: str | None, include_op: bool,
) -> bytes:
    """One DMS-style Parquet file holding `changes` in order."""
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
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


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
