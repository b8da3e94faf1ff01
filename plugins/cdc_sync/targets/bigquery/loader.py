"""Load a batch of DMS change files of one table into its BigQuery changelog, exactly once.

One batch → one combined Parquet file (written row group by row group on local disk)
→ one load job (PARQUET, WRITE_APPEND). The job id is derived from the pipeline, the
table and the exact set of (key, etag) it loads, so a retried or cleared task gets 409
from BigQuery and waits on the first job instead of appending twice. The ledger
(bigquery.ledger) records the job before it is inserted and the outcome after.

Loads of overlapping sets ({A,B} and {A,B,C}: a backfill beside a scheduled run, a manual
task run) have different job ids, so the id alone cannot stop A twice. Each load claims its
objects first: its `pending` ledger rows are written, then read back with every other claim
on the same objects, and each other claim is settled before this job is inserted. A claim
whose job does not exist yet is *fenced*: a zero-byte query job is inserted under its job id,
so that id can never run a load (BigQuery job ids are unique per project: 409). A claim whose
load job exists is waited on; if it appended, its objects are recorded as loaded and this
load starts again without them. Of two claims on one object, the later one to be written
reads the earlier back, so at most one of their jobs can append it; a load fenced in turn
(its insert gets 409 on a query job) claims again under its next job id, after a random
pause. A crashed claim costs its fence, never a double append.

Files that cannot be used (unreadable Parquet, missing primary key, a column whose type
differs from the table's) are quarantined with the reason; the rest of the batch loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
from google.api_core.exceptions import Conflict, GoogleAPICallError, NotFound
from google.cloud import bigquery

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.errors import BadInput
from cdc_sync.protocols import S3Client
from cdc_sync.sources.change_files import META_COLUMNS, ChangeFile, ChangeFileError, landed_change_file
from cdc_sync.sources.column_types import ColumnType, metadata_types
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.base import ObjectLoader, what_is_wrong
from cdc_sync.targets.bigquery.ledger import LOADED, PENDING, QUARANTINED, BigQueryLedger, LedgerEntry
from cdc_sync.targets.bigquery.schema import conflicts, table_types

log = logging.getLogger(__name__)

# google-cloud-bigquery uploads in 100 MiB chunks held in memory; 16 MiB keeps the
# worker's memory flat for any file size (must be a multiple of 256 KiB).
UPLOAD_CHUNK_BYTES = 16 * 1024 * 1024
CLUSTERABLE = {"INTEGER", "STRING", "DATE", "TIMESTAMP", "BOOLEAN", "NUMERIC", "BIGNUMERIC", "DATETIME"}
_MAX_JOB_ATTEMPTS = 20


class LoadJobFailed(BadInput):
    """BigQuery ran the load job and refused it; the message is BigQuery's reason."""


class _Restamp(Exception):
    """A compaction announced a watermark at or after this batch's `_cdc_loaded_at`: write the
    batch again stamped after it, or that compaction could skip its rows."""

    def __init__(self, watermark: datetime):
        super().__init__(f"compaction watermark {watermark.isoformat()}")
        self.watermark = watermark


class _ClaimedElsewhere(Exception):
    """Another load job appended some of this batch's objects: load the rest again."""

    def __init__(self, keys: set[str]):
        super().__init__(f"{len(keys)} object(s) appended by another load job")
        self.keys = keys


def job_id_for(pipeline: str, table: TableSpec, files: list[LandedObject], attempt: int = 0) -> str:
    digest = hashlib.sha256(json.dumps(sorted((f.key, f.etag) for f in files)).encode()).hexdigest()[:40]
    base = f"cdc_sync_{pipeline}_{table.schema}_{table.name}_{digest}"
    return base if attempt == 0 else f"{base}_retry{attempt}"


@dataclass
class _Prepared:
    file: LandedObject
    change_file: ChangeFile
    types: dict[str, ColumnType | None]


