"""Reconcile a dynamodb_stream pipeline's targets with the DynamoDB table itself.

The table is read with a parallel `Scan` (segments in threads, each paged by
LastEvaluatedKey), each item turned into its row exactly as the capture turns a NewImage into
one, and the rows put into a scratch table of a MySQL database (the types the Aurora loader
gives the same columns). That table is then the source side of the usual reconciliation
(reconcile.diff.compare) against the Aurora view and the BigQuery view: checksums inside each
database, bisection, the differing keys named.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from cdc_sync.config import Pipeline, Reconcile
from cdc_sync.errors import SetupError
from cdc_sync.reconcile.diff import Comparison, Settings, compare
from cdc_sync.reconcile.sides import MySqlSide
from cdc_sync.sources.column_types import column_type
from cdc_sync.sources.dynamodb_stream.capture import pipeline_capture
from cdc_sync.sql import mysql_ident
from cdc_sync.targets.aurora.schema import mysql_type

log = logging.getLogger(__name__)

INSERT_ROWS = 1000


def scan_items(dynamodb, table_name: str, segments: int = 4) -> Iterator[dict]:
    """Every item of the table (DynamoDB JSON), `segments` parallel Scan segments."""

    def segment(number: int) -> list[dict]:
        items, start = [], None
        while True:
            kwargs = {"TableName": table_name, "Segment": number, "TotalSegments": segments, "ConsistentRead": True}
            page = dynamodb.scan(**kwargs, **({"ExclusiveStartKey": start} if start else {}))
            items += page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return items

    with ThreadPoolExecutor(segments) as pool:
        for items in pool.map(segment, range(segments)):
            yield from items


def scratch_relation(pipeline: Pipeline) -> str:
    """`_cdc_sync_scan_<schema>_<table>`: where the Scan's rows are put (checked as a plain name)."""
    name = f"_cdc_sync_scan_{pipeline.tables[0].target_name}"
    if len(name) > 64:
        raise SetupError(f"pipeline {pipeline.name!r}: scratch table {name!r} is longer than MySQL's 64 characters")
    return name


def load_scan(pipeline: Pipeline, dynamodb, connect: Callable, database: str) -> int:
    """Put the table's items, as rows, into the scratch table (recreated); returns the count."""
    spec = pipeline_capture(pipeline)
    if spec.stream.startswith("arn:"):
        table_name = spec.stream.split(":table/", 1)[1].split("/stream/", 1)[0]
    else:
        table_name = spec.stream
    columns = spec.columns
    definitions = []
    for name, arrow in columns.arrow_columns:
        kind = column_type(arrow)
        assert kind is not None, f"{name}: no column type for {arrow}"
        definitions.append(f"{mysql_ident(name)} {mysql_type(kind, name in columns.key)}")
    relation = f"{mysql_ident(database)}.{mysql_ident(scratch_relation(pipeline))}"
    names = [name for name, _ in columns.arrow_columns]
    conn = connect()
    count = 0
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {relation}")
            key = ", ".join(mysql_ident(k) for k in columns.key)
            cur.execute(
                f"CREATE TABLE {relation} ({', '.join(definitions)}, PRIMARY KEY ({key})) DEFAULT CHARSET = utf8mb4"
            )
            insert = (
                f"INSERT INTO {relation} ({', '.join(mysql_ident(n) for n in names)}) "
                f"VALUES ({', '.join(['%s'] * len(names))})"
            )
            batch: list[tuple] = []
            for item in scan_items(dynamodb, table_name):
                row = columns.row(item, f"scan of {table_name}")
                batch.append(tuple(row.get(n) for n in names))
                if len(batch) >= INSERT_ROWS:
                    cur.executemany(insert, batch)
                    count, batch = count + len(batch), []
            if batch:
                cur.executemany(insert, batch)
                count += len(batch)
        conn.commit()
    finally:
        conn.close()
    log.info("%s: %d item(s) of DynamoDB table %s scanned into %s", columns.table, count, table_name, relation)
    return count


def reconcile_with_scan(
    pipeline: Pipeline,
    dynamodb,
    scratch_connect: Callable,
    scratch_database: str,
    *,
    bigquery_client=None,
    aurora_connect: Callable | None = None,
    settings: Settings | None = None,
) -> list[Comparison]:
    """Compare each target's view with a fresh Scan of the DynamoDB table."""
    from cdc_sync.reconcile.run import hash_function_for, target_side, targets_of

    load_scan(pipeline, dynamodb, scratch_connect, scratch_database)
    table = pipeline.tables[0]
    checked = pipeline.reconcile or Reconcile(source_conn_id="dynamodb_scan")
    with_reconcile = dataclasses.replace(pipeline, reconcile=checked)
    out = []
    for target in targets_of(pipeline):
        source = MySqlSide(
            "source",
            scratch_connect,
            scratch_database,
            scratch_relation(pipeline),
            hash_function=hash_function_for(checked, target),
        )
        other = target_side(
            with_reconcile, table, target, bigquery_client=bigquery_client, aurora_connect=aurora_connect
        )
        try:
            comparison = compare(
                table.qualified_name,
                source,
                other,
                list(table.primary_key),
                settings=settings or Settings(recheck_seconds=0),
                exclude={table.commit_timestamp_column or "cdc_commit_ts"},
            )
        finally:
            source.close()
            other.close()
        log.info("%s", comparison.summary())
        out.append(comparison)
    return out
