"""The DMS → BigQuery flow as plain functions: plan batches, load one batch.

The DAG's tasks call these with clients built from Airflow connections; tests and the
benchmarks call them with clients of their own. Nothing here needs a scheduler.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from cdc_sync.bigquery.ledger import LOADED, QUARANTINED, BigQueryLedger
from cdc_sync.bigquery.loader import ChangelogLoader
from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.dms.layout import DmsFile, dated_folders_of
from cdc_sync.landed import LoadReport
from cdc_sync.listing import ListingStats, Watermark, list_new_files, table_cursors, window_cursors

log = logging.getLogger(__name__)
_warned_no_commit_ts: set[tuple[str, str]] = set()

WatermarkReader = Callable[[str, str], Watermark]
WatermarkWriter = Callable[[str, str, Watermark], None]


def candidate_files(
    pipeline: Pipeline, table: TableSpec, s3_client, watermark: Watermark, *,
    rescan: bool = False, window: tuple[datetime, datetime] | None = None, stats: ListingStats | None = None,
) -> list[DmsFile]:
    """New files of one table: LOAD files past the LOAD watermark, CDC files past the CDC
    watermark moved back by the late-file grace (the ledger drops what is already loaded).
    With `window` (a backfill run's data interval): every LOAD file and the CDC files
    written in that interval; with `rescan`: everything."""
    prefix = pipeline.source.table_prefix(table)
    grace = timedelta(minutes=pipeline.options.late_file_grace_minutes)
    if window and not rescan:
        dated = dated_folders_of(watermark.cdc_after, prefix) if watermark.cdc_after else _probe_layout(
            s3_client, pipeline.source.bucket, prefix)
        cursors = window_cursors(table.qualified_name, prefix, window[0], window[1], dated, grace)
    else:
        cursors = table_cursors(table.qualified_name, prefix, Watermark() if rescan else watermark, grace)
    found: dict[str, DmsFile] = {}
    for cursor in cursors:
        for f in list_new_files(s3_client, pipeline.source.bucket, cursor, prefix, pipeline.source.file_format, stats=stats):
            found[f.key] = f
    return sorted(found.values())


def plan_batches(
    pipeline: Pipeline, s3_client, bq_client, read_watermark: WatermarkReader, *,
    tables: Iterable[str] | None = None, replay_keys: Iterable[str] = (), rescan: bool = False,
    window: tuple[datetime, datetime] | None = None,
) -> list[dict]:
    """One batch per table that has files to load, capped by max_batch_files/bytes (the
    rest waits for the next run; the sensor sees it at once)."""
    target = pipeline.bigquery
    assert target is not None
    replay = set(replay_keys)
    wanted = set(tables) if tables else None
    ledger = BigQueryLedger(bq_client, target, pipeline.name)
    ledger_ready = _ledger_exists(bq_client, target)
    batches = []
    for table in pipeline.tables:
        if wanted is not None and table.qualified_name not in wanted and not replay:
            continue
        files = candidate_files(
            pipeline, table, s3_client, read_watermark(pipeline.name, table.qualified_name),
            rescan=rescan or bool(replay), window=window,
        )
        if replay:
            files = [f for f in files if f.key in replay]
        if files and ledger_ready:
            state = ledger.current(table.qualified_name, [f.key for f in files])
            files = [
                f for f in files
                if (entry := state.get((f.key, f.etag))) is None
                or entry.status not in (LOADED, QUARANTINED)
                or (entry.status == QUARANTINED and f.key in replay)
            ]
        chosen: list[DmsFile] = []
        size = 0
        for f in files:
            if chosen and (len(chosen) >= pipeline.options.max_batch_files
                           or size + f.size > pipeline.options.max_batch_bytes):
                log.info("%s: %d more file(s) wait for the next run (batch cap)", table.qualified_name,
                         len(files) - len(chosen))
                break
            chosen.append(f)
            size += f.size
        if chosen:
            batches.append({"table": table.qualified_name, "files": [f.to_dict() for f in chosen]})
    return batches


def load_batch(
    pipeline: Pipeline, batch: dict, s3_client, bq_client,
    read_watermark: WatermarkReader, write_watermark: WatermarkWriter, *,
    replay: bool = False, workdir: Path | None = None,
) -> LoadReport:
    table = pipeline.table(batch["table"])
    files = [DmsFile.from_dict(f) for f in batch["files"]]
    if not table.commit_timestamp_column and (pipeline.name, table.qualified_name) not in _warned_no_commit_ts:
        _warned_no_commit_ts.add((pipeline.name, table.qualified_name))
        log.warning(
            "%s: no commit_timestamp_column; changes are ordered by file name and row only, so after a DMS "
            "task restart a replayed older change can win over a newer one. Set TimestampColumnName on the "
            "DMS endpoint and commit_timestamp_column in the pipeline config.", table.qualified_name,
        )
    with tempfile.TemporaryDirectory(prefix="cdc-sync-", dir=workdir) as scratch:
        report = ChangelogLoader(pipeline, table, bq_client, s3_client, Path(scratch)).load(
            files, replay_quarantined=replay
        )
    prefix = pipeline.source.table_prefix(table)
    watermark = read_watermark(pipeline.name, table.qualified_name)
    advanced = watermark.advanced(prefix, report.handled_keys)
    if advanced != watermark:
        write_watermark(pipeline.name, table.qualified_name, advanced)
    return report


def _probe_layout(s3_client, bucket: str, prefix: str) -> str | None:
    """One call: does this table folder use DMS date folders?"""
    page = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    first = page.get("Contents", [])
    return dated_folders_of(first[0]["Key"], prefix) if first else None


def _ledger_exists(bq_client, target) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        bq_client.get_table(f"{target.project}.{target.dataset}.{target.ledger_table}")
        return True
    except NotFound:
        return False
