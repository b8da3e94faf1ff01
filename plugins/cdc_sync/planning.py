"""Planning shared by every target: list new files per table, drop what every target has
finished, cap the batch; and after the loads, move the listing watermarks forward."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.sources.dms.layout import dated_folders_of
from cdc_sync.sources.landed import LandedObject
from cdc_sync.sources.listing import (
    FIREHOSE,
    ListingStats,
    Watermark,
    firehose_window_cursor,
    grace_floor,
    in_firehose_window,
    list_new_files,
    table_cursors,
    window_cursors,
)

log = logging.getLogger(__name__)

WatermarkReader = Callable[[str, str], Watermark]
WatermarkWriter = Callable[[str, str, Watermark], None]
# (table, files, replay keys) -> {(key, etag)} the target has finished with
FinishedCheck = Callable[[str, list[LandedObject], set[str]], set[tuple[str, str]]]


def candidate_files(
    pipeline: Pipeline,
    table: TableSpec,
    s3_client,
    watermark: Watermark,
    *,
    rescan: bool = False,
    window: tuple[datetime, datetime] | None = None,
    stats: ListingStats | None = None,
) -> list[LandedObject]:
    """New files of one table: LOAD files past the LOAD watermark, CDC files past the CDC
    watermark moved back by the late-file grace (the ledger drops what is already loaded).
    With `window` (a backfill run's data interval): every LOAD file and the CDC files
    written in that interval; with `rescan`: everything."""
    prefix = pipeline.source.table_prefix(table)
    grace = timedelta(minutes=pipeline.options.late_file_grace_minutes)
    if window and not rescan and pipeline.source.kind == "dms":
        dated = (
            dated_folders_of(watermark.cdc_after, prefix)
            if watermark.cdc_after
            else _probe_layout(s3_client, pipeline.source.bucket, prefix)
        )
        cursors = window_cursors(
            table.qualified_name, prefix, window[0], window[1], dated, grace, pipeline.source.file_time_zone
        )
    elif window and not rescan and pipeline.source.file_format == FIREHOSE:
        cursors = [firehose_window_cursor(table.qualified_name, prefix, window[0], window[1])]
    else:
        cursors = table_cursors(
            table.qualified_name,
            prefix,
            Watermark() if rescan else watermark,
            grace,
            pipeline.source.file_format,
            pipeline.source.file_time_zone,
        )
    listing = ListingStats()
    found: dict[str, LandedObject] = {}
    for cursor in cursors:
        for f in list_new_files(
            s3_client, pipeline.source.bucket, cursor, prefix, pipeline.source.file_format, stats=listing
        ):
            if window and not rescan and cursor.stop_at is None and pipeline.source.file_format == FIREHOSE:
                if not in_firehose_window(f.key, prefix, window[0], window[1]):
                    continue
            found[f.key] = f
    if stats is not None:
        stats.calls += listing.calls
    if listing.unrecognised:
        # nothing is lost silently: a prefix or file_format that does not match what lands says so
        expected = (
            "Firehose's naming (<prefix as the stream has it><stream>-<version>-<time>-<uuid>)"
            if pipeline.source.kind == "firehose"
            else f"DMS's naming for file_format {pipeline.source.file_format} (LOAD…, YYYYMMDD-HHMMSSfff…, "
            "flat or in date folders that sort by time: DatePartitionSequence YYYYMMDD, YYYYMMDDHH or YYYYMM)"
        )
        log.warning(
            "%s: %d object(s) under s3://%s/%s are not named as %s and are not loaded, e.g. %s",
            table.qualified_name,
            listing.unrecognised,
            pipeline.source.bucket,
            prefix,
            expected,
            ", ".join(listing.unrecognised_examples),
        )
    return sorted(found.values())


def plan_batches(
    pipeline: Pipeline,
    s3_client,
    read_watermark: WatermarkReader,
    finished: list[FinishedCheck],
    *,
    tables: Iterable[str] | None = None,
    replay_keys: Iterable[str] = (),
    rescan: bool = False,
    window: tuple[datetime, datetime] | None = None,
    write_watermark: WatermarkWriter | None = None,
) -> list[dict]:
    """One batch per table with files that some target has not finished (loaded, or
    quarantined unless replayed), capped by max_batch_files/bytes (the rest waits for the
    next run; the sensor sees it at once). `finished` holds one check per target."""
    replay = set(replay_keys)
    wanted = set(tables) if tables else None
    batches = []
    for table in pipeline.tables:
        if wanted is not None and table.qualified_name not in wanted and not replay:
            continue
        watermark = read_watermark(pipeline.name, table.qualified_name)
        files = candidate_files(pipeline, table, s3_client, watermark, rescan=rescan or bool(replay), window=window)
        if replay:
            files = [f for f in files if f.key in replay]
        if files and finished:
            done = [check(table.qualified_name, files, replay) for check in finished]
            finished_keys = {f.key for f in files if all((f.key, f.etag) in d for d in done)}
            files = [f for f in files if f.key not in finished_keys]
            if write_watermark is not None:
                _remember_finished(pipeline, table, watermark, finished_keys, write_watermark)
        chosen: list[LandedObject] = []
        size = 0
        for f in files:
            if chosen and (
                len(chosen) >= pipeline.options.max_batch_files or size + f.size > pipeline.options.max_batch_bytes
            ):
                log.info(
                    "%s: %d more file(s) wait for the next run (batch cap)",
                    table.qualified_name,
                    len(files) - len(chosen),
                )
                break
            chosen.append(f)
            size += f.size
        if chosen:
            batches.append({"table": table.qualified_name, "files": [f.to_dict() for f in chosen]})
    return batches


def advance_watermarks(
    pipeline: Pipeline,
    reports: Iterable[dict | None],
    targets: int,
    read_watermark: WatermarkReader,
    write_watermark: WatermarkWriter,
) -> dict[str, Watermark]:
    """Move each table's watermark past the keys every target handled this run. A table
    whose load failed in some target keeps its watermark (the next run lists it again;
    the ledgers skip what is done)."""
    by_table: dict[str, list[dict]] = {}
    for report in reports:
        if report:
            by_table.setdefault(report["table"], []).append(report)
    moved = {}
    for table_name, table_reports in by_table.items():
        if len(table_reports) < targets:
            log.warning("%s: not every target finished; its watermark stays", table_name)
            continue
        handled = set.intersection(*(set(r["handled_keys"]) for r in table_reports))
        table = pipeline.table(table_name)
        watermark = read_watermark(pipeline.name, table_name)
        advanced = watermark.advanced(
            pipeline.source.table_prefix(table), sorted(handled), _grace_floor(pipeline, table)
        )
        if advanced != watermark:
            write_watermark(pipeline.name, table_name, advanced)
            moved[table_name] = advanced
    return moved


def _remember_finished(
    pipeline: Pipeline, table: TableSpec, watermark: Watermark, keys: set[str], write_watermark: WatermarkWriter
) -> None:
    """Remember files inside the grace that every target finished but the watermark missed.

    A crash between load and advance, or a watermark written before `recent` existed, leaves
    such files; remembered, they do not wake the sensor again and again."""
    floor = _grace_floor(pipeline, table)(watermark.cdc_after)
    inside = {k for k in keys if floor is None or k > floor}
    remembered = watermark.remembering(inside - set(watermark.recent))
    if remembered != watermark:
        write_watermark(pipeline.name, table.qualified_name, remembered)


def _grace_floor(pipeline: Pipeline, table: TableSpec) -> Callable[[str | None], str | None]:
    return grace_floor(
        pipeline.source.table_prefix(table),
        timedelta(minutes=pipeline.options.late_file_grace_minutes),
        pipeline.source.file_format,
        pipeline.source.file_time_zone,
    )


def _probe_layout(s3_client, bucket: str, prefix: str) -> str | None:
    """One call: does this table folder use DMS date folders?"""
    page = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    first = page.get("Contents", [])
    return dated_folders_of(first[0]["Key"], prefix) if first else None
