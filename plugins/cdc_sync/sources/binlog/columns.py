"""The Arrow type DMS gives each column of a binlog row event, and each value as it is written.

Names and types come from the event's table map (with `binlog_row_metadata=FULL` it carries
every column's name, signedness and character set), never from the table's current shape:
an event written before an ALTER TABLE is read with the columns it was written with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from decimal import Decimal

import pyarrow as pa

from cdc_sync.errors import BadInput, SetupError
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql

# binlog column type codes (MySQL's enum_field_types) → the MySQL type DMS maps from
_TYPE_NAMES = {
    1: "tinyint",
    2: "smallint",
    3: "int",
    4: "float",
    5: "double",
    7: "timestamp",
    8: "bigint",
    9: "mediumint",
    10: "date",
    11: "time",
    12: "datetime",
    13: "year",
    14: "date",
    16: "bit",
    17: "timestamp",
    18: "datetime",
    19: "time",
    245: "json",
    247: "enum",
    248: "set",
}
_STRING_TYPES = {15: ("varchar", "varbinary"), 253: ("varchar", "varbinary"), 254: ("char", "binary")}
_BLOB_TYPES = {249, 250, 251, 252}
NEWDECIMAL = 246


class RowMetadataMissing(SetupError):
    """Row events without column names: the server does not log binlog_row_metadata=FULL."""


def mysql_type_of(column) -> str:
    """A MySQL column type text (`decimal(18,4)`, `bigint unsigned`, `text`) for a binlog column."""
    code = column.type
    if code == NEWDECIMAL:
        return f"decimal({column.precision},{column.decimals})"
    binary = (getattr(column, "character_set_name", None) or "").lower() == "binary"
    if code in _STRING_TYPES:
        return _STRING_TYPES[code][1 if binary else 0]
    if code in _BLOB_TYPES:
        return "blob" if binary else "text"
    name = _TYPE_NAMES.get(code)
    if name is None:
        raise SetupError(f"column {column.name}: binlog column type {code} has no DMS type cdc-sync knows")
    integers = ("tinyint", "smallint", "mediumint", "int", "bigint")
    return f"{name} unsigned" if getattr(column, "unsigned", False) and name in integers else name


def arrow_columns(schema: str, table: str, columns: Sequence) -> list[tuple[str, pa.DataType]]:
    """(name, Arrow type) of every column of a row event, refused without row metadata."""
    out = []
    for index, column in enumerate(columns):
        name = column.name
        if not name or name.startswith("UNKNOWN_COL"):
            raise RowMetadataMissing(
                f"{schema}.{table}: a row event carries no name for column {index + 1}: the server wrote it "
                "without binlog_row_metadata=FULL. Set binlog_row_metadata=FULL (MySQL 8.0.14+, MariaDB 10.5+; "
                "Aurora: in the cluster parameter group) and re-snapshot the table with the DAG param resnapshot"
            )
        out.append((name, arrow_type_for_mysql(mysql_type_of(column))))
    return out


def dms_value(value, arrow_type: pa.DataType):
    """A value as python-mysql-replication decodes it → what DMS writes for its column."""
    if value is None:
        return None
    if isinstance(value, (set, frozenset)):  # SET: the server's text, members in definition order
        return ",".join(sorted(value))
    if pa.types.is_binary(arrow_type):
        if isinstance(value, str):
            if value and set(value) <= {"0", "1"}:  # BIT(n) comes as a string of bits
                return int(value, 2).to_bytes((len(value) + 7) // 8, "big")
            return value.encode("utf-8")
        return bytes(value)
    if pa.types.is_string(arrow_type) and isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), default=_json_default)
    if pa.types.is_decimal(arrow_type) and isinstance(value, int):
        return Decimal(value)
    return value


def _json_default(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON")


def binlog_value(value, arrow_type: pa.DataType, table: str, column: str):
    """dms_value for a value decoded from a row event, refusing what the decoder gets wrong:
    python-mysql-replication misreads a negative TIME with fractional seconds (TIME2's
    fraction of a negative value is stored complemented), so such a value is refused, not
    landed altered."""
    if isinstance(value, timedelta) and value < timedelta(0) and value.microseconds:
        raise BadInput(
            f"{table}: column {column} holds a negative TIME with fractional seconds ({value}), which the "
            "binlog reader cannot decode exactly; the run stops rather than land a wrong value. Store such "
            "durations in another type, or re-snapshot the table after changing the row"
        )
    return dms_value(value, arrow_type)


def converters(table: str, columns: list[tuple[str, pa.DataType]]) -> list[tuple[str, Callable]]:
    """(name, function) for the columns whose decoded values need converting before they are
    written (binary, decimal and text columns); the others are written as decoded."""
    out: list[tuple[str, Callable]] = []
    for name, arrow_type in columns:
        if pa.types.is_binary(arrow_type) or pa.types.is_decimal(arrow_type):
            out.append((name, _bound(dms_value, arrow_type)))
        elif pa.types.is_string(arrow_type):
            out.append((name, _text(arrow_type, table, name)))
    return out


def _bound(function, arrow_type):
    return lambda value: function(value, arrow_type)


def _text(arrow_type, table: str, column: str):
    def convert(value):
        return value if type(value) is str or value is None else binlog_value(value, arrow_type, table, column)

    return convert
