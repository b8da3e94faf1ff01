"""Column types of a BigQuery changelog table, declared explicitly from the files' column types.

BigQuery's Parquet autodetection is not relied on: the changelog table's schema is
declared from the files (sources.column_types), new columns are added as NULLABLE before a
load, and a column whose type differs from the table's makes its file unloadable
(`conflicts`). Each column is written to the combined load file in one canonical Arrow
type (`ColumnType.parquet_type`), so files of one table combine into one load job.
"""

from __future__ import annotations

from cdc_sync.sources.column_types import NUMERIC_INTEGER_DIGITS, NUMERIC_SCALE, ColumnType


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
    if existing.name != incoming.name:
        return f"has type {incoming.name} in the file but {existing.name} in the table"
    if existing.name in ("NUMERIC", "BIGNUMERIC") and (
        incoming.decimal_integer_digits > existing.decimal_integer_digits
        or incoming.decimal_scale > existing.decimal_scale
    ):
        return f"does not fit the table's {existing.name} column"
    return None
