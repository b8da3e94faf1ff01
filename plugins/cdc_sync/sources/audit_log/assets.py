"""Assets per source table, each watched by an AuditLogTrigger: "this table was written"."""

from __future__ import annotations

from airflow.sdk import Asset, AssetWatcher

from cdc_sync.sources.audit_log.trigger import AuditLogTrigger
from cdc_sync.sql import check_identifier


def table_asset_uri(source: str, table: str) -> str:
    """``mysql://<source>/<schema>/<table>``, the naming the Aurora target's assets use."""
    schema, _, name = table.partition(".")
    if not name:
        raise ValueError(f"table {table!r} must be schema.table")
    return f"mysql://{check_identifier(source)}/{check_identifier(schema)}/{check_identifier(name)}"


def table_asset(
    source: str,
    table: str,
    *,
    stream_name: str,
    aws_conn_id: str | None = "aws_default",
    poll_interval: float = 5.0,
) -> Asset:
    """An asset for `table` (``schema.table``) of the audited database `source`, updated
    once per batch of audit records that wrote it. Schedule any DAG on it."""
    trigger = AuditLogTrigger(
        stream_name=stream_name, aws_conn_id=aws_conn_id, tables=[table], poll_interval=poll_interval
    )
    uri = table_asset_uri(source, table)
    return Asset(uri=uri, name=uri, watchers=[AssetWatcher(name=f"audit_log_{source}_{table}", trigger=trigger)])


def pipeline_audit_assets(pipeline):
    """`schedule: audit_log`: any of the pipeline's tables written, by the audit log's account
    (`source.audit_log`); one asset per table, each watched, combined with "or"."""
    import functools
    import operator

    settings = pipeline.source.audit_log
    if settings is None:
        raise ValueError(f"pipeline {pipeline.name!r}: schedule audit_log needs source.audit_log")
    assets = [
        table_asset(
            settings.source_name or pipeline.name,
            table.qualified_name,
            stream_name=settings.stream,
            aws_conn_id=settings.aws_conn_id or pipeline.source.aws_conn_id,
            poll_interval=settings.poll_interval_seconds,
        )
        for table in pipeline.tables
    ]
    return functools.reduce(operator.or_, assets)
