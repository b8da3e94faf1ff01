"""Arrow types of DMS files → BigQuery column types, declared explicitly.

BigQuery's Parquet autodetection is not relied on: the changelog table's schema is
declared from the files (`column_type`), new columns are added as NULLABLE before a load,
and a column whose type differs from the table's makes its file unloadable (`conflicts`).
Each column is written to the combined load file in one canonical Arrow type
(`parquet_type`), so files with slightly different physical types (int32 vs int64,
decimal(15,2) vs decimal(18,4)) combine into one load job.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from cdc_sync.errors import BadInput
from cdc_sync.sources.change_files import META_SCHEMA

# BigQuery NUMERIC: 29 integer digits, 9 fractional; BIGNUMERIC: 38 fractional digits.
NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE = 29, 9


class UnsupportedType(BadInput):
    pass


@dataclass(frozen=True)
class ColumnType:
    bigquery: str  # INTEGER, NUMERIC, ... as the BigQuery API spells it
    decimal_integer_digits: int = 0
    decimal_scale: int = 0

    def merge(self, other: "ColumnType") -> "ColumnType":
        """The type that holds both (same BigQuery type; decimals widen)."""
        return ColumnType(
            self.bigquery,
            max(self.decimal_integer_digits, other.decimal_integer_digits),
            max(self.decimal_scale, other.decimal_scale),
        )

    def parquet_type(self) -> pa.DataType:
        if self.bigquery in ("NUMERIC", "BIGNUMERIC"):
            precision = self.decimal_integer_digits + self.decimal_scale
            if precision <= 38:
                return pa.decimal128(max(precision, 1), self.decimal_scale)
            return pa.decimal256(min(precision, 76), self.decimal_scale)
        return _PARQUET[self.bigquery]


_PARQUET = {
    "INTEGER": pa.int64(),
    "FLOAT": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "STRING": pa.string(),
    "BYTES": pa.binary(),
    "DATE": pa.date32(),
    "TIME": pa.time64("us"),
    "DATETIME": pa.timestamp("us"),
    "TIMESTAMP": pa.timestamp("us", tz="UTC"),
}


def column_type(arrow_type: pa.DataType) -> ColumnType | None:
    """BigQuery type of an Arrow column; None for an all-null column (no type yet)."""
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_null(t):
        return None
    if pa.types.is_boolean(t):
        return ColumnType("BOOLEAN")
    if pa.types.is_integer(t):
        if t == pa.uint64():  # BIGINT UNSIGNED does not fit INT64
            return ColumnType("NUMERIC", 20, 0)
        return ColumnType("INTEGER")
    if pa.types.is_floating(t):
        return ColumnType("FLOAT")
    if pa.types.is_decimal(t):
        digits, scale = t.precision - t.scale, t.scale
        kind = "NUMERIC" if digits <= NUMERIC_INTEGER_DIGITS and scale <= NUMERIC_SCALE else "BIGNUMERIC"
        return ColumnType(kind, digits, scale)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return ColumnType("STRING")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return ColumnType("BYTES")
    if pa.types.is_date(t):
        return ColumnType("DATE")
    if pa.types.is_time(t):
        return ColumnType("TIME")
    if pa.types.is_timestamp(t):
        return ColumnType("TIMESTAMP" if t.tz else "DATETIME")
    raise UnsupportedType(f"type {arrow_type} has no BigQuery column type here")


def table_types(bq_schema) -> dict[str, ColumnType]:
    """Column types of an existing table (google.cloud.bigquery SchemaField list)."""
    out: dict[str, ColumnType] = {}
    for field in bq_schema:
        kind = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(field.field_type, field.field_type)
        if kind == "NUMERIC":
            out[field.name] = ColumnType(kind, NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE)
        elif kind == "BIGNUMERIC":
            out[field.name] = ColumnType(kind, 38, 38)
        else:
            out[field.name] = ColumnType(kind)
    return out


def conflicts(existing: ColumnType, incoming: ColumnType) -> str | None:
    """Why a file's column cannot be appended to the table's column, or None."""
    if existing.bigquery != incoming.bigquery:
        return f"has type {incoming.bigquery} in the file but {existing.bigquery} in the table"
    if existing.bigquery in ("NUMERIC", "BIGNUMERIC") and (
        incoming.decimal_integer_digits > existing.decimal_integer_digits
        or incoming.decimal_scale > existing.decimal_scale
    ):
        return f"does not fit the table's {existing.bigquery} column"
    return None


def metadata_types() -> dict[str, ColumnType]:
    return {f.name: column_type(f.type) for f in META_SCHEMA}  # type: ignore[misc]