class ChangelogLoader(ObjectLoader):
    """Loads one table's batches into its BigQuery changelog and keeps its latest-state view."""

    target_name = "bigquery"

    def __init__(
        self, pipeline: Pipeline, table: TableSpec, bq_client: bigquery.Client, s3_client: S3Client, workdir: Path
    ):
        if pipeline.bigquery is None:
            raise ValueError(f"pipeline {pipeline.name} has no BigQuery target")
        super().__init__(pipeline, table, s3_client, workdir)
        self.target = pipeline.bigquery
        self.client = bq_client
        self.ledger = BigQueryLedger(bq_client, self.target, pipeline.name)
        self.changelog_id = f"{self.target.project}.{self.target.dataset}.{self.target.changelog_table(table)}"

    # ------------------------------------------------------------------ public
    def load(self, files: list[LandedObject], *, replay_quarantined: bool = False) -> LoadReport:
        report = LoadReport(self.table.qualified_name)
        self._ensure_dataset()
        self.ledger.ensure()
        todo = self._not_yet_loaded(sorted(set(files)), report, replay_quarantined)
        while todo:
            try:
                self._load_new(todo, report)
                break
            except _ClaimedElsewhere as claimed:
                report.already_loaded.extend(sorted(claimed.keys))
                done = claimed.keys | set(report.quarantined) | set(report.loaded)
                todo = [f for f in todo if f.key not in done]
        if report.loaded or not self._view_exists():
            if self._table_exists():
                self.refresh_view()
        return report

    def refresh_view(self) -> None:
        """The latest-state view over the changelog, or over the state table and the changelog
        from the compaction watermark once the table has been compacted (bigquery.compaction)."""
        from cdc_sync.targets.bigquery.compaction import Compactor

        Compactor(self.pipeline, self.table, self.client).refresh_view()

    # ------------------------------------------------------------ ledger state
    def _not_yet_loaded(self, files: list[LandedObject], report: LoadReport, replay: bool) -> list[LandedObject]:
        state = self.ledger.current(self.table.qualified_name, [f.key for f in files])
        todo: list[LandedObject] = []
        pending_by_job: dict[str | None, list[tuple[LandedObject, LedgerEntry]]] = {}
        for f in files:
            entry = state.get((f.key, f.etag))
            if entry is None or (entry.status == QUARANTINED and replay):
                todo.append(f)
            elif entry.status == LOADED:
                report.already_loaded.append(f.key)
            elif entry.status == QUARANTINED:
                report.previously_quarantined.append(f.key)
            else:
                pending_by_job.setdefault(entry.job_id, []).append((f, entry))
        for job_id, entries in pending_by_job.items():
            if self._job_succeeded(job_id):
                log.info(
                    "%s: job %s had loaded %d file(s) before the ledger was written; recording them",
                    self.table.qualified_name,
                    job_id,
                    len(entries),
                )
                self.ledger.record(
                    self.table.qualified_name,
                    [LedgerEntry(f.key, f.etag, LOADED, job_id, e.row_count) for f, e in entries],
                )
                report.already_loaded.extend(f.key for f, _ in entries)
            else:
                todo.extend(f for f, _ in entries)
        return sorted(todo)

    def _job_succeeded(self, job_id: str | None) -> bool:
        """Waits for a running job; True only if it is a load job into this changelog that
        finished without error (not a fence under that id, not a failed load)."""
        if not job_id:
            return False
        try:
            job = self.client.get_job(job_id, location=self.target.location)
        except NotFound:
            return False
        return self._load_succeeded(job)

    def _is_our_load(self, job) -> bool:
        destination = getattr(job, "destination", None)
        return (
            isinstance(job, bigquery.LoadJob)
            and destination is not None
            and f"{destination.project}.{destination.dataset_id}.{destination.table_id}" == self.changelog_id
        )

    def _load_succeeded(self, job) -> bool:
        if not self._is_our_load(job):
            return False
        try:
            job.result()
        except GoogleAPICallError:
            return False
        return job.error_result is None

    # ----------------------------------------------------------------- loading
    def _load_new(self, files: list[LandedObject], report: LoadReport) -> None:
        prepared = self._prepare(files, report)
        loaded_at = datetime.now(UTC)
        while prepared:
            table_schema = self._evolve_schema(prepared, report)
            prepared = [p for p in prepared if p.file.key not in report.quarantined]
            if not prepared:
                return
            combined = self.workdir / "combined.parquet"
            row_counts = self._write_combined(prepared, table_schema, combined, report, loaded_at)
            if row_counts is None:  # a file failed while being rewritten: start again without it
                prepared = [p for p in prepared if p.file.key not in report.quarantined]
                continue
            batch_files = [p.file for p in prepared]
            try:
                job_id = self._run_job(batch_files, combined, row_counts, loaded_at)
            except _Restamp as restamp:
                # clocks may differ between workers: stamp strictly after the announced watermark
                loaded_at = max(datetime.now(UTC), restamp.watermark + timedelta(microseconds=1))
                log.info(
                    "%s: a compaction announced watermark %s; stamping this batch %s and loading it again",
                    self.table.qualified_name,
                    restamp.watermark.isoformat(),
                    loaded_at.isoformat(),
                )
                continue
            except LoadJobFailed as failure:
                if len(prepared) == 1:
                    self._quarantine(report, prepared[0].file, f"BigQuery refused the file: {failure}")
                else:
                    # BigQuery refused the combined file: load one file at a time to find the culprit(s)
                    for single in prepared:
                        self._load_new([single.file], report)
                return
            report.job_id = job_id
            report.loaded.update(row_counts)
            self.ledger.record(
                self.table.qualified_name,
                [LedgerEntry(f.key, f.etag, LOADED, job_id, row_counts[f.key]) for f in batch_files],
            )
            return

    def _prepare(self, files: list[LandedObject], report: LoadReport) -> list[_Prepared]:
        prepared = []
        for index, f in enumerate(files):
            path = self.workdir / f"source-{index:06d}.dms"
            if not self._fetch(f, path, report):
                continue
            change_file = landed_change_file(self.pipeline, self.table, f, str(path))
            try:
                types = self._column_types(change_file)
            except BadInput as error:  # this file cannot be loaded as it is: quarantined, the rest goes on
                self._quarantine(report, f, what_is_wrong(error))
                continue
            prepared.append(_Prepared(f, change_file, types))
        return prepared

    def _evolve_schema(self, prepared: list[_Prepared], report: LoadReport) -> pa.Schema:
        """Check every file against the table, add new columns, return the load file schema."""
        existing = self._get_table()
        known: dict[str, ColumnType] = table_types(existing.schema) if existing else {}
        order: list[str] = [f.name for f in existing.schema] if existing else []
        batch_types: dict[str, ColumnType] = {}
        for p in prepared:
            problems = []
            for name, kind in p.types.items():
                if kind is None:
                    continue
                if name in known:
                    problem = conflicts(known[name], kind)
                elif name in batch_types and batch_types[name].name != kind.name:
                    problem = f"has type {kind.name} here but {batch_types[name].name} in an earlier file"
                else:
                    problem = None
                if problem:
                    problems.append(f"column {name} {problem}")
            if problems:
                self._quarantine(report, p.file, "schema cannot be appended: " + "; ".join(problems))
                continue
            for name, kind in p.types.items():
                if kind is not None:
                    batch_types[name] = batch_types[name].merge(kind) if name in batch_types else kind
                if name not in order:
                    order.append(name)
        live = [p for p in prepared if p.file.key not in report.quarantined]
        data_columns = [n for n in order if n not in META_COLUMNS]
        new_columns = [n for n in data_columns if n not in known]
        for name in new_columns:
            batch_types.setdefault(name, ColumnType("STRING"))  # only ever NULL so far
        meta = metadata_types()
        if live:
            self._apply_schema(existing, data_columns, new_columns, batch_types, meta)
        fields = []
        for name in data_columns:
            kind = batch_types.get(name) or known[name]
            if name not in batch_types and kind.name == "BIGNUMERIC":
                kind = ColumnType("BIGNUMERIC", 29, 9)  # absent from every file: NULLs only
            fields.append(pa.field(name, kind.parquet_type()))
        fields += [pa.field(name, meta[name].parquet_type()) for name in META_COLUMNS]
        return pa.schema(fields)

    def _apply_schema(self, existing, data_columns, new_columns, batch_types, meta) -> None:
        if existing is None:
            schema = [bigquery.SchemaField(n, batch_types[n].name, mode="NULLABLE") for n in data_columns]
            schema += [bigquery.SchemaField(n, meta[n].name, mode="NULLABLE") for n in META_COLUMNS]
            table = bigquery.Table(self.changelog_id, schema=schema)
            table.time_partitioning = bigquery.TimePartitioning(field="_cdc_loaded_at")
            clustering = [c for c in self.table.primary_key if batch_types[c].name in CLUSTERABLE][:4]
            table.clustering_fields = clustering or ["_cdc_source_key"]
            table.description = (
                f"cdc-sync changelog of {self.table.qualified_name} (pipeline {self.pipeline.name}); "
                f"latest state: view {self.target.latest_view(self.table)}"
            )
            self.client.create_table(table, exists_ok=True)
        elif new_columns:
            log.info(
                "%s: adding column(s) %s to %s", self.table.qualified_name, ", ".join(new_columns), self.changelog_id
            )
            existing.schema = list(existing.schema) + [
                bigquery.SchemaField(n, batch_types[n].name, mode="NULLABLE") for n in new_columns
            ]
            self.client.update_table(existing, ["schema"])

    def _write_combined(
        self, prepared: list[_Prepared], schema: pa.Schema, out: Path, report: LoadReport, loaded_at: datetime
    ) -> dict[str, int] | None:
        counts: dict[str, int] = {}
        with pq.ParquetWriter(out, schema, compression="snappy") as writer:
            for p in prepared:
                rows = 0
                try:
                    for batch in p.change_file.changes(loaded_at):
                        writer.write_batch(_project(batch, schema, p.file.key))
                        rows += batch.num_rows
                except BadInput as error:  # this file cannot be loaded as it is: quarantined, the rest goes on
                    self._quarantine(report, p.file, what_is_wrong(error))
                    return None
                counts[p.file.key] = rows
        return counts

    def _run_job(
        self, files: list[LandedObject], combined: Path, row_counts: dict[str, int], loaded_at: datetime
    ) -> str:
        """Insert (or find) the load job for exactly these files; returns its id once it succeeded.
        Raises _Restamp when a compaction announced a watermark the batch's stamp is not after."""
        fenced = 0
        for attempt in range(_MAX_JOB_ATTEMPTS):
            job_id = job_id_for(self.pipeline.name, self.table, files, attempt)
            try:
                self.client.get_job(job_id, location=self.target.location)
            except NotFound:
                pass
            else:
                if self._job_succeeded(job_id):
                    log.info("%s: load job %s already done; not loading again", self.table.qualified_name, job_id)
                    return job_id
                continue  # that attempt failed or was fenced earlier; this attempt gets the next id
            if fenced:  # two loads that fenced each other: one of them goes first
                time.sleep(random.uniform(0, min(2.0**fenced, 30.0)))
            self.ledger.record(
                self.table.qualified_name,
                [LedgerEntry(f.key, f.etag, PENDING, job_id, row_counts[f.key]) for f in files],
            )
            self._settle_other_claims(files, job_id)
            self._check_compaction_watermark(loaded_at)
            try:
                job = self._insert_load_job(job_id, combined)
            except Conflict:  # a worker with the same batch inserted it first, or a rival fenced this id
                found = self.client.get_job(job_id, location=self.target.location)
                if not self._is_our_load(found):
                    log.info(
                        "%s: job id %s was fenced by a concurrent load; claiming again",
                        self.table.qualified_name,
                        job_id,
                    )
                    fenced += 1
                    continue
                job = cast(bigquery.LoadJob, found)
            try:
                job.result()
            except GoogleAPICallError as error:
                reason = _job_error(job, error)
                log.warning("%s: load job %s failed: %s", self.table.qualified_name, job_id, reason)
                raise LoadJobFailed(reason) from error
            log.info(
                "%s: load job %s appended %s rows from %d file(s)",
                self.table.qualified_name,
                job_id,
                job.output_rows,
                len(files),
            )
            return job_id
        raise RuntimeError(f"{self.table.qualified_name}: {_MAX_JOB_ATTEMPTS} failed load attempts for one batch")

    def _check_compaction_watermark(self, loaded_at: datetime) -> None:
        """Read after this load's claim is written, before its job is inserted. A compaction
        announces its watermark, then reads the open claims: if it announced before this read,
        the batch is restamped after the watermark; if after, it reads this claim and fences or
        waits on this job before it reads the changelog (docs/design.md, "Compaction")."""
        from cdc_sync.targets.bigquery.compaction import announced_watermark

        announced = announced_watermark(self.client, self.target, self.pipeline.name, self.table.qualified_name)
        if announced is not None and loaded_at <= announced:
            raise _Restamp(announced)

    def _settle_other_claims(self, files: list[LandedObject], job_id: str) -> None:
        """Fence or wait on every other load job that claimed one of `files`; raises
        _ClaimedElsewhere (after recording them) when one appended some of them."""
        wanted = {(f.key, f.etag) for f in files}
        others: dict[str, list[LedgerEntry]] = {}
        for claim in self.ledger.claims(self.table.qualified_name, [f.key for f in files]):
            if (claim.object_key, claim.etag) in wanted and claim.job_id and claim.job_id != job_id:
                others.setdefault(claim.job_id, []).append(claim)
        appended: list[LedgerEntry] = []
        for other_id, claims in sorted(others.items()):
            if self._fence(other_id):
                continue
            job = self.client.get_job(other_id, location=self.target.location)
            if self._load_succeeded(job):
                appended += [LedgerEntry(c.object_key, c.etag, LOADED, other_id, c.row_count) for c in claims]
        if appended:
            keys = {e.object_key for e in appended}
            log.info(
                "%s: %d object(s) of this batch were appended by a concurrent load job; loading the rest",
                self.table.qualified_name,
                len(keys),
            )
            self.ledger.record(self.table.qualified_name, appended)
            raise _ClaimedElsewhere(keys)

    def _fence(self, job_id: str) -> bool:
        """Insert a zero-byte query job under `job_id`: True if it was free (no load can ever
        run under it now), False if a job with that id exists."""
        config = bigquery.QueryJobConfig(labels={"cdc_sync": "fence"})
        try:
            self.client.query(
                "SELECT 1", job_config=config, job_id=job_id, job_retry=None, location=self.target.location
            )
        except Conflict:
            return False
        log.info("%s: fenced job id %s (claimed, never inserted)", self.table.qualified_name, job_id)
        return True

    def _insert_load_job(self, job_id: str, combined: Path) -> bigquery.LoadJob:
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            schema_update_options=[bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION],
            decimal_target_types=["NUMERIC", "BIGNUMERIC"],
        )
        _limit_upload_chunk()
        with combined.open("rb") as stream:
            return self.client.load_table_from_file(
                stream,
                self.changelog_id,
                job_id=job_id,
                job_config=config,
                location=self.target.location,
                size=os.path.getsize(combined),
            )

    # ------------------------------------------------------------- quarantine
    def _record_quarantine(self, f: LandedObject, reason: str, conn: Any) -> None:
        self.ledger.record(self.table.qualified_name, [LedgerEntry(f.key, f.etag, QUARANTINED, None, None, reason)])

    # ---------------------------------------------------------------- helpers
    def _ensure_dataset(self) -> None:
        dataset = bigquery.Dataset(f"{self.target.project}.{self.target.dataset}")
        dataset.location = self.target.location
        self.client.create_dataset(dataset, exists_ok=True)

    def _get_table(self) -> bigquery.Table | None:
        try:
            return self.client.get_table(self.changelog_id)
        except NotFound:
            return None

    def _table_exists(self) -> bool:
        return self._get_table() is not None

    def _view_exists(self) -> bool:
        try:
            self.client.get_table(f"{self.target.project}.{self.target.dataset}.{self.target.latest_view(self.table)}")
            return True
        except NotFound:
            return False


def _project(batch: pa.RecordBatch, schema: pa.Schema, key: str) -> pa.RecordBatch:
    """Columns in the load file's order and types; columns the file lacks become NULL."""
    columns = []
    names = set(batch.schema.names)
    for fld in schema:
        if fld.name not in names:
            columns.append(pa.nulls(batch.num_rows, fld.type))
            continue
        column = batch.column(fld.name)
        if pa.types.is_dictionary(column.type):
            column = column.dictionary_decode()
        try:
            columns.append(column.cast(fld.type) if column.type != fld.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ChangeFileError(key, f"column {fld.name}: value does not fit {fld.type} ({error})") from error
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _job_error(job, error: Exception) -> str:
    result = getattr(job, "error_result", None) or {}
    return result.get("message") or str(error)


def _limit_upload_chunk() -> None:
    from google.cloud.bigquery import client as bq_client_module

    if getattr(bq_client_module, "_DEFAULT_CHUNKSIZE", 0) > UPLOAD_CHUNK_BYTES:
        bq_client_module._DEFAULT_CHUNKSIZE = UPLOAD_CHUNK_BYTES
