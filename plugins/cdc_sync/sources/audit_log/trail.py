"""One audit-trail capture run: read the audit log's Kinesis stream from the checkpoint and
land the decoded events as one DMS-format CDC file of the trail table.

The trail is then loaded like any other change file (Aurora merge, BigQuery changelog + view),
so it gets the same exactly-once path: one row per audit event, keyed by its CloudWatch Logs
event id (an event CloudWatch delivers twice is still one row).

Exactly once across retries and restarts: the checkpoint (an S3 object) first records the file
about to be written and the positions it covers; the file is put; then the checkpoint takes
those positions. A run that finds a pending file already on S3 commits its positions without
reading again, and one that does not find it reads again from the old positions. Lost history
(kinesis.StreamReader) fails the run with what to do. Lines that do not parse are written,
with where they were read, to ``<checkpoint_prefix><pipeline>/problems/<file>.json`` and
logged; they never stop the other events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cdc_sync.errors import SetupError
from cdc_sync.sources.audit_log.batch import AuditBatch, KinesisRecord, TrailEvent, decode_batch
from cdc_sync.sources.audit_log.kinesis import StreamReader, load_positions, save_positions
from cdc_sync.sources.audit_log.trail_table import TRAIL_COLUMNS, TRAIL_TIMESTAMP_COLUMN
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, cdc_file_name, write_change_file
from cdc_sync.sources.s3_objects import object_exists, read_json, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrailCapture:
    """Everything one run needs: the stream, which events, where files and positions go."""

    pipeline: str
    stream: str
    aws_conn_id: str | None
    bucket: str
    table_prefix: str  # `<prefix>/<schema>/<table>/`
    checkpoint_key: str
    problems_prefix: str
    events: str = "all"  # or "writes"
    max_records: int = 100_000
    max_seconds: float = 300.0


@dataclass
class TrailReport:
    """What a run did, for the task log and the tests."""

    key: str | None = None
    records: int = 0
    lines: int = 0
    written: int = 0
    unparsed: int = 0
    bad_records: int = 0
    unmapped: int = 0
    problems_key: str | None = None
    budget_spent: bool = False
    resumed_pending: bool = False
    shards: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def pipeline_trail(pipeline) -> TrailCapture:
    """The TrailCapture a `kind: audit_log` pipeline describes (its one table is the trail)."""
    source = pipeline.source
    settings = source.audit_log
    if source.kind != "audit_log" or settings is None:
        raise SetupError(f"pipeline {pipeline.name!r}: source kind {source.kind!r} has no audit trail to capture")
    return TrailCapture(
        pipeline=pipeline.name,
        stream=settings.stream,
        aws_conn_id=settings.aws_conn_id or source.aws_conn_id,
        bucket=source.bucket,
        table_prefix=source.table_prefix(pipeline.tables[0]),
        checkpoint_key=settings.checkpoint_key(pipeline.name),
        problems_prefix=f"{settings.checkpoint_prefix}{pipeline.name}/problems/",
        events=settings.events,
        max_records=settings.max_records_per_run,
        max_seconds=settings.max_seconds_per_run,
    )


def trail_columns() -> list[tuple[str, Any]]:
    """The change file's columns (after Op and the commit time), as Arrow types."""
    return [(name, arrow_type_for_mysql(kind)) for name, kind in (c.split(None, 1) for c in TRAIL_COLUMNS)]


def trail_change(item: TrailEvent) -> Change:
    """The insert one audit event stands for; `tables_written` is NULL for a write whose
    tables could not be named, empty for an event that wrote nothing."""
    event = item.event
    tables = None if item.tables is None else ",".join(str(t) for t in item.tables)
    row = {
        "event_id": item.event_id,
        "event_time": event.timestamp,
        "server_host": event.server_host,
        "user_name": event.user,
        "client_host": event.host,
        "connection_id": event.connection_id,
        "query_id": event.query_id,
        "operation": event.operation,
        "database_name": event.database,
        "tables_written": tables,
        "statement": event.statement,
        "retcode": event.retcode,
        "log_group": item.log_group,
        "log_stream": item.log_stream,
    }
    return Change(op="I", row=row, commit_ts=event.timestamp)


def kept(item: TrailEvent, events: str) -> bool:
    """`all`: every parsed event; `writes`: statements that wrote a table (or may have: unmapped)."""
    return events == "all" or item.tables is None or bool(item.tables)


def _read_checkpoint(s3, bucket: str, key: str) -> dict:
    return read_json(s3, bucket, key) or {"positions": {}, "last_file": None, "pending": None}


def _commit_pending(checkpoint: dict) -> None:
    pending = checkpoint["pending"]
    checkpoint.update(positions=pending["positions"], last_file=pending["file"], pending=None)


def _next_file_name(when: datetime, last: str | None) -> str:
    """A CDC file name after every earlier one of this capture (names order the changes)."""
    name = cdc_file_name(when)
    while last is not None and name <= last:
        when += timedelta(milliseconds=1)
        name = cdc_file_name(when)
    return name


