"""A local stand-in for AWS DMS: a MySQL/MariaDB source whose changes land on S3 as DMS files.

Changes go to the source database for real; each one is also recorded with its commit
time and row image, and `flush()` writes them as one DMS CDC file (Op, commit timestamp
column, typed columns) under `<prefix>/<schema>/<table>/`. `full_load()` writes the
table as DMS full-load files. Both use cdc_sync.sources.dms.writer, the project's DMS format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from cdc_sync.config import DmsCsvSettings
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, cdc_file_name, load_file_name, write_dms_file


@dataclass
class SourceTable:
    schema: str
    name: str
    primary_key: tuple[str, ...]
    columns: list[tuple[str, pa.DataType]]
    column_declarations: list[str]  # "name COLUMN_TYPE": what a DMS CSV pipeline declares as its columns
    pending: list[Change] = field(default_factory=list)


class DmsStandIn:
    def __init__(
        self,
        mysql_conn,
        s3_client,
        bucket: str,
        prefix: str = "dms",
        timestamp_column: str | None = "cdc_commit_ts",
        file_format: str = "parquet",
        csv_settings: DmsCsvSettings | None = None,
    ):
        self.file_format = file_format  # DataFormat of the endpoint: parquet or csv
        self.csv_settings = csv_settings or DmsCsvSettings()
        self.conn = mysql_conn
        self.s3 = s3_client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.timestamp_column = timestamp_column
        self.tables: dict[str, SourceTable] = {}
        self._clock = datetime(2026, 11, 23, 7, 0, 0, tzinfo=UTC)
        with self.conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")

    # ----------------------------------------------------------------- source
    def track(self, schema: str, name: str) -> SourceTable:
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                (schema, name),
            )
            rows = cur.fetchall()
        columns = [(r[0], arrow_type_for_mysql(r[1])) for r in rows]
        primary_key = tuple(r[0] for r in rows if r[2] == "PRI")
        table = SourceTable(schema, name, primary_key, columns, [f"{r[0]} {r[1]}" for r in rows])
        self.tables[f"{schema}.{name}"] = table
        return table

    def tick(self, seconds: float = 1.0) -> datetime:
        """Advance the simulated commit clock (microsecond resolution, strictly increasing)."""
        self._clock += timedelta(seconds=seconds)
        return self._clock

    def _select(self, table: SourceTable, where: dict | None = None) -> list[dict]:
        names = [c for c, _ in table.columns]
        sql = f"SELECT {', '.join(f'`{c}`' for c in names)} FROM `{table.schema}`.`{table.name}`"
        args: tuple = ()
        if where:
            sql += " WHERE " + " AND ".join(f"`{k}` = %s" for k in where)
            args = tuple(where.values())
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return [dict(zip(names, row, strict=False)) for row in cur.fetchall()]

    def insert(self, qualified: str, row: dict) -> None:
        table = self.tables[qualified]
        cols = list(row)
        with self.conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO `{table.schema}`.`{table.name}` ({', '.join(f'`{c}`' for c in cols)}) "
                f"VALUES ({', '.join(['%s'] * len(cols))})",
                tuple(row.values()),
            )
        image = self._select(table, {k: row[k] for k in table.primary_key})[0]
        table.pending.append(Change("I", image, self.tick(0.001)))

    def update(self, qualified: str, key: dict, values: dict) -> None:
        table = self.tables[qualified]
        with self.conn.cursor() as cur:
            cur.execute(
                f"UPDATE `{table.schema}`.`{table.name}` SET {', '.join(f'`{c}` = %s' for c in values)} "
                f"WHERE {' AND '.join(f'`{k}` = %s' for k in key)}",
                (*values.values(), *key.values()),
            )
        image = self._select(table, key)[0]
        table.pending.append(Change("U", image, self.tick(0.001)))

    def delete(self, qualified: str, key: dict) -> None:
        table = self.tables[qualified]
        before = self._select(table, key)
        with self.conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM `{table.schema}`.`{table.name}` WHERE {' AND '.join(f'`{k}` = %s' for k in key)}",
                tuple(key.values()),
            )
        table.pending.append(Change("D", before[0] if before else dict(key), self.tick(0.001)))

    def source_rows(self, qualified: str) -> list[dict]:
        return self._select(self.tables[qualified])

    # ---------------------------------------------------------------- landing
    def table_prefix(self, table: SourceTable) -> str:
        return f"{self.prefix}/{table.schema}/{table.name}/" if self.prefix else f"{table.schema}/{table.name}/"

    def put(self, key: str, body: bytes) -> dict:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return {"key": key, "body": body}

    def full_load(
        self,
        qualified: str,
        rows_per_file: int = 1000,
        transfer_time: datetime | None = None,
        changes_during_load: bool = False,
    ) -> list[str]:
        """DMS full load: LOAD files stamped with the transfer time (not the commit time).

        Changes recorded so far are part of the snapshot and dropped, unless
        `changes_during_load`: then they stay cached and land as CDC afterwards, as DMS
        does with changes committed while a table is being loaded."""
        table = self.tables[qualified]
        if not changes_during_load:
            table.pending = []
        rows = self._select(table)
        when = transfer_time or self.tick()
        keys = []
        for number, start in enumerate(range(0, max(len(rows), 1), rows_per_file), start=1):
            chunk = [Change("I", r, when) for r in rows[start : start + rows_per_file]]
            body = self._file_body(table, chunk, include_op=False)
            key = self.table_prefix(table) + load_file_name(number, self.file_format)
            self.put(key, body)
            keys.append(key)
        return keys

    def flush(self, qualified: str, file_time: datetime | None = None) -> str | None:
        """Write the recorded changes of a table as one CDC file; returns its key."""
        table = self.tables[qualified]
        if not table.pending:
            return None
        body = self.cdc_file_body(qualified, table.pending)
        key = self.table_prefix(table) + cdc_file_name(file_time or self.tick(), self.file_format)
        self.put(key, body)
        table.pending = []
        return key

    def cdc_file_body(self, qualified: str, changes: list[Change]) -> bytes:
        return self._file_body(self.tables[qualified], changes, include_op=True)

    def _file_body(self, table: SourceTable, changes: list[Change], include_op: bool) -> bytes:
        return write_dms_file(
            table.columns,
            changes,
            timestamp_column=self.timestamp_column,
            include_op=include_op,
            csv=self.csv_settings if self.file_format == "csv" else None,
        )
