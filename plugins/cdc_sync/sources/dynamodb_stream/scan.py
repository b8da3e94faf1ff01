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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from cdc_sync.config import Pipeline, Reconcile
from cdc_sync.errors import SetupError
from cdc_sync.reconcile.diff import Comparison, Settings, compare
from cdc_sync.reconcile.sides import MySqlSide
from cdc_sync.sources.column_types import column_type
from cdc_sync.sources.dynamodb_stream.capture import CaptureReport, pipeline_capture, read_checkpoint
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


def connection_database(connect: Callable) -> str:
    """The database a MySQL connection opens in (the scratch table's home in the reconcile DAG)."""
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT DATABASE()")
            (name,) = cur.fetchone()
    finally:
        conn.close()
    if not name:
        raise SetupError("the reconcile connection names no database (its schema): the Scan's scratch table needs one")
    return name


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
    run_id: str | None = None,
) -> list[Comparison]:
    """Compare each target's view with a fresh Scan of the DynamoDB table; with `run_id`,
    store each result in the targets' results tables as the reconcile DAG does."""
    from cdc_sync.reconcile.run import hash_function_for, store_result, target_side, targets_of

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
        if run_id is not None:
            store_result(
                with_reconcile, comparison, run_id, bigquery_client=bigquery_client, aurora_connect=aurora_connect
            )
        out.append(comparison)
    return out


def resnapshot(pipeline: Pipeline, streams, dynamodb, s3, *, now=None, sleep=time.sleep) -> CaptureReport:
    """Land the whole table again, tied to the stream position it starts from.

    For lost history (or a first load of an existing table): every shard is read to its end
    without writing (that end is the new checkpoint), then a parallel Scan writes every item
    as an insert, in a CDC-named file so that it sorts after every earlier change of the
    table. Its commit time is when the re-snapshot began (T0), before the stream's end was
    read: every change the checkpoint already covers is older, so the Scan's copy wins over
    it. The Scan starts only after the next whole second past T0, so a change made after the
    Scan read its item has a commit time (DynamoDB gives whole seconds) past T0 and, read by
    the next capture, wins over the Scan's copy. The filter
    criteria apply as if each item were inserted. Items deleted while history was lost are
    not in the Scan: reconcile (reconcile_with_scan) names them."""
    from cdc_sync.sources.dms.writer import Change
    from cdc_sync.sources.dynamodb_stream.capture import (
        Checkpoint,
        describe_shards,
        land,
        read_shard_to_end,
        reading_order,
        stream_arn,
        write_checkpoint,
    )

    now = now or (lambda: datetime.now(UTC))
    spec = pipeline_capture(pipeline)
    began = now()
    arn = stream_arn(streams, dynamodb, spec.stream)
    view_type, shards = describe_shards(streams, arn)
    spec.columns.check_view_type(view_type, arn)
    positions: dict[str, str | None] = {}
    finished: list[str] = []
    for shard in reading_order(shards, set()):
        if read_shard_to_end(streams, arn, shard["ShardId"], positions, spec.columns.table):
            finished.append(shard["ShardId"])
    table_name = (
        spec.stream.split(":table/", 1)[1].split("/stream/", 1)[0] if spec.stream.startswith("arn:") else spec.stream
    )
    next_second = began.replace(microsecond=0) + timedelta(seconds=1)
    while (left := (next_second - now()).total_seconds()) > 0:
        sleep(left)  # a bound, not a hope: the Scan must start in a later second than T0
    report = CaptureReport()
    changes = []
    for item in scan_items(dynamodb, table_name):
        report.records += 1
        keys = {k: item[k] for k in spec.columns.key if k in item}
        if not spec.filters.matches({"eventName": "INSERT", "dynamodb": {"Keys": keys, "NewImage": item}}):
            report.filtered_out += 1
            continue
        changes.append(Change(op="I", row=spec.columns.row(item, f"scan of {table_name}"), commit_ts=began))
    old = read_checkpoint(s3, spec.bucket, spec.checkpoint_key)
    checkpoint = Checkpoint({"last_file": old.last_file})  # the old positions and stream are replaced
    write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    return land(spec, s3, checkpoint, arn, positions, sorted(finished), changes, report, now)
