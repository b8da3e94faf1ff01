"""Reconciliation from a shell, with the same Airflow connections the DAGs use.
(Not `__main__.py`: Airflow imports every file of the plugins folder by its stem, and a
file named `__main__` would run its main block inside every Airflow command.)

    python -m cdc_sync.reconcile.cli compare --pipeline shop --table shop.customers
    python -m cdc_sync.reconcile.cli repair --pipeline shop --table shop.customers --key '{"id": 3}'
    python -m cdc_sync.reconcile.cli repair --pipeline shop --table shop.customers --from 100 --to 200

`repair` writes one change file with the source rows of the keys (or of every source row
whose leading key is in [from, to]) into the table's landing folder; the pipeline's next
run loads it into every target. Keys the source no longer has become deletes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from cdc_sync import connections
from cdc_sync.config import TableSpec, get_pipeline
from cdc_sync.connections import Connect
from cdc_sync.sql import mysql_ident

log = logging.getLogger(__name__)


def _keys_in_range(table: TableSpec, connect: Connect, low: int, high: int) -> list[dict]:
    """The primary keys of the source rows whose leading key column is in [low, high]."""
    columns = list(table.primary_key)
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT {', '.join(mysql_ident(c) for c in columns)} "
                f"FROM {mysql_ident(table.schema)}.{mysql_ident(table.name)} "
                f"WHERE {mysql_ident(columns[0])} BETWEEN %s AND %s",
                (low, high),
            )
            return [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdc_sync.reconcile.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["compare", "repair"])
    parser.add_argument("--config", help="pipelines file (default: CDC_SYNC_CONFIG or config/pipelines.yaml)")
    parser.add_argument("--pipeline", required=True)
    parser.add_argument("--table", required=True, help="schema.table")
    parser.add_argument("--key", action="append", default=[], help="a primary key as JSON, e.g. '{\"id\": 3}'")
    parser.add_argument("--from", dest="low", type=int, help="repair: first value of the leading key")
    parser.add_argument("--to", dest="high", type=int, help="repair: last value of the leading key")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    pipeline = get_pipeline(args.pipeline, args.config)
    if pipeline.reconcile is None:
        parser.error(f"pipeline {pipeline.name!r} has no reconcile section (source_conn_id)")
    table = pipeline.table(args.table)
    # the connections exactly as the DAG's tasks open them
    connect = connections.source_connect(pipeline)
    if args.command == "compare":
        from cdc_sync.reconcile.run import reconcile_table

        comparisons = reconcile_table(
            pipeline,
            table.qualified_name,
            source_connect=connect,
            run_id="cli",
            bigquery_client=connections.bigquery_client(pipeline) if pipeline.bigquery else None,
            aurora_connect=connections.aurora_plain_connect(pipeline),
        )
        return 1 if any(c.status == "drift" for c in comparisons) else 0

    from cdc_sync.reconcile.repair import emit_repair_file

    keys = [json.loads(k) for k in args.key]
    if args.low is not None or args.high is not None:
        if args.low is None or args.high is None:
            parser.error("--from and --to go together")
        keys += _keys_in_range(table, connect, args.low, args.high)
    for key in keys:
        if set(key) != set(table.primary_key):
            parser.error(f"key {key} does not name exactly the primary key {list(table.primary_key)}")
    if not keys:
        log.info("no keys to repair")
        return 0
    emit_repair_file(pipeline, table, connect, connections.s3_client(pipeline), keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
