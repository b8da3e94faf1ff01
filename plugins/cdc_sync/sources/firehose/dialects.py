"""The CSV dialects of Firehose objects, and the one form every append load reads.

A Firehose source says how its producer writes CSV (`source.csv_dialect`):

- `rfc4180` (the default): RFC 4180 as Python's csv module and most CSV writers write it —
  fields separated by commas, enclosed in double quotes when needed, a quote inside doubled,
  no escape character (a backslash is an ordinary character), records ending in `\\n` or
  `\\r\\n`. RFC 4180 has no NULL: every field is text, an empty field the empty string,
  unless `source.csv_null_value` names the text that stands for NULL (a field equal to it,
  quoted or not, is NULL; that text then cannot be a value).
- `backslash_escaped`: what the project's transform Lambda writes: backslashes doubled,
  `\\N` for NULL, every field quoted (LOAD DATA reads an unquoted `NULL` as NULL).

The append load's `LOAD DATA` reads the `backslash_escaped` form (include/sql/aurora/
load_append.sql). An `rfc4180` object is read here with Python's csv module (strictly:
a quote in the wrong place, a record with the wrong number of fields, text that is not
UTF-8 refuse the object, naming the line) and written in that form, so what lands in the
table is exactly what the csv module reads from the object.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from cdc_sync.errors import BadInput

RFC4180 = "rfc4180"
BACKSLASH_ESCAPED = "backslash_escaped"
DIALECTS = (RFC4180, BACKSLASH_ESCAPED)
ESCAPED_NULL = "\\N"  # NULL for LOAD DATA … ESCAPED BY '\\'


class DialectError(BadInput):
    """The object is not CSV of its declared dialect, or holds what the table cannot take."""


def escaped_field(value: str | None) -> str:
    """One field for LOAD DATA … ESCAPED BY '\\': NULL as \\N; text quoted (LOAD DATA reads an
    unquoted `NULL` as NULL), a quote doubled inside, backslashes doubled."""
    if value is None:
        return ESCAPED_NULL
    return '"' + value.replace("\\", "\\\\").replace('"', '""') + '"'


def escaped_line(record: Sequence[str | None]) -> str:
    """One record in the append load's form, with its newline."""
    return ",".join([escaped_field(v) for v in record]) + "\n"


def _escaped_text_line(record: Sequence[str]) -> str:
    """escaped_line for a record without NULLs (the converter's hot loop)."""
    return '"' + '","'.join([v.replace("\\", "\\\\").replace('"', '""') for v in record]) + '"\n'


def _flush(out: IO[str], pending: list[str], written: Callable[[int], None] | None) -> None:
    out.write("".join(pending))
    if written is not None:
        out.flush()
        written(len(pending))
    pending.clear()


class _Rfc4180(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    escapechar = None
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL
    skipinitialspace = False
    strict = True  # a quote inside an unquoted field, or text after a closing quote: refused


def rfc4180_to_escaped(
    source: Path,
    target: Path,
    columns: Sequence[str],
    null_value: str | None = None,
    written: Callable[[int], None] | None = None,
) -> int:
    """Reads an RFC 4180 object and writes it in the append load's form; returns the
    number of records. Raises DialectError naming the line of the first problem.
    `written(records)` is called after each block is flushed to `target` (a reader may
    follow the file as it grows)."""
    expected = len(columns)
    record_number = 0
    pending: list[str] = []
    try:
        with (
            source.open(encoding="utf-8", errors="strict", newline="") as text,
            target.open("w", encoding="utf-8", newline="") as out,
        ):
            reader = csv.reader(text, _Rfc4180())
            for record in reader:
                record_number += 1
                if len(record) != expected:
                    shown = "an empty line" if not record else f"{len(record)} field(s)"
                    raise DialectError(
                        f"record {record_number} (ending on line {reader.line_num}) has {shown}, but the table's "
                        f"columns are {expected} ({', '.join(columns)})"
                    )
                if null_value is not None and null_value in record:
                    pending.append(escaped_line([None if v == null_value else v for v in record]))
                else:
                    pending.append(_escaped_text_line(record))
                if len(pending) >= 4096:
                    _flush(out, pending, written)
            _flush(out, pending, written)
    except csv.Error as error:
        raise DialectError(f"record {record_number + 1} (line {reader.line_num}): {error}") from error
    except UnicodeDecodeError as error:
        raise DialectError(f"not UTF-8 text: {error.reason} at a byte near record {record_number + 1}") from error
    return record_number
