"""Repair drift through the normal path: re-emit the source rows of the differing keys as a
DMS-style change file in the table's landing folder. The pipeline loads it like any other
change file into every target (ledgers, positions, order independence all apply), and
the next reconciliation checks the result.

Rows that exist in the source become updates; keys the source no longer has become
deletes — a key is looked up by the source database's own comparison (its collation), so a
key the source holds under another spelling ('abc ' for 'abc' with PAD SPACE) re-emits that
row and never deletes it. Tables keyed by approximate numbers (FLOAT/DOUBLE) are refused. Their commit time is the source database's clock, read in the same snapshot as
the rows, so a change committed later (and delivered by DMS later) still wins.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.mysql_catalog import column_types
from cdc_sync.reconcile.dialects import mysql_kind
from cdc_sync.reconcile.diff import APPROXIMATE_KEY, Comparison, ReconcileError
from cdc_sync.reconcile.sides import key_token, mysql_param
from cdc_sync.sources.dms.csv_files import csv_layout
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, cdc_file_name, write_dms_file
from cdc_sync.sql import mysql_ident

log = logging.getLogger(__name__)

_CHUNK = 500


class RepairKey(dict):
    """A primary key to repair (column → value) and the commit time its repair rows need
    (`stamp`: just after what the targets hold for it; None: the source's clock)."""

    stamp: datetime | None = None


def keys_to_repair(comparisons: Iterable[Comparison]) -> list[dict]:
    """The keys that drifted in one table's comparisons (one per target), each once, with the
    latest stamp any target needs."""
    keys: dict[tuple, RepairKey] = {}
    for c in comparisons:
        for d in c.differences:
            if d.lag:
                continue
            key = keys.setdefault(tuple(d.key.items()), RepairKey(d.key))
            if d.stamp is not None and (key.stamp is None or d.stamp > key.stamp):
                key.stamp = d.stamp
    return list(keys.values())


def repair_file_name(when: datetime, extension: str = "parquet") -> str:
    """A DMS CDC name for `when` with a suffix (dms.layout.REPAIR_SUFFIX): never a DMS file's name."""
    return cdc_file_name(when, extension).removesuffix(f".{extension}") + f"-repair-{secrets.token_hex(4)}.{extension}"


def emit_repair_file(
    pipeline: Pipeline, table: TableSpec, source_connect: Callable, s3_client, keys: list[dict]
) -> str | None:
    """Write one change file for `keys` (dicts of primary-key values); returns its S3 key."""
    if not keys:
        return None
    key_columns = list(table.primary_key)
    layout = csv_layout(pipeline.source, table)
    conn = source_connect()
    try:
        source_types = column_types(conn, table.schema, table.name)
        columns = [(name, arrow_type_for_mysql(t)) for name, t in source_types]
        for name, column_type in source_types:
            if name in key_columns and mysql_kind(column_type) == "float":
                raise ReconcileError(APPROXIMATE_KEY.format(table=table.qualified_name, column=name, type=column_type))
        if layout is not None and columns:  # the loaders read CSV by the declared columns, in their order
            columns = list(layout.columns)
        with conn.cursor() as cur:
            cur.execute("SET SESSION time_zone = '+00:00'")
            if not columns:
                raise ValueError(f"{table.qualified_name}: source table not found; nothing to repair from")
            names = [n for n, _ in columns]
            relation = f"{mysql_ident(table.schema)}.{mysql_ident(table.name)}"
            select = f"SELECT {', '.join(mysql_ident(n) for n in names)} FROM {relation} WHERE "
            match = "(" + " AND ".join(f"{mysql_ident(c)} = %s" for c in key_columns) + ")"
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SELECT UTC_TIMESTAMP(6)")
            now = cur.fetchone()[0]

            def rows_of(chunk: list[dict]) -> list[dict]:
                cur.execute(
                    select + " OR ".join(match for _ in chunk), [mysql_param(k[c]) for k in chunk for c in key_columns]
                )
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

            found: dict[tuple, dict] = {}
            for start in range(0, len(keys), _CHUNK):
                for record in rows_of(keys[start : start + _CHUNK]):
                    found[tuple(key_token(record[c]) for c in key_columns)] = record
            # a key whose text the source holds under another spelling its collation counts as equal
            # ('abc ' for 'abc' with PAD SPACE, 'ABC' for 'abc' case-insensitively): looked up alone
            # by the database's own comparison; only a key the source lacks there becomes a delete
            equal_under_collation: dict[tuple, list[dict]] = {}
            for key in keys:
                token = tuple(key_token(key[c]) for c in key_columns)
                if token not in found and token not in equal_under_collation:
                    equal_under_collation[token] = rows_of([key])
        conn.commit()
    finally:
        conn.close()

    commit_ts = now.replace(tzinfo=UTC)
    changes = []
    emitted: set[tuple] = set()
    for key in keys:
        # stamped just after what the targets hold: the source's clock would move their watermark
        # past changes committed earlier and still in flight, which would then read as drift
        stamp = getattr(key, "stamp", None) or commit_ts
        token = tuple(key_token(key[c]) for c in key_columns)
        rows = [found[token]] if token in found else equal_under_collation.get(token, [])
        if not rows:
            if token not in emitted:
                changes.append(Change("D", dict(key), stamp))
                emitted.add(token)
            continue
        for row in rows:
            row_token = tuple(key_token(row[c]) for c in key_columns)
            if row_token not in emitted:
                changes.append(Change("U", row, stamp))
                emitted.add(row_token)
    body = write_dms_file(
        columns,
        changes,
        timestamp_column=table.commit_timestamp_column,
        include_op=True,
        csv=layout.settings if layout else None,
    )
    object_key = pipeline.source.table_prefix(table) + repair_file_name(commit_ts, "csv" if layout else "parquet")
    s3_client.put_object(Bucket=pipeline.source.bucket, Key=object_key, Body=body)
    log.info(
        "%s: repair file s3://%s/%s (%d update(s), %d delete(s))",
        table.qualified_name,
        pipeline.source.bucket,
        object_key,
        sum(c.op == "U" for c in changes),
        sum(c.op == "D" for c in changes),
    )
    return object_key
