"""Sensor: wait until any table of a pipeline has a new landed file (DMS or Firehose)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from cdc_sync._compat import AirflowSkipException
from cdc_sync.config import get_pipeline
from cdc_sync.orchestration.events import is_asset_triggered
from cdc_sync.orchestration.trigger import NewObjectsTrigger
from cdc_sync.sources.listing import Cursor, list_new_files, table_cursors


class NewObjectsSensor(BaseSensorOperator):
    """Lists each table folder from its watermark (StartAfter), so a poke costs one or two
    ListObjectsV2 calls per table however many files the folder already holds.

    Deferrable by default: after one synchronous look it hands the waiting to the
    triggerer. Returns the tables that have new files; skips the run when none arrive
    before `timeout`. A manual run with `replay_keys` or `rescan` does not wait, nor does any
    run of a pipeline with S3 notifications (orchestration.events): it skips at once if nothing is new.
    """

    ui_color = "#f0e4ff"

    def __init__(self, *, pipeline_name: str, config_path: str | None = None, deferrable: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.pipeline_name = pipeline_name
        self.config_path = config_path
        self.deferrable = deferrable

    def _cursors(self) -> tuple[Any, list[Cursor], dict[str, str]]:
        from cdc_sync.sources import watermarks

        pipeline = get_pipeline(self.pipeline_name, self.config_path)
        cursors: list[Cursor] = []
        prefixes: dict[str, str] = {}
        for table in pipeline.tables:
            prefix = pipeline.source.table_prefix(table)
            prefixes[table.qualified_name] = prefix
            # the planner's walks, moved back by the late-file grace; handled keys there are passed
            # over, so a late file alone wakes the sensor (same calls per poke as from the watermark)
            cursors += table_cursors(
                table.qualified_name,
                prefix,
                watermarks.read(pipeline.name, table.qualified_name),
                timedelta(minutes=pipeline.options.late_file_grace_minutes),
                pipeline.source.file_format,
                pipeline.source.file_time_zone,
                skip_recent=True,
            )
        return pipeline, cursors, prefixes

    def _tables_with_new_files(self, pipeline, cursors: list[Cursor], prefixes: dict[str, str]) -> list[str]:
        from cdc_sync.connections import s3_client

        client = s3_client(pipeline)
        tables: list[str] = []
        for cursor in cursors:
            if cursor.table in tables:
                continue
            first = next(
                iter(
                    list_new_files(
                        client, pipeline.source.bucket, cursor, prefixes[cursor.table], pipeline.source.file_format
                    )
                ),
                None,
            )
            if first is not None:
                tables.append(cursor.table)
        return tables

    def execute(self, context) -> Any:
        params = context.get("params") or {}
        run_type = str(getattr(context.get("dag_run"), "run_type", "")).lower()
        manual = ("replay_keys", "rescan", "dry_run", "window_start", "window_end")
        if any(params.get(name) for name in manual) or run_type.endswith("backfill"):
            self.log.info("backfill or manual run (%s): not waiting for new files", ", ".join(manual))
            return [t.qualified_name for t in get_pipeline(self.pipeline_name, self.config_path).tables]
        if not self.deferrable:
            return super().execute(context)
        pipeline, cursors, prefixes = self._cursors()
        if tables := self._tables_with_new_files(pipeline, cursors, prefixes):
            self.log.info("new %s for %s", landed_files(pipeline), ", ".join(tables))
            return tables
        if pipeline.source.kind in ("dynamodb_stream", "audit_log", "binlog"):  # only this run's capture lands files
            raise AirflowSkipException(f"no new {landed_files(pipeline)} for pipeline {self.pipeline_name}")
        # with S3 notifications no run waits: one they start finds its file at once (or an earlier
        # run loaded it); a sweep that finds nothing ends, and holds no run slot a notification needs
        if pipeline.source.notifications is not None:
            if is_asset_triggered(context):
                why = "run started by an S3 notification whose files an earlier run loaded"
            else:
                why = "sweep run; S3 notifications start the runs that load new files"
            raise AirflowSkipException(
                f"no new {landed_files(pipeline)} for pipeline {self.pipeline_name}, nothing to load ({why})"
            )
        deadline = datetime.now(UTC) + timedelta(seconds=self.timeout)
        self.defer(
            trigger=NewObjectsTrigger(
                aws_conn_id=pipeline.source.aws_conn_id,
                bucket=pipeline.source.bucket,
                file_format=pipeline.source.file_format,
                cursors=[c.__dict__ for c in cursors],
                table_prefixes=prefixes,
                poke_interval=self.poke_interval,
                deadline=deadline.isoformat(),
            ),
            method_name="execute_complete",
        )

    def poke(self, context) -> PokeReturnValue:
        pipeline, cursors, prefixes = self._cursors()
        tables = self._tables_with_new_files(pipeline, cursors, prefixes)
        return PokeReturnValue(is_done=bool(tables), xcom_value=tables)

    def execute_complete(self, context, event: dict) -> list[str]:
        words = landed_files(get_pipeline(self.pipeline_name, self.config_path))
        if event.get("status") == "found":
            self.log.info("new %s for %s", words, ", ".join(event["tables"]))
            return event["tables"]
        raise AirflowSkipException(
            f"no new {words} for pipeline {self.pipeline_name} within {self.timeout:.0f}s; nothing to load"
        )


def landed_files(pipeline) -> str:
    """What the source lands, in its own words."""
    if pipeline.source.kind == "dynamodb_stream":
        return "DynamoDB stream changes"
    if pipeline.source.kind == "binlog":
        return "binlog changes"
    if pipeline.source.kind == "audit_log":
        return "audit trail events"
    return "Firehose objects" if pipeline.source.kind == "firehose" else "DMS files"
