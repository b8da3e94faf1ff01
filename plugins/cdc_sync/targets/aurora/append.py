"""Append delivered Firehose objects to an existing Aurora table, exactly once.

Per object, one transaction: ledger row → `LOAD DATA` into the table (from S3 itself with
`aurora_s3`; from the worker's disk with `local_infile`) → COMMIT. LOAD DATA into InnoDB is
transactional, so a staging table would only copy the rows twice: the ledger row and the
rows commit together or not at all, and a retry finds the ledger row and skips. Firehose
bounds an object by its buffer size (at most 128 MiB), which bounds the transaction.
Firehose delivers at least once: an object byte for byte equal to one already loaded (same
ETag) is not loaded again. That is decided inside the object's transaction: it first inserts
a claim on its content (a ledger row keyed by the ETag), so two loads of equal objects at once
(a backfill beside a scheduled run, a manual task run) serialise on that row and the second
finds the first's claim once it commits; the same object twice at once serialises on its own
ledger row. The load says IGNORE, so into a table with a unique key a
record already there is skipped (a duplicate-key warning) instead of refusing the object.
Any other warning (a value that does not fit, a line with too few or too many fields)
rolls the object back and quarantines it with MySQL's message, which names the row.
The load reads the `backslash_escaped` CSV dialect; an object of a source whose producer
writes RFC 4180 (`source.csv_dialect: rfc4180`, the default) is converted to it by the
worker first, exactly as Python's csv module reads it (firehose.dialects).
"""

from __future__ import annotations

import gzip
import logging
import shutil
import threading
from contextlib import nullcontext
from pathlib import Path, PurePosixPath

from botocore.exceptions import ClientError

from cdc_sync import sql
from cdc_sync.errors import BadInput, SetupError
from cdc_sync.protocols import Connection, Cursor
from cdc_sync.sources.firehose.dialects import BACKSLASH_ESCAPED, DialectError, rfc4180_to_escaped
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.aurora.chunk_file import ChunkFile
from cdc_sync.targets.aurora.ledger import LOADED
from cdc_sync.targets.aurora.loader import DUPLICATE_KEY, AuroraLoaderBase
from cdc_sync.targets.aurora.parallel_apply import ChunkRefused
from cdc_sync.targets.base import what_is_wrong

log = logging.getLogger(__name__)


APPEND_STAGE = "_cdc_append_stage"
GZIP_MAGIC = b"\x1f\x8b"
# object name endings Firehose gives to output that is not CSV text
_NOT_CSV = {
    ".zip": "ZIP-compressed (CompressionFormat ZIP)",
    ".snappy": "Snappy-compressed (CompressionFormat SNAPPY or HADOOP_SNAPPY)",
    ".parquet": "Parquet (record format conversion)",
    ".orc": "ORC (record format conversion)",
}


class _AlreadyLoaded(Exception):
    """The ledger already has this object's row: a retry after it committed."""


class _RepeatedDelivery(Exception):
    """An object with the same content (ETag) is already appended to the table."""

    def __init__(self, original: str):
        super().__init__(original)
        self.original = original


LOCK_WAIT_TIMEOUT, DEADLOCK = 1205, 1213
LOCK_RETRIES = 20  # each waits innodb_lock_wait_timeout (50 s by default)


class _WarningsNotAllShown(Exception):
    """More warnings than MySQL keeps: which of them are duplicates cannot be told."""


def _refuse_unless_duplicates(cur: Cursor, *, accept_duplicates: bool, all_shown: bool = True) -> int:
    """The number of duplicate-key warnings of the last statement (records skipped); raises
    ChunkRefused naming the first problems if it warned of anything else (or of anything,
    without `accept_duplicates`). SHOW statements do not clear the warnings they show."""
    cur.execute("SHOW COUNT(*) WARNINGS")
    total = int(cur.fetchone()[0])
    if not total:
        return 0
    cur.execute("SHOW WARNINGS")
    shown = cur.fetchall()
    problems = [message for _level, code, message in shown if code != DUPLICATE_KEY or not accept_duplicates]
    if problems:
        raise ChunkRefused("; ".join(problems[:3]))
    if all_shown and total > len(shown):
        raise _WarningsNotAllShown()
    return total


