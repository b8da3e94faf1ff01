"""Read the CSV files an AWS DMS S3 target writes (`DataFormat: csv`, DMS's default).

What DMS writes, and what this reader expects:
  * one line per change; with `AddColumnName` the first line names the columns;
  * the fields in order: `Op` (I/U/D; in CDC files, and in full-load files only with
    `IncludeOpForFullLoad`; not at all with `CdcInsertsOnly`), then the
    `TimestampColumnName` column when the endpoint sets one, then the source table's
    columns in table order;
  * `CsvDelimiter` between fields (default `,`); with `Rfc4180` (default true) a value
    holding a quote, delimiter or line break is enclosed in double quotes, its quotes
    doubled;
  * `CsvNullValue` for NULL (here: an unquoted field equal to it; by default an empty
    field). A quoted empty field `""` is an empty string;
  * `.csv` or, with `CompressionType: GZIP`, `.csv.gz` (gzip is recognised by its bytes).

The files carry no types: each table declares its columns with their MySQL types
(`tables[].columns`, "name type"), and the text is converted to the Arrow type DMS
uses for that MySQL type in Parquet — so a CSV change file yields the same batches
as the Parquet file of the same changes, and every loader downstream is shared.
Binary columns (BINARY/VARBINARY/BLOB/BIT) are read as hexadecimal text.

Whether a headerless file starts with `Op` is read from its field count; every
record must then have that count.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cdc_sync.config import DmsCsvSettings, LandingSource, TableSpec
from cdc_sync.errors import BadInput
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql

OP_COLUMN = "Op"
_OPS = ("I", "U", "D")
_GZIP_MAGIC = b"\x1f\x8b"
_SCAN_BYTES = 1 << 20  # one read of the Op scan
# pyarrow reads (and converts) the file one block at a time; a record must fit in one block,
# so a file with longer records (LOBs in DMS's full LOB mode) is read again with larger blocks.
# bench_loader_memory: a 1 GB file peaks 64 MiB above a 14 MiB one with 1 MiB blocks, 157 with 4 MiB.
_BLOCK_BYTES = (1 << 20, 64 << 20, 1 << 30)


class CsvFileError(BadInput):
    """The file cannot be read as the declared DMS CSV; the message says where and why."""


class _RecordLongerThanBlock(Exception):
    """pyarrow met a record that does not fit in one block."""


@dataclass(frozen=True)
class DmsCsvLayout:
    """How to read one table's CSV files: the endpoint settings and the table's columns."""

    settings: DmsCsvSettings
    columns: tuple[tuple[str, pa.DataType], ...]  # source columns in table order
    timestamp_column: str | None = None  # TimestampColumnName


def csv_layout(source: LandingSource, table: TableSpec) -> DmsCsvLayout | None:
    """The layout of `table`'s files when the source lands DMS CSV; None for Parquet."""
    if source.kind != "dms" or source.file_format != "csv":
        return None
    columns = tuple((name, arrow_type_for_mysql(kind or "longtext")) for name, kind in table.column_types)
    return DmsCsvLayout(source.csv, columns, table.commit_timestamp_column)


