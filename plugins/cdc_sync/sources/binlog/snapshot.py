"""A consistent snapshot of captured tables, tied to the binlog position it saw.

One connection opens a consistent-snapshot transaction and reads the binlog position of that
moment (server.snapshot_position); every table is then read inside it, as an unbuffered
stream in primary-key order, `chunk_rows` rows a file, so memory holds one chunk whatever the
table's size. The stream continues from that position: a change is either in the snapshot or
read from the binlog, never both and never neither.

A first start writes full-load files (`LOAD00000001.parquet` …, no `Op`), which sort before
every change. A re-snapshot writes the rows as inserts in CDC-named files whose commit time is
the snapshot's (never before the last change already landed), so they win over every earlier
change of the table and lose to every later one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from cdc_sync.config import TableSpec
from cdc_sync.errors import SetupError
from cdc_sync.mysql_catalog import catalog_columns
from cdc_sync.sources.binlog.columns import dms_value
from cdc_sync.sources.binlog.server import Position, ServerInfo, snapshot_position
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, load_file_name
from cdc_sync.sql import mysql_ident

log = logging.getLogger(__name__)


def table_columns(conn, table: TableSpec) -> list:
    """(name, Arrow type) of the table's stored columns, checked against its declared key."""
    found = catalog_columns(conn, table.schema, [table.name]).get(table.name)
    if not found:
        raise SetupError(f"{table.qualified_name}: no such table on the source server (or no SELECT on it)")
    columns = [(c.name, arrow_type_for_mysql(c.column_type)) for c in found]
    names = {name for name, _ in columns}
    missing = [k for k in table.primary_key if k not in names]
    if missing:
        raise SetupError(f"{table.qualified_name}: primary key column(s) {', '.join(missing)} not in the source table")
    return columns


def take(
    spec,
    connect: Callable,
    info: ServerInfo,
    tables,
    landing,
    report,
    *,
    full_load: bool,
    floor: datetime | None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> tuple[Position, datetime]:
    """Snapshot `tables` into `landing`; returns the binlog position it is tied to and its commit time."""
    import pymysql

    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMP values as UTC wall time
            position = snapshot_position(cur, info)
        began = now()
        commit_ts = max(began, floor) if floor else began
        for table in tables:
            columns = table_columns(conn, table)
            select = ", ".join(mysql_ident(name) for name, _ in columns)
            order = ", ".join(mysql_ident(k) for k in table.primary_key)
            sql = f"SELECT {select} FROM {mysql_ident(table.schema)}.{mysql_ident(table.name)} ORDER BY {order}"
            number, rows_read = 0, 0
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(sql)
                while rows := cur.fetchmany(spec.chunk_rows):
                    number += 1
                    name = load_file_name(number) if full_load else None
                    _key, writer = landing.new_file(table, columns, name=name, include_op=not full_load)
                    changes = [
                        Change(
                            op="I",
                            row={n: dms_value(v, t) for (n, t), v in zip(columns, row, strict=True)},
                            commit_ts=commit_ts,
                        )
                        for row in rows
                    ]
                    writer.write(changes)
                    writer.close({"cdc_sync.binlog.snapshot": json.dumps(position.to_dict(), sort_keys=True)})
                    rows_read += len(rows)
            report.snapshot_tables.append(table.qualified_name)
            report.snapshot_rows += rows_read
            log.info(
                "%s: snapshot of %d row(s) in %d file(s), tied to %s:%s (GTID %s)",
                table.qualified_name,
                rows_read,
                number,
                position.file,
                position.pos,
                position.gtid,
            )
        conn.commit()
    finally:
        conn.close()
    return position, commit_ts