class _Converting:
    """An `rfc4180` object being converted to the escaped form by a thread, which LOAD DATA
    LOCAL reads as it grows (aurora.chunk_file), so the database works while the worker
    converts. `checked()` after the LOAD says whether the whole object converted."""

    def __init__(self, source: Path, target: Path, columns: tuple[str, ...], null_value: str | None, dialect: str):
        target.touch()  # the feeder opens it at once; the converter writes it from its start
        self.chunk = ChunkFile(target, streamed=True)
        self.dialect = dialect
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._convert,
            args=(source, target, columns, null_value),
            name="cdc-sync-firehose-convert",
            daemon=True,
        )
        self._thread.start()

    def _convert(self, source: Path, target: Path, columns: tuple[str, ...], null_value: str | None) -> None:
        try:
            rfc4180_to_escaped(source, target, columns, null_value, written=self.chunk.grew)
        except BaseException as error:  # noqa: BLE001 - handed to the loader by checked()
            self.error = error
        finally:
            self.chunk.finish()

    def wait(self) -> None:
        self._thread.join()

    def checked(self) -> None:
        """Raises ChunkRefused if the object is not CSV of its dialect (what LOAD DATA read
        was cut short there), or the converter's own error."""
        self.wait()
        if isinstance(self.error, DialectError):
            raise ChunkRefused(refusal(self.dialect, self.error))
        if self.error is not None:
            raise self.error


def refusal(dialect: str, error: DialectError) -> str:
    return f"not CSV as source.csv_dialect {dialect} says: {error}"


class AppendTargetMissing(SetupError):
    """The append target table (or one of its columns) does not exist: a setup problem."""


