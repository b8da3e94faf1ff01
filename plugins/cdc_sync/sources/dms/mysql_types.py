"""The Arrow type AWS DMS uses for each MySQL column type (its Parquet output; its CSV
output is text that converts to the same types).

No pyarrow at import time: the pipeline config checks declared column types while the
DAG file is parsed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# MySQL base type → name of the pyarrow type factory (arguments in arrow_type_for_mysql)
_ARROW_FACTORY = {
    "tinyint": "int8",
    "smallint": "int16",
    "mediumint": "int32",
    "int": "int32",
    "integer": "int32",
    "bigint": "int64",
    "float": "float32",
    "double": "float64",
    "real": "float64",
    "decimal": "decimal128",
    "numeric": "decimal128",
    "date": "date32",
    "datetime": "timestamp",
    "timestamp": "timestamp",
    "char": "string",
    "varchar": "string",
    "tinytext": "string",
    "text": "string",
    "mediumtext": "string",
    "longtext": "string",
    "json": "string",
    "enum": "string",
    "set": "string",
    "time": "string",
    "binary": "binary",
    "varbinary": "binary",
    "tinyblob": "binary",
    "blob": "binary",
    "mediumblob": "binary",
    "longblob": "binary",
    "year": "int32",
    "bit": "binary",
    "bool": "int8",
    "boolean": "int8",
}
# Unsigned integers get the next wider type, as DMS gives them: every value of the MySQL
# type fits (TINYINT UNSIGNED holds 255, which int8 cannot); BIGINT UNSIGNED is decimal(20, 0).
_UNSIGNED_FACTORY = {
    "tinyint": "int16",
    "smallint": "int32",
    "mediumint": "int32",
    "int": "int64",
    "integer": "int64",
}
_BASE = re.compile(r"\s*([a-z]+)")
_DECIMAL = re.compile(r"\s*(decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


def check_mysql_type(column_type: str) -> str | None:
    """None if DMS's type for `column_type` is known, else what is wrong with it."""
    match = _BASE.match(column_type.lower())
    if not match or match[1] not in _ARROW_FACTORY:
        return f"{column_type!r} is not a MySQL column type cdc-sync knows"
    return None


def arrow_type_for_mysql(column_type: str) -> pa.DataType:
    """Arrow type DMS writes for a MySQL COLUMN_TYPE such as `decimal(18,4)` or `bigint(20) unsigned`."""
    import pyarrow as pa

    text = column_type.lower().strip()
    if problem := check_mysql_type(text):
        raise ValueError(f"no DMS type known: {problem}")
    base = _BASE.match(text)[1]  # type: ignore[index]
    if base in ("decimal", "numeric"):
        match = _DECIMAL.match(text)
        precision, scale = (int(match[2]), int(match[3] or 0)) if match else (10, 0)
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    if "unsigned" in text and base == "bigint":
        return pa.decimal128(20, 0)
    if "unsigned" in text and base in _UNSIGNED_FACTORY:
        return getattr(pa, _UNSIGNED_FACTORY[base])()
    factory = _ARROW_FACTORY[base]
    if factory == "timestamp":
        return pa.timestamp("us", tz="UTC")
    return getattr(pa, factory)()
