"""Repair drift through the normal path: re-emit the source rows of the differing keys as a
DMS-style change file in the table's landing folder. The pipeline loads it like any other
change file into every target (ledgers, positions, order independence all apply), and
the next reconciliation checks the result.

Rows that exist in the source become updates; keys the source no longer has become
deletes. Their commit time is the source database's clock, read in the same snapshot as
the rows, so a change committed later (and delivered by DMS later) still wins.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.dms.csv_files import csv_layout
from cdc_sync.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.dms.writer import Change, cdc_file_name, write_dms_file
from cdc_sync.mysql_catalog import column_types
from cdc_sync.reconcile.diff import Comparison
from cdc_sync.reconcile.sides import key_token, mysql_param
from cdc_sync.sql import mysql_ident

_CHUNK = 500


def keys_to_repair(comparisons: Iterable[Comparison]) -> list[dict]:
    """The keys that drifted in one table's comparisons (one per target), each once."""
    keys = {tuple(k.items()): k for c in comparisons for k in c.drift_keys()}
    return list(keys.values())


def repair_file_name(when: datetime, extension: str = "parquet") -> str:
    """A DMS CDC name for `when` with a suffix (dms.layout.REPAIR_SUFFIX): never a DMS file's name."""
    return cdc_file_name(when, extension).removesuffix(f".{extension}") + f"-repair-{secrets.token_hex(4)}.{extension}"


def emit_repair_file(pipeline: Pipeline, table: TableSpec, source_connect: Callable, s3_client,
                     keys: list[dict]) -> str | None:
    """Write one change file for `keys` (dicts of primary-key values); returns its S3 key."""
    if not keys:
        return None
    key_columns = list(table.primary_key)
    layout = csv_layout(pipeline.source, table)
    conn = source_connect()
    try:
        columns = [(name, arrow_type_for_mysql(t)) for name, t in column_types(conn, table.schema, table.name)]
        if layout is not None and columns:  # the loaders read CSV by the declared columns, in their order
            columns = list(layout.columns)
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            if not columns:
                raise ValueError(f"{table.qualified_name}: source table not found; nothing to repair from")
            names = [n for n, _ in columns]
            relation = f"{mysql_ident(table.schema)}.{mysql_ident(table.name)}"
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            now = cur.fetchone()[0]
            found: dict[tuple, dict] = {}
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start:start + _CHUNK]
                where = " OR ".join("(" + " AND ".join(f"{mysql_ident(c)} = %s" for c in key_columns) + ")" for _ in chunk)
                params = [mysql_param(k[c]) for k in chunk for c in key_columns]
                cur.execute(f"SELECT {', '.join(mysql_ident(n) for n in names)} FROM {relation} WHERE {where}", params)
                for row in cur.fetchall():
                    record = dict(zip(names, row, strict=True))
                    found[tuple(key_token(record[c]) for c in key_columns)] = record
        conn.commit()
    finally:
        conn.close()

    commit_ts = now.replace(tzinfo=UTC)
    changes = []
    for key in keys:
        row = found.get(tuple(key_token(key[c]) for c in key_columns))
        changes.append(Change("U", row, commit_ts) if row is not None else Change("D", dict(key), commit_ts))
    body = write_dms_file(columns, changes, timestamp_column=table.commit_timestamp_column, include_op=True,
                          csv=layout.settings if layout else None)
    object_key = pipeline.source.table_prefix(table) + repair_file_name(commit_ts, "csv" if layout else "parquet")
    s3_client.put_object(Bucket=pipeline.source.bucket, Key=object_key, Body=body)
    print(f"{table.qualified_name}: repair file s3://{pipeline.source.bucket}/{object_key} "
          f"({sum(c.op == 'U' for c in changes)} update(s), {sum(c.op == 'D' for c in changes)} delete(s))")
    return object_key
