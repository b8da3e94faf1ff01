"""Append delivered Firehose objects to an existing Aurora table, exactly once.

Per object, one transaction: ledger row → `LOAD DATA` into the table (from S3 itself with
`aurora_s3`; from the worker's disk with `local_infile`) → COMMIT. LOAD DATA into InnoDB is
transactional, so a staging table would only copy the rows twice: the ledger row and the
rows commit together or not at all, and a retry finds the ledger row and skips. Firehose
bounds an object by its buffer size (at most 128 MiB), which bounds the transaction.
Any warning (a value that does not fit, a line with too few or too many fields) rolls the
object back and quarantines it with MySQL's message, which names the row.
"""

from __future__ import annotations

import gzip
import shutil

from cdc_sync import sql
from cdc_sync.aurora.loader import DUPLICATE_KEY, AuroraLoaderBase, object_hash
from cdc_sync.dms.layout import DmsFile
from cdc_sync.landed import LoadReport


class AppendTargetMissing(RuntimeError):
    """The append target table (or one of its columns) does not exist: a setup problem."""


class AuroraAppendLoader(AuroraLoaderBase):
    def _load_file(self, conn, f: DmsFile, index: int, report: LoadReport) -> None:
        import pymysql

        table = self.target.append_table(self.table)
        self._check_target(conn, table)
        source = self._source(conn, f, index, report)
        if source is None:
            return None
        try:
            with conn.cursor() as cur:
                try:
                    cur.execute(
                        f"INSERT INTO {self._ledger()} (pipeline, table_name, object_hash, chunk, object_key, etag, "
                        "status, row_count, loaded_at) VALUES (%s, %s, %s, 0, %s, %s, 'applied', 0, UTC_TIMESTAMP(6))",
                        (self.pipeline.name, self.table.qualified_name, object_hash(f), f.key, f.etag),
                    )
                except pymysql.err.IntegrityError as error:
                    if error.args[0] == DUPLICATE_KEY:
                        conn.rollback()
                        report.already_loaded.append(f.key)
                        return self._record_outcome(conn, f, "loaded", 0)
                    raise
                rows = cur.execute(self._render(
                    "load_append.sql", method=self.target.method, source=source, table=table,
                    columns=list(self.table.columns),
                ))
                cur.execute("SHOW WARNINGS LIMIT 3")
                warnings = [message for _level, _code, message in cur.fetchall()]
                if warnings:
                    conn.rollback()
                    return self._quarantine(report, f, "; ".join(warnings), conn)
                cur.execute(f"UPDATE {self._ledger()} SET row_count = %s WHERE pipeline = %s AND table_name = %s "
                            "AND object_hash = %s AND chunk = 0",
                            (rows, self.pipeline.name, self.table.qualified_name, object_hash(f)))
            conn.commit()
        except pymysql.err.MySQLError:
            conn.rollback()
            raise
        report.loaded[f.key] = rows
        self._record_outcome(conn, f, "loaded", rows)
        return None

    def _source(self, conn, f: DmsFile, index: int, report: LoadReport) -> str | None:
        """What LOAD DATA reads: the object itself for aurora_s3 (nothing passes through the
        worker) unless it is gzip-compressed; else a local, uncompressed copy."""
        compressed = f.key.endswith(".gz")
        if self.target.method == "aurora_s3" and not compressed:
            return f"s3://{self.pipeline.source.bucket}/{f.key}"
        path = self.workdir / f"firehose-{index:06d}.csv"
        if not self._download(conn, f, path, report):
            return None
        if compressed:
            plain = path.with_suffix(".plain.csv")
            try:
                with gzip.open(path, "rb") as packed, plain.open("wb") as out:
                    shutil.copyfileobj(packed, out, 8 * 1024 * 1024)
            except (OSError, EOFError) as error:
                self._quarantine(report, f, f"not a readable gzip file ({error})", conn)
                return None
            path = plain
        if self.target.method == "aurora_s3":
            key = f"{self.target.staging_prefix.rstrip('/')}/{self.pipeline.name}/{f.key}.csv"
            self.s3.upload_file(str(path), self.pipeline.source.bucket, key)
            return f"s3://{self.pipeline.source.bucket}/{key}"
        return str(path)

    def _check_target(self, conn, table: str) -> None:
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