def default_client_factory(aws_conn_id: str | None):
    """An aiobotocore Kinesis client of the Airflow connection, as the trigger uses."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    async def make():
        return await AwsBaseHook(aws_conn_id=aws_conn_id, client_type="kinesis").get_async_conn()

    return make


async def _read(spec: TrailCapture, factory, positions, report: TrailReport, clock) -> list[KinesisRecord]:
    records: list[KinesisRecord] = []
    started = time.monotonic()
    async with await factory() as client:
        reader = StreamReader(
            client,
            spec.stream,
            positions,
            checkpoint=f"s3://{spec.bucket}/{spec.checkpoint_key}",
            remedy=(
                "The trail cannot get those events back. To go on from the oldest record the stream keeps, "
                f"delete s3://{spec.bucket}/{spec.checkpoint_key}; run the reconcile DAG (or re-snapshot) of "
                "the tables written in the gap, whose syncs the audit log did not trigger."
            ),
            limit=min(10_000, spec.max_records),
            clock=clock,
        )
        while True:
            page = await reader.read_all_shards()
            records.extend(page)
            if not page:
                break
            if len(records) >= spec.max_records or time.monotonic() - started >= spec.max_seconds:
                report.budget_spent = True
                break
    report.shards = sorted(positions)
    return records


def capture_trail(
    spec: TrailCapture,
    s3,
    *,
    client_factory: Callable[[], Any] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.time,
) -> TrailReport:
    """Read the stream from the checkpoint, land one trail file, advance the checkpoint."""
    report = TrailReport()
    checkpoint = _read_checkpoint(s3, spec.bucket, spec.checkpoint_key)
    if checkpoint.get("pending"):
        key = spec.table_prefix + checkpoint["pending"]["file"]
        if object_exists(s3, spec.bucket, key):
            log.info("%s: %s was written by an interrupted run; its positions are taken", spec.stream, key)
            _commit_pending(checkpoint)
            report.resumed_pending = True
        else:
            checkpoint["pending"] = None
        write_json(s3, spec.bucket, spec.checkpoint_key, checkpoint)

    positions = load_positions(checkpoint.get("positions"))
    factory = client_factory or default_client_factory(spec.aws_conn_id)
    records = asyncio.run(_read(spec, factory, positions, report, clock))
    batch = decode_batch(records, keep_events=True)
    report.records, report.lines = batch.records, batch.lines
    report.unparsed, report.bad_records, report.unmapped = (
        len(batch.unparsed),
        len(batch.bad_records),
        len(batch.unmapped),
    )
    changes = [trail_change(item) for item in batch.events if kept(item, spec.events)]

    saved = save_positions(positions)
    if not changes:
        checkpoint["positions"] = saved
        write_json(s3, spec.bucket, spec.checkpoint_key, checkpoint)
        _report_problems(spec, s3, batch, report, checkpoint.get("last_file") or "none")
        return report
    name = _next_file_name(now(), checkpoint.get("last_file"))
    checkpoint["pending"] = {"file": name, "positions": saved}
    write_json(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    body = write_change_file(trail_columns(), changes, timestamp_column=TRAIL_TIMESTAMP_COLUMN, include_op=True)
    report.key = spec.table_prefix + name
    s3.put_object(Bucket=spec.bucket, Key=report.key, Body=body)
    _commit_pending(checkpoint)
    write_json(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    report.written = len(changes)
    _report_problems(spec, s3, batch, report, name)
    log.info(
        "%s: %d record(s), %d audit line(s) read; %d event(s) written to s3://%s/%s",
        spec.stream,
        report.records,
        report.lines,
        report.written,
        spec.bucket,
        report.key,
    )
    return report


def _report_problems(spec: TrailCapture, s3, batch: AuditBatch, report: TrailReport, name: str) -> None:
    """Records and lines that were not understood: kept on S3 with where they were read, logged."""
    problems = {
        "bad_records": [p.to_dict() for p in batch.bad_records],
        "unparsed": [p.to_dict() for p in batch.unparsed],
        "unmapped": [p.to_dict() for p in batch.unmapped],
    }
    if not problems["bad_records"] and not problems["unparsed"] and not problems["unmapped"]:
        return
    report.problems_key = f"{spec.problems_prefix}{name.rsplit('.', 1)[0]}-{time.time_ns()}.json"
    s3.put_object(Bucket=spec.bucket, Key=report.problems_key, Body=json.dumps(problems, indent=1).encode())
    log.warning(
        "%s: %d record(s) not CloudWatch Logs envelopes, %d audit line(s) that do not parse (not in the trail) "
        "and %d write(s) whose tables are not known (in the trail with tables_written NULL): see s3://%s/%s",
        spec.stream,
        report.bad_records,
        report.unparsed,
        report.unmapped,
        spec.bucket,
        report.problems_key,
    )


def capture_task(pipeline) -> dict:
    """The `capture_audit_trail` task of a `kind: audit_log` pipeline: one capture run."""
    from cdc_sync import connections

    return capture_trail(pipeline_trail(pipeline), connections.s3_client(pipeline)).to_dict()
