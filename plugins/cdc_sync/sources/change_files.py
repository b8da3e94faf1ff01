"""DMS change files → normalised change batches with a sortable position.

Every change row gets the same metadata, whatever the target:
  _cdc_op          I / U / D (full-load files without an `Op` column are inserts)
  _cdc_commit_ts   the commit time, when the DMS task writes TimestampColumnName
  _cdc_position    phase | commit time (µs, 20 digits) | object name | row (12 digits):
                   a string whose byte order is the order in which changes apply,
                   so "latest wins" is one ORDER BY in any engine. The object name is
                   the key relative to the table's folder (it sorts the same and keeps
                   the position short)
  _cdc_source_key  the S3 object the row came from
  _cdc_row         the row's number in that object
  _cdc_loaded_at   when this pipeline loaded it

A change whose primary key has a NULL value is refused (ChangeFileError naming the file,
the column and the row) as its batch is read, so every target quarantines that file alike.

Parquet files are read row group by row group (`iter_batches`), DMS CSV files block by
block (dms/csv_files.py): memory does not grow with file size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.errors import BadInput
from cdc_sync.sources.dms.csv_files import CsvFileError, DmsCsvFile, DmsCsvLayout, csv_layout
from cdc_sync.sources.landed import LandedObject

OP_COLUMN = "Op"
VALID_OPS = ("I", "U", "D")
META_COLUMNS = ("_cdc_op", "_cdc_commit_ts", "_cdc_position", "_cdc_source_key", "_cdc_row", "_cdc_loaded_at")
META_SCHEMA = pa.schema(
    [
        pa.field("_cdc_op", pa.string()),
        pa.field("_cdc_commit_ts", pa.timestamp("us", tz="UTC")),
        pa.field("_cdc_position", pa.string()),
        pa.field("_cdc_source_key", pa.string()),
        pa.field("_cdc_row", pa.int64()),
        pa.field("_cdc_loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)
READ_BATCH_ROWS = 65_536
READ_BUFFER_BYTES = 1 << 20
_NO_TIMESTAMP = "0" * 20
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ChangeFileError(BadInput):
    """A change file cannot be used; the message names the object and what is wrong."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def _parquet_ops_are_inserts(parquet: pq.ParquetFile) -> bool:
    column = parquet.schema_arrow.get_field_index(OP_COLUMN)
    metadata = parquet.metadata
    stats = [metadata.row_group(g).column(column).statistics for g in range(metadata.num_row_groups)]
    if all(s is not None and s.has_min_max and s.null_count == 0 for s in stats):
        return all(s.min in ("I", b"I") and s.max in ("I", b"I") for s in stats)
    ops = parquet.read(columns=[OP_COLUMN]).column(0)
    return ops.null_count == 0 and pc.all(pc.equal(pc.cast(ops, pa.string()), "I")).as_py() is True


def landed_change_file(pipeline: Pipeline, table: TableSpec, f: LandedObject, path: str) -> "ChangeFile":
    """The ChangeFile of a landed object downloaded to `path`, read as the source lands it."""
    return ChangeFile(
        key=f.key,
        path=path,
        phase=f.phase,
        commit_timestamp_column=table.commit_timestamp_column,
        primary_key=table.primary_key,
        position_name=pipeline.source.object_name(table, f.key),
        csv=csv_layout(pipeline.source, table),
    )


