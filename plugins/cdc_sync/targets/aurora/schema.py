"""MySQL column types of the Aurora state table, from the files' column types; drift and widening checks."""

from __future__ import annotations

import re

from cdc_sync.sources.column_types import ColumnType


def mysql_type(kind: ColumnType, in_primary_key: bool) -> str:
    """The MySQL column type that holds every value of `kind` exactly (key columns get a bounded one)."""
    if kind.name in ("NUMERIC", "BIGNUMERIC"):
        scale = min(kind.decimal_scale, 30)
        return f"DECIMAL({min(kind.decimal_integer_digits + scale, 65)},{scale})"
    if kind.name == "STRING":
        return "VARCHAR(255)" if in_primary_key else "LONGTEXT"
    if kind.name == "BYTES":
        return "VARBINARY(255)" if in_primary_key else "LONGBLOB"
    return {
        "INTEGER": "BIGINT",
        "FLOAT": "DOUBLE",
        "BOOLEAN": "TINYINT(1)",
        "DATE": "DATE",
        "TIME": "TIME(6)",
        "DATETIME": "DATETIME(6)",
        "TIMESTAMP": "DATETIME(6)",
    }[kind.name]


def column_family(mysql_column_type: str) -> str:
    """Coarse type family of an existing MySQL column, to spot drift."""
    t = mysql_column_type.lower()
    for prefix, family in (
        ("tinyint(1)", "BOOLEAN"),
        ("decimal", "NUMERIC"),
        ("datetime", "DATETIME"),
        ("timestamp", "DATETIME"),
        ("date", "DATE"),
        ("time", "TIME"),
        ("double", "FLOAT"),
        ("float", "FLOAT"),
        ("varbinary", "BYTES"),
        ("blob", "BYTES"),
        ("longblob", "BYTES"),
    ):
        if t.startswith(prefix) or t == prefix:
            return family
    if any(t.startswith(x) for x in ("bigint", "int", "smallint", "mediumint", "tinyint")):
        return "INTEGER"
    return "STRING"


_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)")


def widened_decimal(column_type: str, kind: ColumnType) -> str | None:
    """The DECIMAL that holds both a column's values and a file's, or None when the column already holds the file's.

    For a source column whose precision or scale grew. Never narrower in integer digits or in scale than the column; capped at MySQL's DECIMAL(65,30)
    as mysql_type caps it."""
    match = _DECIMAL.match(column_type.lower())
    if not match or kind.name not in ("NUMERIC", "BIGNUMERIC"):
        return None
    precision, scale = int(match[1]), int(match[2])
    wider = ColumnType(kind.name, max(precision - scale, kind.decimal_integer_digits), max(scale, kind.decimal_scale))
    new_scale = min(wider.decimal_scale, 30)
    new_precision = min(wider.decimal_integer_digits + new_scale, 65)
    if new_precision - new_scale < precision - scale or (new_precision, new_scale) == (precision, scale):
        return None
    return mysql_type(wider, in_primary_key=False)


def type_family(kind: ColumnType) -> str:
    """Coarse type family of a file's column, comparable with column_family."""
    return {"BIGNUMERIC": "NUMERIC", "TIMESTAMP": "DATETIME"}.get(kind.name, kind.name)
