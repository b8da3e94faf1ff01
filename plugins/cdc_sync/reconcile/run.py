"""Reconcile a pipeline's tables: build the sides from the config, compare, store results.

Each target keeps its own results table (`reconcile.results_table`, default
`_cdc_sync_reconcile`), one row per (run, table, target).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cdc_sync.config import Pipeline, Reconcile, TableSpec
from cdc_sync.mysql_catalog import table_exists
from cdc_sync.reconcile.diff import Comparison, Settings, compare
from cdc_sync.reconcile.sides import BigQuerySide, MySqlSide, bigquery_parameter
from cdc_sync.sql import bigquery_table, mysql_ident, render

log = logging.getLogger(__name__)

AURORA, BIGQUERY = "aurora", "bigquery"


def settings_of(reconcile: Reconcile) -> Settings:
    return Settings(
        max_buckets=reconcile.max_buckets,
        leaf_rows=reconcile.leaf_rows,
        max_fetch_rows=reconcile.max_fetch_rows,
        sample_keys=reconcile.sample_keys,
        recheck_seconds=reconcile.recheck_seconds,
    )


def targets_of(pipeline: Pipeline) -> list[str]:
    """The targets that mirror the source (Aurora only in merge mode)."""
    out = []
    if pipeline.aurora is not None and pipeline.aurora.mode == "merge":
        out.append(AURORA)
    if pipeline.bigquery is not None:
        out.append(BIGQUERY)
    return out


def source_side(table: TableSpec, connect: Callable, hash_function: str) -> MySqlSide:
    return MySqlSide("source", connect, table.schema, table.name, hash_function=hash_function)


def hash_function_for(reconcile: Reconcile, target: str) -> str:
    """The row hash for a target: strong mode SHA-256 everywhere; else CRC32 MySQL to MySQL
    (about half the cost) and MD5 when BigQuery is on the other side."""
    if reconcile.checksum == "strong":
        return "sha256"
    return "crc32" if target == AURORA else "md5"


def target_side(
    pipeline: Pipeline, table: TableSpec, target: str, *, bigquery_client=None, aurora_connect: Callable | None = None
):
    assert pipeline.reconcile is not None
    hash_function = hash_function_for(pipeline.reconcile, target)
    if target == AURORA:
        aurora = pipeline.aurora
        assert aurora is not None and aurora_connect is not None
        return MySqlSide(
            AURORA,
            aurora_connect,
            aurora.database,
            aurora.view(table),
            hash_function=hash_function,
            watermark_column="_cdc_commit_ts",
            state_relation=aurora.state_table(table),
        )
    bq = pipeline.bigquery
    assert bq is not None and bigquery_client is not None
    return BigQuerySide(
        BIGQUERY,
        bigquery_client,
        bq.project,
        bq.dataset,
        bq.latest_view(table),
        changelog=bq.changelog_table(table),
        hash_function=hash_function,
    )


def reconcile_table(
    pipeline: Pipeline,
    table_name: str,
    *,
    source_connect: Callable,
    run_id: str,
    bigquery_client=None,
    aurora_connect: Callable | None = None,
    targets: list[str] | None = None,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Comparison]:
    """Compare one table with each target; store and return one Comparison per target."""
    assert pipeline.reconcile is not None, f"pipeline {pipeline.name!r} has no reconcile section"
    table = pipeline.table(table_name)
    settings = settings or settings_of(pipeline.reconcile)
    exclude = set(table.reconcile_exclude) | (
        {table.commit_timestamp_column} if table.commit_timestamp_column else set()
    )
    out = []
    for target in targets or targets_of(pipeline):
        source = source_side(table, source_connect, hash_function_for(pipeline.reconcile, target))
        other = target_side(pipeline, table, target, bigquery_client=bigquery_client, aurora_connect=aurora_connect)
        try:
            comparison = compare(
                table.qualified_name,
                source,
                other,
                list(table.primary_key),
                settings=settings,
                updated_at_column=table.updated_at_column,
                exclude=exclude,
                sleep=sleep,
            )
        finally:
            source.close()
            other.close()
        log.info("%s", comparison.summary())
        store_result(pipeline, comparison, run_id, bigquery_client=bigquery_client, aurora_connect=aurora_connect)
        out.append(comparison)
    return out


def _row(pipeline: Pipeline, c: Comparison, run_id: str) -> dict:
    fields = c.to_dict()
    detail = {
        k: fields[k]
        for k in (
            "columns",
            "ignored_columns",
            "missing_columns",
            "levels",
            "buckets",
            "rows_fetched",
            "method",
            "partial",
        )
    }
    return {
        "run_id": run_id,
        "checked_at": datetime.now(UTC),
        "pipeline": pipeline.name,
        "table_name": c.table,
        "target": c.target,
        "status": c.status,
        "source_rows": c.source_rows,
        "target_rows": c.target_rows,
        "missing_rows": c.missing,
        "extra_rows": c.extra,
        "changed_rows": c.changed,
        "lag_rows": c.lag,
        "sample_keys": json.dumps(fields["sample"]),
        "watermark": c.watermark,
        "seconds": float(c.seconds),
        "detail": json.dumps(detail),
    }


def store_result(
    pipeline: Pipeline, c: Comparison, run_id: str, *, bigquery_client=None, aurora_connect: Callable | None = None
) -> None:
    assert pipeline.reconcile is not None
    row = _row(pipeline, c, run_id)
    results = pipeline.reconcile.results_table
    if c.target == AURORA:
        assert pipeline.aurora is not None and aurora_connect is not None
        params = {"database": pipeline.aurora.database, "table": results}
        conn = aurora_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(render("aurora/reconcile_results.sql", **params))
                cur.execute(
                    render("aurora/reconcile_result_insert.sql", **params),
                    {**row, "checked_at": row["checked_at"].replace(tzinfo=None)},
                )
            conn.commit()
        finally:
            conn.close()
        return
    from google.cloud import bigquery

    bq = pipeline.bigquery
    assert bq is not None
    params = {"project": bq.project, "dataset": bq.dataset, "table": results}
    dataset = bigquery.Dataset(f"{bq.project}.{bq.dataset}")
    dataset.location = bq.location
    bigquery_client.create_dataset(dataset, exists_ok=True)  # nothing loaded yet: the result still has a home
    bigquery_client.query(render("bigquery/reconcile_results.sql", **params), location=bq.location).result()
    config = bigquery.QueryJobConfig(query_parameters=[bigquery_parameter(name, value) for name, value in row.items()])
    bigquery_client.query(
        render("bigquery/reconcile_result_insert.sql", **params), job_config=config, location=bq.location
    ).result()


def load_results(
    pipeline: Pipeline, run_id: str, *, bigquery_client=None, aurora_connect: Callable | None = None
) -> list[dict]:
    """The result rows one run stored, from every target."""
    assert pipeline.reconcile is not None
    results = pipeline.reconcile.results_table
    rows: list[dict] = []
    columns = (
        "run_id",
        "checked_at",
        "table_name",
        "target",
        "status",
        "source_rows",
        "target_rows",
        "missing_rows",
        "extra_rows",
        "changed_rows",
        "lag_rows",
        "sample_keys",
        "watermark",
        "seconds",
    )
    select = ", ".join(columns)
    for target in targets_of(pipeline):
        if target == AURORA:
            assert pipeline.aurora is not None and aurora_connect is not None
            conn = aurora_connect()
            try:
                if not table_exists(conn, pipeline.aurora.database, results):
                    continue
                with conn.cursor() as cur:
                    relation = f"{mysql_ident(pipeline.aurora.database)}.{mysql_ident(results)}"
                    cur.execute(f"SELECT {select} FROM {relation} WHERE run_id = %s ORDER BY table_name", (run_id,))
                    rows += [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
            finally:
                conn.close()
        else:
            from google.api_core.exceptions import NotFound
            from google.cloud import bigquery

            bq = pipeline.bigquery
            assert bq is not None
            relation = bigquery_table(bq.project, bq.dataset, results)
            config = bigquery.QueryJobConfig(
                query_parameters=[bigquery.ScalarQueryParameter("run_id", "STRING", run_id)]
            )
            try:
                found = bigquery_client.query(
                    f"SELECT {select} FROM {relation} WHERE run_id = @run_id ORDER BY table_name",
                    job_config=config,
                    location=bq.location,
                ).result()
            except NotFound:
                continue
            rows += [dict(zip(columns, r.values(), strict=True)) for r in found]
    for row in rows:
        row["sample_keys"] = (
            json.loads(row["sample_keys"]) if isinstance(row["sample_keys"], str) else row["sample_keys"]
        )
    return sorted(rows, key=lambda r: (r["table_name"], r["target"]))