@dataclass(frozen=True)
class ChangeFile:
    """A downloaded DMS file and what the pipeline knows about it."""

    key: str
    path: str
    phase: int
    commit_timestamp_column: str | None
    primary_key: tuple[str, ...]
    position_name: str | None = None  # the key relative to the table folder; the key if None
    csv: DmsCsvLayout | None = None  # a DMS CSV file read with this layout; None: Parquet

    def open(self) -> pq.ParquetFile:
        try:
            # pre_buffer (the default) would read every column chunk of the file up front.
            # INT96 timestamps (Hive/Spark rewrites of DMS files) would be read as ns, which
            # cannot hold MySQL's DATETIME range (9999-12-31): µs, as DMS writes them.
            return pq.ParquetFile(
                self.path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES, coerce_int96_timestamp_unit="us"
            )
        except (pa.ArrowException, OSError) as error:
            raise ChangeFileError(self.key, f"not a readable Parquet file ({error})") from error

    @cached_property
    def _csv_file(self) -> DmsCsvFile:
        """The CSV reader, made once: it reads line 1 to lay out the fields."""
        assert self.csv is not None
        try:
            return DmsCsvFile(self.path, self.csv)
        except CsvFileError as error:
            raise ChangeFileError(self.key, str(error)) from error

    def _raw_schema(self) -> pa.Schema:
        if self.csv is None:
            return self.open().schema_arrow
        try:
            return self._csv_file.schema()
        except CsvFileError as error:
            raise ChangeFileError(self.key, str(error)) from error

    def _raw_batches(self) -> Iterator[pa.RecordBatch]:
        if self.csv is not None:
            try:
                yield from self._csv_file.batches()
            except CsvFileError as error:
                raise ChangeFileError(self.key, str(error)) from error
            return
        row = 0
        try:
            for batch in self.open().iter_batches(batch_size=READ_BATCH_ROWS):
                yield batch
                row += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise ChangeFileError(self.key, f"unreadable at row {row} ({error})") from error

    def data_schema(self) -> pa.Schema:
        """The file's columns without DMS's `Op`, checked for what every change needs."""
        schema = self._raw_schema()
        names = set(schema.names)
        missing = [c for c in self.primary_key if c not in names]
        if missing:
            raise ChangeFileError(self.key, f"primary key column(s) {', '.join(missing)} missing from the file")
        if self.commit_timestamp_column and self.commit_timestamp_column not in names:
            raise ChangeFileError(
                self.key, f"commit timestamp column {self.commit_timestamp_column} missing from the file"
            )
        for name in schema.names:
            if not _PLAIN_NAME.match(name):
                raise ChangeFileError(
                    self.key, f"column name {name!r} is not a plain name (letters, digits, underscores)"
                )
            if name.startswith("_cdc_"):
                raise ChangeFileError(self.key, f"column {name} uses the reserved prefix _cdc_")
        if len(set(n.lower() for n in schema.names)) != len(schema.names):
            raise ChangeFileError(
                self.key, "two columns have the same name (names are case-insensitive in the targets)"
            )
        return pa.schema([f for f in schema if f.name != OP_COLUMN])

    def inserts_only(self) -> bool:
        """True when every change of the file is an insert, known without reading its data:
        a full-load file, a file without `Op` (CdcInsertsOnly), a Parquet file whose Op column
        holds only 'I' (from the row groups' statistics, else from that one column), or a DMS
        CSV file none of whose lines starts with U or D (one scan of its bytes). A bad file is
        not judged here (False); reading its changes says what is wrong with it."""
        if self.phase == 0:
            return True
        try:
            if OP_COLUMN not in self._raw_schema().names:
                return True
            if self.csv is not None:
                return self._csv_file.only_inserts()
            return _parquet_ops_are_inserts(self.open())
        except (ChangeFileError, CsvFileError, pa.ArrowException, OSError):
            return False

    def changes(self, loaded_at: datetime, *, with_position: bool = True) -> Iterator[pa.RecordBatch]:
        """Data columns (as in the file) followed by the metadata columns, batch by batch.
        Without `with_position`, `_cdc_position` is NULL: for a target that builds it from the
        phase, commit time, object name and row number itself (Aurora's LOAD DATA), which saves
        building a ~60-character string per row."""
        names = self._raw_schema().names
        data_names = [n for n in names if n != OP_COLUMN]
        has_op = OP_COLUMN in names
        row = 0
        for batch in self._raw_batches():
            yield self._normalise(batch, data_names, has_op, row, loaded_at, with_position)
            row += batch.num_rows

    def _normalise(
        self, batch: pa.RecordBatch, data_names, has_op, first_row, loaded_at, with_position: bool
    ) -> pa.RecordBatch:
        n = batch.num_rows
        self._check_keys(batch, first_row)
        ops = self._ops(batch, has_op, first_row)
        commit_ts = self._commit_ts(batch, first_row)
        rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
        if not with_position:
            position = pa.nulls(n, pa.string())
        else:
            ts_text = (
                pc.fill_null(pc.utf8_lpad(pc.cast(pc.cast(commit_ts, pa.int64()), pa.string()), 20, "0"), _NO_TIMESTAMP)
                if commit_ts is not None
                else pa.scalar(_NO_TIMESTAMP)
            )
            # constants are scalars: Arrow broadcasts them, no per-row Python objects
            position = pc.binary_join_element_wise(
                pa.scalar(str(self.phase)),
                ts_text,
                pa.scalar(self.position_name or self.key),
                pc.utf8_lpad(pc.cast(rows, pa.string()), 12, "0"),
                "|",
            )
        meta = [
            ops,
            commit_ts if commit_ts is not None else pa.nulls(n, pa.timestamp("us", tz="UTC")),
            position,
            pa.repeat(pa.scalar(self.key), n),
            rows,
            pa.repeat(pa.scalar(loaded_at, pa.timestamp("us", tz="UTC")), n),
        ]
        columns = [batch.column(name) for name in data_names] + meta
        return pa.RecordBatch.from_arrays(columns, names=list(data_names) + list(META_COLUMNS))

    def _check_keys(self, batch: pa.RecordBatch, first_row: int) -> None:
        """Refuse a change without a key: a NULL primary key value names no row in any target."""
        for name in self.primary_key:
            column = batch.column(name)
            if column.null_count:
                index = pc.index(pc.is_null(column), True).as_py()
                raise ChangeFileError(self.key, f"primary key column {name} is NULL in row {first_row + index}")

    def _ops(self, batch: pa.RecordBatch, has_op: bool, first_row: int) -> pa.Array:
        if not has_op:
            return pa.repeat(pa.scalar("I"), batch.num_rows)
        ops = pc.cast(batch.column(OP_COLUMN), pa.string())
        bad = pc.invert(pc.fill_null(pc.is_in(ops, value_set=pa.array(VALID_OPS)), False))
        if pc.any(bad).as_py():
            index = pc.index(bad, True).as_py()
            raise ChangeFileError(
                self.key,
                f"column Op has {ops[index].as_py()!r} in row {first_row + index}; expected I, U or D",
            )
        return ops

    def _commit_ts(self, batch: pa.RecordBatch, first_row: int) -> pa.Array | None:
        name = self.commit_timestamp_column
        if not name:
            return None
        column = batch.column(name)
        try:
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                # DMS writes TimestampColumnName as text: "2026-11-23 07:45:01.123456" (UTC).
                parsed = pc.cast(column, pa.timestamp("us"))
                return pc.cast(parsed, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
            if pa.types.is_timestamp(column.type):
                if column.type.tz is None:
                    column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))
                return pc.cast(column, pa.timestamp("us", tz="UTC"))
        except pa.ArrowInvalid as error:
            raise ChangeFileError(
                self.key, f"commit timestamp column {name} has a value that is not a timestamp ({error})"
            ) from error
        raise ChangeFileError(self.key, f"commit timestamp column {name} has type {column.type}, not a timestamp")
