"""The column types of change data, as every target declares them: read from the files' Arrow types.

A `ColumnType` is a logical type (INTEGER, NUMERIC, STRING, …, spelt as the BigQuery API
spells them) with a decimal's integer digits and scale. Each target maps it to its own
DDL (targets/bigquery/schema.py, targets/aurora/schema.py); `parquet_type` is the one
canonical Arrow type a column is rewritten in, so files with slightly different physical
types (int32 vs int64, decimal(15,2) vs decimal(18,4)) combine into one load.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from cdc_sync.errors import BadInput
from cdc_sync.sources.change_files import META_SCHEMA

# NUMERIC: 29 integer digits, 9 fractional; BIGNUMERIC: 38 fractional digits (BigQuery's limits).
NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE = 29, 9


class UnsupportedType(BadInput):
    """A column of a landed file has a type no target can declare."""


@dataclass(frozen=True)
class ColumnType:
    """A column's logical type: `name` (INTEGER, NUMERIC, ...) and, for decimals, digits and scale."""

    name: str  # INTEGER, NUMERIC, ... as the BigQuery API spells it
    decimal_integer_digits: int = 0
    decimal_scale: int = 0

    def merge(self, other: ColumnType) -> ColumnType:
        """The type that holds both (same type name; decimals widen)."""
        return ColumnType(
            self.name,
            max(self.decimal_integer_digits, other.decimal_integer_digits),
            max(self.decimal_scale, other.decimal_scale),
        )

    def parquet_type(self) -> pa.DataType:
        if self.name in ("NUMERIC", "BIGNUMERIC"):
            precision = self.decimal_integer_digits + self.decimal_scale
            if precision <= 38:
                return pa.decimal128(max(precision, 1), self.decimal_scale)
            return pa.decimal256(min(precision, 76), self.decimal_scale)
        return _PARQUET[self.name]


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
    """Column type of an Arrow column; None for an all-null column (no type yet)."""
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


def metadata_types() -> dict[str, ColumnType]:
    """The types of the metadata columns every change row carries (_cdc_op, _cdc_position, ...)."""
    return {f.name: column_type(f.type) for f in META_SCHEMA}  # type: ignore[misc]