class AuroraAppendLoader(AuroraLoaderBase):
    def _load_file(self, conn: Connection, f: LandedObject, index: int, report: LoadReport) -> None:
        table = self.target.append_table(self.table)
        self._check_target(conn, table)
        with conn.cursor() as cur:  # cheap early answer; the transaction decides (see _claim_content)
            # Firehose delivers at least once, and a repeated delivery gets a new name: objects
            # byte for byte equal (the same ETag, the MD5 of the bytes) are taken as one delivery
            original = self.ledger.loaded_with_same_content(cur, f)
        conn.commit()
        if original is not None:
            return self._repeated_delivery(conn, f, original, report)
        source = self._source(conn, f, index, report)
        if source is None:
            return None
        try:
            rows, skipped = self._append_redoing_lock_waits(conn, f, source, table)
        except _AlreadyLoaded:
            report.already_loaded.append(f.key)
            return self._record_outcome(conn, f, LOADED, self.ledger.chunk_rows(conn, f, 0) or 0)
        except _RepeatedDelivery as repeated:
            return self._repeated_delivery(conn, f, repeated.original, report)
        except BadInput as refused:  # the object cannot be appended as it is: quarantined, the rest goes on
            return self._quarantine(report, f, what_is_wrong(refused), conn)
        finally:
            if isinstance(source, _Converting):
                source.wait()
        if skipped:
            log.warning(
                "%s: %d of %d record(s) of s3://%s/%s are already in %s (unique key %s): repeated deliveries, skipped",
                self.table.qualified_name,
                skipped,
                rows + skipped,
                self.pipeline.source.bucket,
                f.key,
                table,
                ", ".join(self._unique_key(conn, table) or []),
            )
        report.loaded[f.key] = rows  # its outcome row committed with the rows
        return None

    def _append_redoing_lock_waits(
        self, conn: Connection, f: LandedObject, source: str | _Converting, table: str
    ) -> tuple[int, int]:
        """_append, redone when it waited too long for a lock (another load of the same
        content or object still running, `innodb_lock_wait_timeout`) or was picked as a
        deadlock's victim: it rolled back, so redoing it is safe. It then finds the other
        load's ledger rows, or takes over what that load rolled back."""
        import pymysql

        for attempt in range(1, LOCK_RETRIES + 1):
            try:
                try:
                    return self._append(conn, f, source, table, staged=False)
                except _WarningsNotAllShown:  # more than MySQL keeps: redo keyless, where any warning is a refusal
                    return self._append(conn, f, source, table, staged=True)
            except pymysql.err.OperationalError as error:
                if error.args[0] not in (LOCK_WAIT_TIMEOUT, DEADLOCK) or attempt == LOCK_RETRIES:
                    raise
                log.warning(
                    "%s: s3://%s/%s: %s (another load holds its rows); attempt %d of %d, redone",
                    self.table.qualified_name,
                    self.pipeline.source.bucket,
                    f.key,
                    error.args[1],
                    attempt,
                    LOCK_RETRIES,
                )
        raise AssertionError("unreachable")

    def _repeated_delivery(self, conn: Connection, f: LandedObject, original: str, report: LoadReport) -> None:
        log.warning(
            "%s: s3://%s/%s has the same content (ETag %s) as %s, loaded before: a repeated "
            "delivery, not appended again",
            self.table.qualified_name,
            self.pipeline.source.bucket,
            f.key,
            f.etag,
            original,
        )
        report.already_loaded.append(f.key)
        self._record_outcome(conn, f, LOADED, 0, f"repeated delivery of {original}")

    def _claim_content(self, cur: Cursor, f: LandedObject) -> None:
        """Inside the object's transaction: claim its ETag for this table, or raise
        _RepeatedDelivery naming the object that has it. The claim is a ledger row whose key
        is the ETag, so a concurrent load of an equal object waits on it until this one
        commits (then finds it) or rolls back (then claims it itself): any interleaving
        appends one of them. Objects loaded by versions without claims are found by their
        outcome rows, read after the claim is held."""
        import pymysql

        try:
            self.ledger.write_content_claim(cur, f)
        except pymysql.err.IntegrityError as error:
            if error.args[0] != DUPLICATE_KEY:
                raise
            raise _RepeatedDelivery(self.ledger.content_owner(cur, f) or f"an object with ETag {f.etag}") from error
        original = self.ledger.loaded_with_same_content(cur, f)
        if original is not None:
            raise _RepeatedDelivery(original)

    def _append(
        self, conn: Connection, f: LandedObject, source: str | _Converting, table: str, *, staged: bool
    ) -> tuple[int, int]:
        """One transaction: ledger row, `LOAD DATA … IGNORE` into the table, commit. Returns
        (rows appended, records skipped because their unique key is already in the table).

        Only duplicate-key warnings are accepted. If there are more warnings than MySQL keeps
        (`max_error_count`), a bad value could hide among duplicates: `staged` then loads into
        a keyless copy first (where any warning is a refusal) and `INSERT IGNORE`s from it."""
        import pymysql

        columns = list(self.table.columns)
        database = sql.mysql_ident(self.target.database)
        try:
            with conn.cursor() as cur:
                try:
                    self.ledger.write_chunk(cur, f, 0, None, 0)
                except pymysql.err.IntegrityError as error:
                    if error.args[0] == DUPLICATE_KEY:
                        raise _AlreadyLoaded() from error
                    raise
                self._claim_content(cur, f)
                if staged:
                    cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {database}.{sql.mysql_ident(APPEND_STAGE)}")
                    cur.execute(
                        self._render("append_stage_table.sql", stage=APPEND_STAGE, table=table, columns=columns)
                    )
                with nullcontext(source) if isinstance(source, str) else source.chunk.load_path() as path:
                    read = cur.execute(
                        self._render(
                            "load_append.sql",
                            method=self.target.method,
                            source=path,
                            table=APPEND_STAGE if staged else table,
                            columns=columns,
                        )
                    )
                if isinstance(source, _Converting):
                    source.checked()  # before the warnings: a cut-short object warns of its last line
                rows, skipped = read, _refuse_unless_duplicates(cur, accept_duplicates=not staged)
                if staged:
                    rows = cur.execute(
                        self._render("append_from_stage.sql", stage=APPEND_STAGE, table=table, columns=columns)
                    )
                    # the stage has the table's column types: only duplicates are possible here
                    _refuse_unless_duplicates(cur, accept_duplicates=True, all_shown=False)
                    skipped = read - rows
                self.ledger.set_chunk_rows(cur, f, 0, rows)
                self.ledger.write_outcome(cur, f, LOADED, rows)
            conn.commit()
            return rows, skipped
        except BaseException:
            conn.rollback()
            raise

    def _source(self, conn: Connection, f: LandedObject, index: int, report: LoadReport) -> str | _Converting | None:
        """What LOAD DATA reads: the object itself for aurora_s3 (nothing passes through the
        worker) when it is in the `backslash_escaped` dialect and not gzip-compressed; else a
        local, uncompressed copy, an `rfc4180` object converted to that dialect
        (firehose.dialects), uploaded to the staging prefix for aurora_s3. GZIP is found
        by its first bytes too: a delivery stream with a custom FileExtension (say `.csv`)
        does not end its keys in `.gz`."""
        not_csv = _NOT_CSV.get(PurePosixPath(f.key).suffix.lower())
        if not_csv:
            self._quarantine(
                report,
                f,
                f"{not_csv}, not CSV text: the append load reads the transform's CSV "
                "lines, uncompressed or GZIP (set the delivery stream's CompressionFormat to "
                "UNCOMPRESSED or GZIP, without record format conversion)",
                conn,
            )
            return None
        compressed = f.key.endswith(".gz")
        as_is = self.pipeline.source.csv_dialect == BACKSLASH_ESCAPED  # what LOAD DATA reads; else converted
        if self.target.method == "aurora_s3" and as_is and not compressed and not self._starts_as_gzip_in_s3(f):
            return f"s3://{self.pipeline.source.bucket}/{f.key}"
        path = self.workdir / f"firehose-{index:06d}.csv"
        if not self._fetch(f, path, report, conn):
            return None
        with path.open("rb") as head:
            compressed = compressed or head.read(2) == GZIP_MAGIC
        if compressed:
            plain = path.with_suffix(".plain.csv")
            try:
                with gzip.open(path, "rb") as packed, plain.open("wb") as out:
                    shutil.copyfileobj(packed, out, 8 * 1024 * 1024)
            except (OSError, EOFError) as error:
                self._quarantine(report, f, f"not a readable gzip file ({error})", conn)
                return None
            path = plain
        if not as_is:
            converted = path.with_suffix(".escaped.csv")
            if self.target.method != "aurora_s3":  # LOAD DATA LOCAL reads it while it is written
                return _Converting(
                    path,
                    converted,
                    self.table.columns,
                    self.pipeline.source.csv_null_value,
                    self.pipeline.source.csv_dialect,
                )
            try:
                rfc4180_to_escaped(path, converted, self.table.columns, self.pipeline.source.csv_null_value)
            except DialectError as error:
                self._quarantine(report, f, refusal(self.pipeline.source.csv_dialect, error), conn)
                return None
            path = converted
        if self.target.method == "aurora_s3":
            key = f"{self.target.staging_prefix.rstrip('/')}/{self.pipeline.name}/{f.key}.csv"
            self.s3.upload_file(str(path), self.pipeline.source.bucket, key)
            return f"s3://{self.pipeline.source.bucket}/{key}"
        return str(path)

    def _starts_as_gzip_in_s3(self, f: LandedObject) -> bool:
        """The object's first two bytes are GZIP's magic number (one ranged GET)."""
        try:
            head = self.s3.get_object(Bucket=self.pipeline.source.bucket, Key=f.key, Range="bytes=0-1", IfMatch=f.etag)[
                "Body"
            ].read()
        except ClientError:  # empty (no range to read), gone or changed: the load reports it
            return False
        return head == GZIP_MAGIC

    def _unique_key(self, conn: Connection, table: str) -> list[str] | None:
        """The columns of a unique index of the table made only of loaded columns (an
        AUTO_INCREMENT id the load does not fill does not count), or None."""
        with conn.cursor() as cur:
            cur.execute(
                "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (self.target.database, table),
            )
            indexes: dict[str, list[str]] = {}
            for index_name, column in cur.fetchall():
                indexes.setdefault(index_name, []).append(column)
        conn.commit()
        loaded = {c.lower() for c in self.table.columns}
        return next((cols for cols in indexes.values() if {c.lower() for c in cols} <= loaded), None)

    def _check_target(self, conn: Connection, table: str) -> None:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (self.target.database, table),
            )
            existing = {row[0].lower() for row in cur.fetchall()}
        conn.commit()
        if not existing:
            raise AppendTargetMissing(
                f"{self.table.qualified_name}: table {self.target.database}.{table} does not exist; create it with "
                f"the columns {', '.join(self.table.columns)} (append mode never creates tables)"
            )
        missing = [c for c in self.table.columns if c.lower() not in existing]
        if missing:
            raise AppendTargetMissing(
                f"{self.table.qualified_name}: table {self.target.database}.{table} has no column(s) {', '.join(missing)}"
            )
        sql.check_identifier(table, "table")