class DmsCsvFile:
    """One DMS CSV file on local disk, read in blocks with bounded memory."""

    def __init__(self, path: str, layout: DmsCsvLayout):
        self.path = path
        self.layout = layout
        self._names: list[str] | None = None
        self._header = False  # the first line names the columns
        with open(path, "rb") as fh:
            self._compression = "gzip" if fh.read(2) == _GZIP_MAGIC else None
        self._first = self._first_record()  # the fields of line 1, None for an empty file

    # ------------------------------------------------------------------ layout
    def _open_text(self):
        if self._compression == "gzip":
            return gzip.open(self.path, "rt", encoding="utf-8", newline="")
        return open(self.path, encoding="utf-8", newline="")

    def _csv_reader(self, fh):
        settings = self.layout.settings
        quoting = {"quotechar": '"'} if settings.rfc4180 else {"quoting": csv.QUOTE_NONE}
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a LONGTEXT value may be large
        return csv.reader(fh, delimiter=settings.delimiter, **quoting)

    def _first_record(self) -> list[str] | None:
        try:
            with self._open_text() as fh:
                return next(self._csv_reader(fh), None)
        except (UnicodeDecodeError, OSError, EOFError, csv.Error) as error:
            raise CsvFileError(f"not a readable UTF-8 CSV file ({error})") from error

    def field_names(self) -> list[str]:
        """The file's fields in order: [Op], [timestamp column], data columns."""
        if self._names is not None:
            return self._names
        layout = self.layout
        data = [name for name, _ in layout.columns]
        stamp = [layout.timestamp_column] if layout.timestamp_column else []
        first = self._first
        if first is None:  # an empty file: nothing to read, no Op to find
            self._names = stamp + data
        elif layout.settings.add_column_name or self._is_header(first, data):
            self._header = True
            self._names = self._names_from_header(first, data, stamp)
        elif len(first) == len(stamp) + len(data) + 1:
            if first[0] not in _OPS:
                hint = (
                    ""
                    if stamp
                    else "; if the endpoint sets TimestampColumnName, name that column in commit_timestamp_column"
                )
                raise CsvFileError(
                    f"line 1 has one field more than the declared columns, but its first field "
                    f"{first[0][:40]!r} is not an Op (I, U or D){hint}"
                )
            self._names = [OP_COLUMN] + stamp + data
        elif len(first) == len(stamp) + len(data):
            self._names = stamp + data
        else:
            expected = len(stamp) + len(data)
            raise CsvFileError(
                f"line 1 has {len(first)} fields; the table's {len(data)} declared columns"
                + (f" and the timestamp column {layout.timestamp_column}" if stamp else "")
                + f" make {expected} (or {expected + 1} with Op): the file does not match tables[].columns"
            )
        return self._names

    @staticmethod
    def _is_header(first: list[str], data: list[str]) -> bool:
        """A header line although the settings say AddColumnName is off: every declared
        column named in it (no data row of DMS's reads like that)."""
        names = {f.strip().lower() for f in first}
        return all(d.lower() in names for d in data)

    def _names_from_header(self, header: list[str], data: list[str], stamp: list[str]) -> list[str]:
        names = [h.strip() for h in header]
        known = {n.lower(): n for n in [OP_COLUMN, *stamp, *data]}
        unknown = [n for n in names if n.lower() not in known]
        if unknown:
            raise CsvFileError(f"header names column(s) {', '.join(unknown)} that tables[].columns does not declare")
        names = [known[n.lower()] for n in names]
        missing = [n for n in stamp + data if n not in names]
        if missing:
            raise CsvFileError(f"header lacks declared column(s) {', '.join(missing)}")
        if len(set(names)) != len(names):
            raise CsvFileError("header names a column twice")
        return names

    def only_inserts(self) -> bool:
        """True when no line of the file starts with a U or D field: a file of inserts only
        (DMS writes Op first and unquoted). A line of a multi-line value that happens to
        start like that only makes this False, which is always safe to say."""
        if self.field_names()[:1] != [OP_COLUMN]:
            return False
        delimiter = self.layout.settings.delimiter.encode()
        change = re.compile(b"\n[UD]" + re.escape(delimiter))
        keep = 1 + len(delimiter)  # all but the last byte of a match: one split between blocks is seen
        opener = gzip.open if self._compression == "gzip" else open
        try:
            with opener(self.path, "rb") as fh:
                tail = b"\n"  # line 1 starts like every other line
                while block := fh.read(_SCAN_BYTES):
                    if change.search(tail + block):
                        return False
                    tail = (tail + block)[-keep:]
        except (OSError, EOFError) as error:
            raise CsvFileError(f"not a readable CSV file ({error})") from error
        return True

    def schema(self) -> pa.Schema:
        types = dict(self.layout.columns)
        return pa.schema([pa.field(n, types.get(n, pa.string())) for n in self.field_names()])

    # --------------------------------------------------------------- reading
    def batches(self) -> Iterator[pa.RecordBatch]:
        if self._first is None:
            return
        emitted = 0
        for block_bytes in _BLOCK_BYTES:
            try:
                for batch in self._read(block_bytes, skip=emitted):
                    yield batch
                    emitted += batch.num_rows
                return
            except _RecordLongerThanBlock:
                continue  # read again with larger blocks, from the first record not yet given out
        raise CsvFileError(f"a record after record {emitted} is longer than {_BLOCK_BYTES[-1]:,} bytes")

    def _read(self, block_bytes: int, skip: int) -> Iterator[pa.RecordBatch]:
        names = self.field_names()
        settings = self.layout.settings
        schema = self.schema()
        bad_rows: list = []

        def refuse(row) -> str:
            bad_rows.append(row)
            return "error"

        record = 0  # records before this batch (header not counted)
        try:
            # open_csv reads the first block already: a bad row there fails here
            reader = pacsv.open_csv(
                pa.input_stream(self.path, compression=self._compression),
                read_options=pacsv.ReadOptions(
                    column_names=names, skip_rows=1 if self._header else 0, block_size=block_bytes, use_threads=False
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=settings.delimiter,
                    quote_char='"' if settings.rfc4180 else False,
                    double_quote=True,
                    newlines_in_values=settings.rfc4180,
                    invalid_row_handler=refuse,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names},
                    null_values=[settings.null_value],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                if record + batch.num_rows > skip:
                    if record < skip:  # a retry: the start of this batch was given out already
                        batch, record = batch.slice(skip - record), skip
                    yield pa.RecordBatch.from_arrays(
                        [_convert(batch.column(i), schema.field(i), record) for i in range(len(names))],
                        schema=schema,
                    )
                record += batch.num_rows
        except pa.ArrowInvalid as error:
            if "straddl" in str(error):
                raise _RecordLongerThanBlock() from error
            if bad_rows:
                row = bad_rows[0]
                # pyarrow's row.number counts records, not lines, once a value spans lines
                line = self._line_of_bad_record(len(names))
                raise CsvFileError(
                    f"line {line} has {row.actual_columns} fields, expected {row.expected_columns}: {row.text[:80]!r}"
                ) from error
            raise CsvFileError(f"not readable as CSV after record {record} ({error})") from error

    def _line_of_bad_record(self, expected_fields: int) -> int | str:
        """Only on the error path: the line where the first record of the wrong width starts
        (pyarrow cannot say when values may span lines)."""
        with self._open_text() as fh:
            reader = self._csv_reader(fh)
            start = 1
            for fields in reader:
                header = self._header and start == 1
                if len(fields) != expected_fields and not header:
                    return start
                start = reader.line_num + 1
        return "?"


def _convert(text: pa.Array, target: pa.Field, first_record: int) -> pa.Array:
    """Text as DMS wrote it → the column's Arrow type; a value that does not convert is
    named with its record number (1-based, header not counted) and column."""
    kind = target.type
    if pa.types.is_string(kind):
        return text
    # the word NULL is never a number, date or hex bytes: NULL, whatever CsvNullValue says
    text = pc.if_else(pc.equal(text, "NULL"), pa.scalar(None, pa.string()), text)
    if pa.types.is_binary(kind):  # `""` is empty bytes; NULL is CsvNullValue, as for text
        return _from_hex(text, target, first_record)
    # for a number or a date an empty field can only mean NULL, whatever CsvNullValue is
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if kind == pa.int8():
        # MySQL BOOLEAN is TINYINT(1) (int8 here); accept true/false as well as 1/0
        lowered = pc.utf8_lower(text)
        text = pc.if_else(pc.equal(lowered, "true"), "1", pc.if_else(pc.equal(lowered, "false"), "0", text))
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        # MySQL's zero date has no Arrow/BigQuery value: NULL, as in DMS's Parquet output
        text = pc.if_else(pc.starts_with(text, "0000-00-00"), pa.scalar(None, pa.string()), text)
    try:
        if pa.types.is_timestamp(kind) and kind.tz is not None:
            # DMS writes DATETIME/TIMESTAMP as UTC wall time without an offset
            return pc.cast(pc.cast(text, pa.timestamp(kind.unit)), kind)
        return pc.cast(text, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        index, value = _first_unconvertible(text, kind)
        raise CsvFileError(
            f"record {first_record + index + 1}: column {target.name}: {value!r} is not a {kind} ({error})"
        ) from error


def _from_hex(text: pa.Array, target: pa.Field, first_record: int) -> pa.Array:
    values = []
    for index, value in enumerate(text.to_pylist()):
        try:
            values.append(None if value is None else bytes.fromhex(value))
        except ValueError as error:
            raise CsvFileError(
                f"record {first_record + index + 1}: column {target.name}: {value[:40]!r} is not hexadecimal bytes"
            ) from error
    return pa.array(values, pa.binary())


def _first_unconvertible(text: pa.Array, kind: pa.DataType) -> tuple[int, str]:
    """Only on the error path: find the value that failed (one cast per value)."""
    scalar_type = pa.timestamp(kind.unit) if pa.types.is_timestamp(kind) else kind
    for index, value in enumerate(text.to_pylist()):
        if value is None:
            continue
        try:
            pc.cast(pa.array([value]), scalar_type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return index, value
    return 0, "?"
