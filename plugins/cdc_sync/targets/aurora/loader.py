"""Apply DMS change files to Aurora MySQL (or MySQL/MariaDB) in merge mode, exactly once.

Per file: the changes are rewritten as CSV chunks of at most `chunk_rows` rows (streamed).
Per chunk, one transaction: ledger row → LOAD DATA into a per-connection staging table →
INSERT … ON DUPLICATE KEY UPDATE into the state table, where a change wins only over an
older `_cdc_position` → COMMIT. A chunk is a run of consecutive rows of the file, recorded
by its first row and row count; a rerun (under the file's lock) reads which rows committed
chunks applied and applies exactly the others, whatever `chunk_rows` is now. Applying a
change twice would be a no-op anyway (equal positions do not update). Chunks are applied on
`load_connections` connections while the file is still being converted, and none commits
before the whole file is checked (aurora.parallel_apply).

Method `aurora_s3` uploads the chunk to the staging prefix and has Aurora read it with
`LOAD DATA FROM S3`; `local_infile` streams it from the worker's disk with
`LOAD DATA LOCAL INFILE`. Everything else is the same code.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pymysql

from cdc_sync import sql
from cdc_sync.config import AuroraTarget, Pipeline, TableSpec
from cdc_sync.errors import BadInput
from cdc_sync.mysql_catalog import catalog_columns
from cdc_sync.protocols import Connect, Connection, S3Client
from cdc_sync.sources.change_files import ChangeFile, ChangeFileError, landed_change_file
from cdc_sync.sources.column_types import ColumnType
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.aurora.chunk_file import ChunkFile
from cdc_sync.targets.aurora.ledger import LOADED, QUARANTINED, AuroraLedger, object_hash
from cdc_sync.targets.aurora.parallel_apply import ChunkRefused, CommitGate, GateClosed, apply_in_parallel
from cdc_sync.targets.aurora.schema import column_family, mysql_type, type_family, widened_decimal
from cdc_sync.targets.base import ObjectLoader, what_is_wrong

log = logging.getLogger(__name__)
STAGE = "_cdc_stage"
META_IN_STATE = ["_cdc_position", "_cdc_deleted", "_cdc_loaded_at"]  # and _cdc_commit_ts where it is stored
DUPLICATE_KEY = 1062
LOCK_DEADLOCK, LOCK_WAIT_TIMEOUT = 1213, 1205
_LOCK_ATTEMPTS = 3
# what MySQL says when a table cannot have the columns asked for: too many columns or keys, a
# row or key too large, a name too long or given twice, a type it refuses
_SCHEMA_REFUSED = {1005, 1059, 1060, 1067, 1069, 1070, 1071, 1074, 1101, 1117, 1118, 1166, 1170, 1425, 1426, 1427}
_LOCK_WAIT_SECONDS = 60  # one wait for another load of the same file; logged, then waited again
_MAX_CHUNK_ID = 2**31 - 1  # the ledger's chunk column (INT) holds a chunk's first row
try:
    _CSV_OPTIONS = pacsv.WriteOptions(include_header=False, null_string="\\N", quoting_style="needed")
    _WRITE_NULLS_OURSELVES = False
except TypeError:  # pyarrow < 26 has no null_string (MWAA's Airflow 3.0.6 pins 18.1): write \N as text
    _CSV_OPTIONS = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    _WRITE_NULLS_OURSELVES = True


class AuroraLoaderBase(ObjectLoader):
    """What the merge and append loaders share: connection setup, the ledger, walking a batch.

    Subclasses implement `_load_file`."""

    target_name = "aurora"

    def __init__(self, pipeline: Pipeline, table: TableSpec, connect: Connect, s3_client: S3Client, workdir: Path):
        if pipeline.aurora is None:
            raise ValueError(f"pipeline {pipeline.name} has no Aurora target")
        super().__init__(pipeline, table, s3_client, workdir)
        self.target: AuroraTarget = pipeline.aurora
        self.connect = connect  # () -> pymysql connection with local_infile as the method needs
        self.ledger = AuroraLedger(self.target, pipeline.name, table.qualified_name)

    def _render(self, template: str, **params) -> str:
        return sql.render(f"aurora/{template}", database=self.target.database, **params)

    # ------------------------------------------------------------------ public
    def load(self, files: list[LandedObject], *, replay_quarantined: bool = False) -> LoadReport:
        report = LoadReport(self.table.qualified_name, target="aurora")
        conn = self._open()
        try:
            self.ledger.ensure(conn)
            outcomes = self.ledger.outcomes(conn, files)
            for index, f in enumerate(sorted(set(files))):
                outcome = outcomes.get((f.key, f.etag))
                if outcome == LOADED:
                    report.already_loaded.append(f.key)
                elif outcome == QUARANTINED and not replay_quarantined:
                    report.previously_quarantined.append(f.key)
                else:
                    self._load_file(conn, f, index, report)
        finally:
            conn.close()
        return report

    def _open(self) -> Connection:
        """A connection set up as every load statement expects (strict, UTC)."""
        conn = self.connect()
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
            cur.execute("SET SESSION time_zone = '+00:00'")
        conn.commit()
        return conn

    def _record_outcome(
        self, conn: Connection, f: LandedObject, status: str, rows: int, reason: str | None = None
    ) -> None:
        self.ledger.record_outcome(conn, f, status, rows, reason)

    def _record_quarantine(self, f: LandedObject, reason: str, conn: Any) -> None:
        self._record_outcome(conn, f, QUARANTINED, 0, reason)

    def _load_file(self, conn: Connection, f: LandedObject, index: int, report: LoadReport) -> None:
        raise NotImplementedError


class AuroraMergeLoader(AuroraLoaderBase):
    """DMS change files → the state table, position-guarded (see module docstring)."""

    def _load_file(self, conn: Connection, f: LandedObject, index: int, report: LoadReport) -> None:
        path = self.workdir / f"aurora-source-{index:06d}.dms"
        if not self._fetch(f, path, report, conn):
            return None
        change_file = landed_change_file(self.pipeline, self.table, f, str(path))
        try:
            types = self._column_types(change_file)
            layout = self._prepare_table(conn, types)
        except BadInput as error:  # this file cannot be loaded as it is: quarantined, the rest goes on
            return self._quarantine(report, f, what_is_wrong(error), conn)
        # A file of inserts only (full-load files, insert-only CDC files), or any file into a
        # state table that was empty when it started, goes in directly: new keys need no
        # staging copy and no upsert. A chunk that meets a key already there (a tombstone, a
        # change applied earlier, one key twice) falls back to staging, and so do the chunks
        # of that file not yet started: a refused direct load costs its rollback.
        direct = threading.Event()  # set: chunks still try the direct load (shared by the connections)
        if self._state_is_empty(conn) or change_file.inserts_only():
            direct.set()

        def apply(connection: Connection, first_row: int, chunk: ChunkFile, gate: CommitGate) -> int:
            return self._apply_chunk(connection, f, first_row, chunk, layout, direct, gate)

        # One load of a file at a time: the rows not yet applied are read from the ledger and
        # applied under the file's lock, so two loads of one file (overlapping runs, with
        # other settings) cannot each take the other's rows for applied.
        with self._file_lock(conn, f):
            if self.ledger.outcomes(conn, [f]).get((f.key, f.etag)) == LOADED:  # by the load we waited for
                report.already_loaded.append(f.key)
                return None
            done = self._applied_rows(conn, f)
            progress = _Progress()
            try:
                outcome = apply_in_parallel(
                    self._chunk_files(change_file, layout.columns, index, done, progress),
                    apply,
                    first_connection=conn,
                    open_connection=self._open,
                    connections=self.target.load_connections,
                )
            except BadInput as error:  # this file cannot be loaded as it is: quarantined, the rest goes on
                return self._quarantine(report, f, what_is_wrong(error), conn)
            report.database_seconds += outcome.database_seconds
            if outcome.refused is not None:
                first_row, reason = outcome.refused
                return self._quarantine(
                    report, f, "; ".join([f"the chunk from row {first_row}: {reason}", *layout.hints]), conn
                )
            applied = sum(rows for rows in outcome.rows.values() if rows is not None)
            if not outcome.rows and done:
                report.already_loaded.append(f.key)  # every row applied before (a crash before its outcome)
            else:
                report.loaded[f.key] = applied  # what this load applied (a resumed one: the rest)
            self._record_outcome(conn, f, LOADED, progress.rows)  # the ledger: every row of the file
        return None

    @contextmanager
    def _file_lock(self, conn: Connection, f: LandedObject) -> Iterator[None]:
        """The server's named lock of this file's load in this ledger, held by `conn`."""
        ident = (
            f"{self.target.database}|{self.target.ledger_table}|{self.pipeline.name}|{self.table.qualified_name}|"
            f"{object_hash(f)}"
        )
        name = "cdc_sync:" + hashlib.sha256(ident.encode()).hexdigest()[:48]  # GET_LOCK takes 64 characters
        waited = 0
        while True:
            with conn.cursor() as cur:
                cur.execute("SELECT GET_LOCK(%s, %s)", (name, _LOCK_WAIT_SECONDS))
                (got,) = cur.fetchone()
            if got == 1:
                break
            if got is None:
                raise RuntimeError(f"{self.table.qualified_name}: GET_LOCK for {f.key} failed")
            waited += _LOCK_WAIT_SECONDS
            log.warning(
                "%s: another load of %s is running; waited %d s for it", self.table.qualified_name, f.key, waited
            )
        try:
            yield
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (name,))
                cur.fetchall()

    def _applied_rows(self, conn: Connection, f: LandedObject) -> list[tuple[int, int]]:
        """The row ranges [first, end) of the file that committed chunks applied, merged, in
        order. A chunk is identified by its first row; one recorded by a version that
        numbered chunks (first_row NULL) covers its number times the length of its file's
        longest such chunk (every chunk but a file's last is full)."""
        rows = self.ledger.applied_chunks(conn, f)
        numbered = [(chunk, count) for chunk, first, count in rows if first is None]
        size = max((count for _, count in numbered), default=0)
        ranges = sorted(
            [(first, first + count) for _, first, count in rows if first is not None]
            + [(chunk * size, chunk * size + count) for chunk, count in numbered]
        )
        merged: list[tuple[int, int]] = []
        for start, end in ranges:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            elif end > start:
                merged.append((start, end))
        if merged:
            log.info(
                "%s: %s was partly applied before (rows %s): applying the rest",
                self.table.qualified_name,
                f.key,
                ", ".join(f"{a}-{b - 1}" for a, b in merged),
            )
        return merged

    def _prepare_table(self, conn: Connection, types: dict[str, ColumnType | None]) -> _StateLayout:
        """Create or extend the state table (and its view) for a file's columns."""
        state, view = self.target.state_table(self.table), self.target.view(self.table)
        catalog = catalog_columns(conn, self.target.database, [state, view])  # one read for both
        existing = [(c.name, c.column_type) for c in catalog.get(state, []) if not c.name.startswith("_cdc_")]
        # a state table of an earlier version stores _cdc_commit_ts: the load fills it
        stored_commit_ts = any(c.name == "_cdc_commit_ts" and not c.generated for c in catalog.get(state, []))
        known = dict(existing)
        problems = [
            f"column {name} has type {kind.name} in the file but {known[name]} in the table"
            for name, kind in types.items()
            if kind is not None and name in known and column_family(known[name]) != type_family(kind)
        ]
        if problems:
            raise ChangeFileError("", "schema cannot be applied: " + "; ".join(problems))
        # DMS's TimestampColumnName holds the commit time that the position already has: the
        # view shows it from _cdc_commit_ts instead of every row storing it twice (a state
        # table of an earlier version that stores it goes on loading it).
        derived = self.table.commit_timestamp_column
        if not derived or derived not in types or derived in known or derived in self.table.primary_key:
            derived = None
        new = [
            (n, mysql_type(k or ColumnType("STRING"), n in self.table.primary_key))
            for n, k in types.items()
            if n not in known and n != derived
        ]
        wider_in_file = [
            (n, wider)
            for n, k in types.items()
            if k is not None and n in known and (wider := widened_decimal(known[n], k))
        ]
        # A value that does not fit its column is bad input, refused with the file; a pipeline
        # that follows a source whose DECIMALs grow says so (widen_decimals).
        widened = wider_in_file if self.target.widen_decimals else []
        hints = (
            []
            if self.target.widen_decimals
            else [
                f"the file declares {name} wider than the table's {known[name]} ({kind} would hold it): if the source's "
                f"column grew, set targets.aurora.widen_decimals: true, or ALTER TABLE … MODIFY COLUMN {name} {kind}"
                for name, kind in wider_in_file
            ]
        )
        with conn.cursor() as cur:
            for name, kind in widened:  # a source DECIMAL that grew: its values would not fit
                log.warning(
                    "%s: widening column %s of %s from %s to %s (the source's type grew; the table is rebuilt)",
                    self.table.qualified_name,
                    name,
                    state,
                    known[name],
                    kind,
                )
            if new and existing:
                log.info(
                    "%s: adding %d column(s) to %s: %s%s",
                    self.table.qualified_name,
                    len(new),
                    state,
                    ", ".join(f"{name} {kind}" for name, kind in new[:20]),
                    ", …" if len(new) > 20 else "",
                )
            try:  # DDL commits on its own: done before any chunk's transaction, in one statement
                if not existing:
                    cur.execute(
                        self._render(
                            "state_table.sql",
                            table=state,
                            view=view,
                            columns=new,
                            primary_key=self.table.primary_key,
                            source_table=self.table.qualified_name,
                        )
                    )
                elif new or widened:
                    cur.execute(
                        self._render(
                            "alter_state_table.sql",
                            table=state,
                            widened=widened,
                            added=new,
                            primary_key=self.table.primary_key,
                        )
                    )
            except pymysql.err.MySQLError as error:
                if not error.args or error.args[0] not in _SCHEMA_REFUSED:
                    raise
                change = "be created with" if not existing else "take"
                what = [f"{len(new)} column(s) to add"] if new else []
                what += [f"{len(widened)} to widen"] if widened else []
                raise ChangeFileError(
                    "",
                    f"the state table {self.target.database}.{state} cannot {change} the "
                    f"file's columns ({', '.join(what)}) and is left as it was: MySQL error "
                    f"{error.args[0]}: {error.args[-1]}",
                ) from error
            columns = [n for n, _ in existing] + [n for n, _ in new]
            in_view = {c.name for c in catalog.get(view, [])}
            if new or not existing or (derived and derived not in in_view) or not in_view.issuperset(columns):
                derived_kind = types.get(derived) if derived else None
                cur.execute(
                    self._render(
                        "live_view.sql",
                        view=view,
                        table=state,
                        columns=columns,
                        commit_ts_column=derived,
                        commit_ts_as_text=derived_kind is None or derived_kind.name == "STRING",
                    )
                )
        conn.commit()
        binary = [n for n, t in existing if column_family(t) == "BYTES"] + [
            n for n, t in new if "BINARY" in t or "BLOB" in t
        ]
        return _StateLayout(columns, binary, stored_commit_ts, hints)

    def _chunk_files(
        self, change_file: ChangeFile, columns: list[str], index: int, done: list[tuple[int, int]], progress: _Progress
    ) -> Generator[tuple[int, ChunkFile], None, None]:
        """The file's rows not in `done` (ranges [first, end), in order) as CSV chunks for
        LOAD DATA, each a run of consecutive rows named by its first row, given out as soon
        as it is written (for LOAD DATA LOCAL as soon as it is started: see
        aurora.chunk_file); `progress` counts the file's rows. A bad file raises
        ChangeFileError where it is found bad."""
        chunk: ChunkFile | None = None
        first_row = 0  # of `chunk`
        writer = None
        ranges = iter(done)
        skip = next(ranges, None)  # the next applied range not yet passed
        try:
            for batch in change_file.changes(datetime.now(UTC), with_position=False):
                start = 0
                while start < batch.num_rows:
                    row = progress.rows + start  # in the file
                    while skip is not None and skip[1] <= row:
                        skip = next(ranges, None)
                    if skip is not None and skip[0] <= row:  # applied before: pass over it
                        if chunk is not None:  # a chunk is consecutive rows: it ends here
                            assert writer is not None
                            writer.close()
                            writer = None
                            chunk.finish()
                            if not chunk.streamed:
                                yield first_row, chunk
                            chunk = None
                        start += min(skip[1] - row, batch.num_rows - start)
                        continue
                    if chunk is None:
                        if row > _MAX_CHUNK_ID:
                            raise ChangeFileError(
                                change_file.key, f"more than {_MAX_CHUNK_ID} rows: too many to record in the ledger"
                            )
                        streamed = self.target.method == "local_infile"
                        chunk = ChunkFile(self.workdir / f"aurora-{index:06d}-{row:012d}.csv", streamed=streamed)
                        first_row = row
                    take = min(
                        batch.num_rows - start,
                        self.target.chunk_rows - chunk.rows,
                        skip[0] - row if skip is not None else batch.num_rows,
                    )
                    table = _csv_table(batch.slice(start, take), columns)
                    writer = writer or pacsv.CSVWriter(str(chunk.path), table.schema, write_options=_CSV_OPTIONS)
                    writer.write_table(table)
                    started = chunk.rows == 0
                    chunk.grew(take)
                    start += take
                    if chunk.streamed and started:
                        yield first_row, chunk
                    if chunk.rows == self.target.chunk_rows:
                        writer.close()
                        writer = None
                        chunk.finish()
                        if not chunk.streamed:
                            yield first_row, chunk
                        chunk = None
                progress.rows += batch.num_rows
            if chunk is not None:
                assert writer is not None
                writer.close()
                writer = None
                chunk.finish()
                if not chunk.streamed:
                    yield first_row, chunk
        finally:
            if writer is not None:
                writer.close()
            if chunk is not None:
                chunk.finish()  # a streamed chunk's reader must not wait for rows that never come

    def _state_is_empty(self, conn) -> bool:
        state = f"{sql.mysql_ident(self.target.database)}.{sql.mysql_ident(self.target.state_table(self.table))}"
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {state} LIMIT 1")
            empty = cur.fetchone() is None
        conn.commit()
        return empty

    def _apply_chunk(
        self,
        conn: Connection,
        f: LandedObject,
        first_row: int,
        chunk: ChunkFile,
        layout: _StateLayout,
        direct: threading.Event,
        gate: CommitGate,
    ) -> int:
        """One transaction, committed once `gate` opens, recording the chunk by its first row
        in the ledger. Returns rows applied.

        While `direct` is set, the chunk is loaded straight into the state table, without
        the staging copy; if that meets any warning (a key already there, one key twice) it is
        rolled back and applied through staging, which is always correct. Two chunks of one
        file that change the same keys can deadlock each other: the loser is redone."""
        s3_uri = None
        if self.target.method == "aurora_s3":  # Aurora reads the chunk from S3 itself: put it there once
            assert chunk.finished, "only LOAD DATA LOCAL reads a chunk while it is written"
            key = f"{self.target.staging_prefix.rstrip('/')}/{self.pipeline.name}/{f.key}.{first_row:012d}.csv"
            self.s3.upload_file(str(chunk.path), self.pipeline.source.bucket, key)
            s3_uri = f"s3://{self.pipeline.source.bucket}/{key}"
        if direct.is_set():
            try:
                return self._apply_once(conn, f, first_row, chunk, layout, s3_uri, gate, direct=True)
            except _DirectLoadRefused:
                direct.clear()
                log.info(
                    "%s: the chunk from row %d of %s meets keys already in %s: applied through staging, as the file's "
                    "chunks not yet started will be",
                    self.table.qualified_name,
                    first_row,
                    f.key,
                    self.target.state_table(self.table),
                )
        for attempt in range(1, _LOCK_ATTEMPTS + 1):
            try:
                return self._apply_once(conn, f, first_row, chunk, layout, s3_uri, gate, direct=False)
            except pymysql.err.OperationalError as error:
                if error.args[0] not in (LOCK_DEADLOCK, LOCK_WAIT_TIMEOUT) or attempt == _LOCK_ATTEMPTS:
                    raise
                log.warning(
                    "%s: the chunk from row %d of %s: %s; applying it again (attempt %d)",
                    self.table.qualified_name,
                    first_row,
                    f.key,
                    error.args[-1],
                    attempt + 1,
                )
        raise AssertionError("unreachable")

    def _apply_once(
        self,
        conn: Connection,
        f: LandedObject,
        first_row: int,
        chunk: ChunkFile,
        layout: _StateLayout,
        s3_uri: str | None,
        gate: CommitGate,
        direct: bool,
    ) -> int:
        state = self.target.state_table(self.table)
        database = sql.mysql_ident(self.target.database)
        try:
            with conn.cursor() as cur:
                counted = chunk.finished  # a chunk still being written gets its row count after the load
                try:
                    self.ledger.write_chunk(cur, f, first_row, first_row, chunk.rows if counted else 0)
                except pymysql.err.IntegrityError as error:
                    if error.args[0] == DUPLICATE_KEY:  # the rows were read under the file's lock: not applied
                        raise RuntimeError(
                            f"{self.table.qualified_name}: the ledger {self.target.ledger_table} already has a chunk "
                            f"{first_row} of {f.key} that does not cover row {first_row} (one an earlier version "
                            "numbered?): neither applying it twice nor skipping it"
                        ) from error
                    raise
                into = state if direct else STAGE
                if not direct:
                    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {database}.{sql.mysql_ident(STAGE)}")
                    cur.execute(self._render("stage_table.sql", stage=STAGE, table=state))
                began = time.perf_counter()
                # the chunk's copy in S3 for aurora_s3, else the chunk (perhaps still being written)
                with nullcontext(s3_uri) if s3_uri else chunk.load_path() as source:
                    loaded = cur.execute(
                        self._render(
                            "load_data.sql",
                            method=self.target.method,
                            source=source,
                            stage=into,
                            columns=layout.columns,
                            hex_columns=layout.binary,
                            phase=str(f.phase),
                            position_name=self.pipeline.source.object_name(self.table, f.key),
                            stored_commit_ts=layout.stored_commit_ts,
                        )
                    )
                staged = time.perf_counter()
                # LOAD DATA LOCAL turns bad values into warnings (clamped, truncated) instead
                # of errors, because the server cannot stop the client's upload: refuse them.
                cur.execute("SHOW WARNINGS LIMIT 3")
                warnings = [f"{message}" for _level, _code, message in cur.fetchall()]
                if warnings:
                    conn.rollback()
                    if direct:
                        raise _DirectLoadRefused()
                    raise ChunkRefused("; ".join(warnings))
                if loaded != chunk.rows:  # e.g. a stream that ended early: never commit part of a chunk
                    raise RuntimeError(
                        f"the chunk from row {first_row} of {f.key}: LOAD DATA read {loaded} rows, "
                        f"the chunk has {chunk.rows}"
                    )
                if not counted:
                    self.ledger.set_chunk_rows(cur, f, first_row, chunk.rows)
                if not direct:
                    cur.execute(
                        self._render(
                            "apply_merge.sql",
                            table=state,
                            stage=STAGE,
                            columns=layout.applied_columns,
                            primary_key=self.table.primary_key,
                        )
                    )
            gate.wait()  # the whole file checked, no other chunk refused
            conn.commit()
            log.info(
                "%s: the chunk from row %d of %s: %d rows %s in %.2fs, committed in %.2fs",
                self.table.qualified_name,
                first_row,
                f.key,
                chunk.rows,
                "loaded directly" if direct else "staged",
                staged - began,
                time.perf_counter() - staged,
            )
        except GateClosed:
            conn.rollback()
            raise
        except pymysql.err.MySQLError as error:
            conn.rollback()
            if direct:
                raise _DirectLoadRefused() from error  # e.g. a duplicate key refused by LOAD DATA FROM S3
            if _is_data_error(error):
                raise ChunkRefused(str(error.args[-1])) from error
            raise
        except BaseException:
            conn.rollback()
            raise
        return chunk.rows


@dataclass(frozen=True)
class _StateLayout:
    """What a chunk's load needs to know of the state table."""

    columns: list[str]  # data columns, in table order
    binary: list[str]  # those that hold bytes (sent as hex)
    stored_commit_ts: bool  # _cdc_commit_ts is a stored column (an earlier version's table)
    hints: list[str]  # what a refusal of this file's values should also say

    @property
    def applied_columns(self) -> list[str]:
        """What the staged upsert writes into the state table."""
        return self.columns + META_IN_STATE + (["_cdc_commit_ts"] if self.stored_commit_ts else [])


@dataclass
class _Progress:
    """Rows of a file read so far by its conversion (all of them once it ended)."""

    rows: int = 0


class _DirectLoadRefused(RuntimeError):
    """A direct load into the state table met a conflict: use staging."""


def _is_data_error(error) -> bool:
    # 1261-1265: row/column count and truncation; 1366/1406/1292/1264: bad value, too long, out of range
    return bool(error.args) and error.args[0] in {1261, 1262, 1263, 1264, 1265, 1292, 1366, 1406, 1048, 1300}


def _csv_table(batch: pa.RecordBatch, columns: list[str]) -> pa.Table:
    """Data columns in state-table order, then the per-row metadata (see load_data.sql: the
    position is built there), encoded for LOAD DATA: backslashes escaped (ESCAPED BY '\\'), NULL as \\N, bytes as
    hex (UNHEX on load), timestamps as UTC text, booleans as 0/1."""
    present = set(batch.schema.names)
    out = [
        _csv_value(batch.column(name)) if name in present else pa.nulls(batch.num_rows, pa.string()) for name in columns
    ]
    out += [
        pc.cast(batch.column("_cdc_commit_ts"), pa.int64()),  # numbers: written without quotes
        batch.column("_cdc_row"),
        pc.cast(pc.equal(batch.column("_cdc_op"), "D"), pa.int8()),
    ]
    names = [*columns, "cdc_us", "cdc_row", "_cdc_deleted"]
    if _WRITE_NULLS_OURSELVES:
        out = [with_null_marker(array) for array in out]
    return pa.Table.from_arrays(out, names=names)


def with_null_marker(array: pa.Array) -> pa.Array:
    """The column as the CSV writer would print it, NULL as LOAD DATA's \\N (the writer's own
    cast to text, so the bytes match a writer with `null_string`; a string value holding
    `\\N` cannot be mistaken: its backslash is escaped by then)."""
    return pc.fill_null(pc.cast(array, pa.string()), "\\N")


def _csv_value(column: pa.Array) -> pa.Array:
    t = column.type
    if pa.types.is_dictionary(t):
        column = column.dictionary_decode()
        t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.replace_substring(column, "\\", "\\\\")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.array([None if v is None else v.hex() for v in column.to_pylist()], pa.string())
    if pa.types.is_timestamp(t):
        return pc.cast(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")), pa.string())
    if pa.types.is_boolean(t):
        return pc.cast(column, pa.int8())
    return column
