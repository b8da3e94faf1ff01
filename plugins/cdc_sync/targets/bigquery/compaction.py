"""Compact a BigQuery changelog into a state table so reading the latest state costs the live rows.

`<schema>_<table>_state` holds, per primary key, the change with the highest position among
every changelog row stamped (`_cdc_loaded_at`) before the table's compaction watermark;
deletes stay in it as tombstones. The latest-state view ranks the state table together with
only the changelog partitions from the watermark on (a constant in the view's text, so
BigQuery prunes the older partitions), which gives the same rows as ranking the whole
changelog — docs/design.md has the argument.

A compaction of one table:
1. records an `intent` row with its watermark W (the compaction worker's clock) in
   `<ledger>_compactions`;
2. settles every load that has claimed objects of the table and not appended them yet
   (bigquery.ledger's `pending` rows): a claim whose job does not exist is fenced (a query
   job under its id, so it can never run), a job that exists is waited on. A load, after
   writing its claim, reads the newest announced watermark and restamps its rows after it
   if needed (bigquery.loader), so either the load sees W or the compaction sees the claim:
   every row stamped before W is in the changelog when step 3 reads it;
3. MERGEs the rows stamped in [previous done watermark, W) into the state table, the
   position guard making it idempotent: a retried or concurrent compaction applies
   nothing twice and never puts an older change back;
4. records a `done` row and points the view at the newest done watermark.
A compaction that fails between steps leaves the view reading from the previous watermark,
which is still correct: a row both in the state and in the read partitions is the same change.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from google.api_core.exceptions import Conflict, GoogleAPICallError, NotFound
from google.cloud import bigquery

from cdc_sync import sql
from cdc_sync.config import BigQueryTarget, Pipeline, TableSpec
from cdc_sync.errors import SetupError

log = logging.getLogger(__name__)

INTENT, DONE = "intent", "done"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Marks:
    """Where the compactions of one table stand (None: no compaction yet)."""

    announced: datetime | None
    done: datetime | None
    done_at: datetime | None


@dataclass
class CompactionReport:
    table: str
    watermark: datetime | None = None
    merged_rows: int = 0
    settled_claims: int = 0
    skipped: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "watermark": self.watermark.isoformat() if self.watermark else None,
            "merged_rows": self.merged_rows,
            "settled_claims": self.settled_claims,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def compactions_table(target: BigQueryTarget) -> str:
    return f"{target.ledger_table}_compactions"


def timestamp_literal(moment: datetime) -> str:
    """A UTC timestamp for the view's text (we build it; it is never user input)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def announced_watermark(client: bigquery.Client, target: BigQueryTarget, pipeline: str, table: str) -> datetime | None:
    """The newest watermark any compaction of `table` has announced; a load stamps its rows after it."""
    return read_marks(client, target, pipeline, table).announced


def read_marks(client: bigquery.Client, target: BigQueryTarget, pipeline: str, table: str) -> Marks:
    statement = sql.render(
        "bigquery/compaction_marks.sql",
        project=target.project,
        dataset=target.dataset,
        table=compactions_table(target),
    )
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("pipeline", "STRING", pipeline),
            bigquery.ScalarQueryParameter("table_name", "STRING", table),
        ]
    )
    try:
        rows = list(client.query(statement, job_config=config, location=target.location).result())
    except NotFound:  # no compaction has ever run in this dataset
        return Marks(None, None, None)
    row = rows[0] if rows else None
    if row is None:
        return Marks(None, None, None)
    return Marks(_utc(row["announced"]), _utc(row["done"]), _utc(row["done_at"]))


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Compactor:
    """Compacts one table's changelog into its state table and keeps its view on the watermark."""

    def __init__(self, pipeline: Pipeline, table: TableSpec, client: bigquery.Client):
        if pipeline.bigquery is None:
            raise ValueError(f"pipeline {pipeline.name} has no BigQuery target")
        self.pipeline = pipeline
        self.table = table
        self.client = client
        self.target = pipeline.bigquery
        self.changelog = self.target.changelog_table(table)
        self.state = self.target.state_table(table)
        self.view = self.target.latest_view(table)

    # ------------------------------------------------------------------ public
    def due(self, now: datetime | None = None) -> str:
        """Why this table is due a compaction now ("" when it is not), by the configured cadence."""
        settings = self.target.compaction
        if settings is None:
            return ""
        marks = self.marks()
        since = marks.done_at or EPOCH
        loads = self._loads_since(since)
        if loads == 0:
            return ""
        if loads >= settings.every_loads:
            return f"{loads} load(s) since the last compaction (every_loads: {settings.every_loads})"
        now = now or datetime.now(UTC)
        if settings.every_minutes and now - since >= timedelta(minutes=settings.every_minutes):
            return f"last compaction {since:%Y-%m-%d %H:%M} UTC (every_minutes: {settings.every_minutes})"
        return ""

    def compact(self, *, rebuild: bool = False, now: datetime | None = None) -> CompactionReport:
        """One compaction (see the module docstring); `rebuild` first rebuilds the state from
        the whole changelog instead of merging into it."""
        started = datetime.now(UTC)
        report = CompactionReport(self.table.qualified_name)
        changelog = self._get(self.changelog)
        if changelog is None:
            report.skipped = "no changelog yet"
            return report
        if rebuild and self.target.compaction is not None and self.target.compaction.retention_days:
            raise SetupError(
                f"{self.table.qualified_name}: cannot rebuild {self.state} from {self.changelog}: "
                "bigquery.compaction.retention_days has dropped compacted changelog partitions. "
                "Remove retention_days (new history only) or restore the changelog first."
            )
        self._ensure_compactions_table()
        previous = self.marks().done
        if previous is not None and not rebuild and self._get(self.state) is None:
            log.warning(
                "%s: %s is missing although compacted up to %s; merging the whole changelog into a new one",
                self.table.qualified_name,
                self.state,
                timestamp_literal(previous),
            )
            previous = None
        watermark = now or datetime.now(UTC)
        if previous is not None and watermark <= previous:
            watermark = previous + timedelta(microseconds=1)
        compaction_id = uuid.uuid4().hex
        self._record(compaction_id, INTENT, watermark, None)
        report.settled_claims = self._settle_open_claims()
        # the columns as they are now: a load that added one has committed before this point
        changelog = self._get(self.changelog) or changelog
        columns = [f.name for f in changelog.schema]
        if rebuild:
            report.merged_rows = self._rebuild(changelog, columns, watermark)
        else:
            self.ensure_state(changelog)
            report.merged_rows = self._merge(columns, previous, watermark)
        self._record(compaction_id, DONE, watermark, report.merged_rows)
        self.refresh_view()
        self._apply_retention()
        report.watermark = watermark
        report.seconds = (datetime.now(UTC) - started).total_seconds()
        log.info(
            "%s: compacted up to %s: %d state row(s) changed, %d open claim(s) settled, %.1fs",
            self.table.qualified_name,
            timestamp_literal(watermark),
            report.merged_rows,
            report.settled_claims,
            report.seconds,
        )
        return report

    def marks(self) -> Marks:
        return read_marks(self.client, self.target, self.pipeline.name, self.table.qualified_name)

    def view_statement(self, changelog: bigquery.Table) -> str:
        """The view's DDL: compacted (state ∪ changelog from the done watermark) once a compaction
        finished and the state table exists, else ranking the whole changelog."""
        done = self.marks().done
        state = self._get(self.state) if done is not None else None
        if state is not None:
            self.ensure_state(changelog, state)
        return sql.render(
            "bigquery/latest_state_view.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            view=self.view,
            changelog=self.changelog,
            state=self.state if state is not None else None,
            watermark=timestamp_literal(done) if done is not None else None,
            columns=[f.name for f in changelog.schema],
            primary_key=self.table.primary_key,
        )

    def refresh_view(self) -> None:
        changelog = self._get(self.changelog)
        if changelog is None:
            return
        self.client.query(self.view_statement(changelog), location=self.target.location).result()

    def ensure_state(self, changelog: bigquery.Table, state: bigquery.Table | None = None) -> bigquery.Table:
        """The state table with every column of the changelog (new columns added as they appear)."""
        state = state or self._get(self.state)
        if state is None:
            table = bigquery.Table(self._id(self.state), schema=list(changelog.schema))
            table.clustering_fields = changelog.clustering_fields
            table.description = (
                f"cdc-sync compacted state of {self.table.qualified_name}: the latest change per key "
                f"(deletes kept as tombstones); view {self.view} reads it"
            )
            return self.client.create_table(table, exists_ok=True)
        have = {f.name for f in state.schema}
        missing = [f for f in changelog.schema if f.name not in have]
        if missing:
            log.info(
                "%s: adding column(s) %s to %s",
                self.table.qualified_name,
                ", ".join(f.name for f in missing),
                self.state,
            )
            state.schema = list(state.schema) + missing
            state = self.client.update_table(state, ["schema"])
        return state

    # ---------------------------------------------------------------- steps
    def _settle_open_claims(self) -> int:
        """Fence every claimed load job that does not exist, wait on every one that does."""
        statement = sql.render(
            "bigquery/compaction_open_claims.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            ledger=self.target.ledger_table,
        )
        try:
            rows = list(self.client.query(statement, job_config=self._params(), location=self.target.location).result())
        except NotFound:  # no ledger: nothing was ever claimed
            return 0
        for row in rows:
            job_id = row["job_id"]
            try:
                self.client.query(
                    "SELECT 1",
                    job_config=bigquery.QueryJobConfig(labels={"cdc_sync": "fence"}),
                    job_id=job_id,
                    job_retry=None,
                    location=self.target.location,
                )
                log.info("%s: fenced claimed load job %s (never inserted)", self.table.qualified_name, job_id)
                continue
            except Conflict:
                pass
            job = self.client.get_job(job_id, location=self.target.location)
            try:
                job.result()  # a running load ends before this compaction reads the changelog
            except GoogleAPICallError:
                pass  # a failed load appended nothing
        return len(rows)

    def _merge(self, columns: list[str], previous: datetime | None, watermark: datetime) -> int:
        statement = sql.render(
            "bigquery/compaction_merge.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            state=self.state,
            changelog=self.changelog,
            columns=columns,
            primary_key=self.table.primary_key,
            with_low=previous is not None,
        )
        job = self.client.query(statement, job_config=self._params(previous, watermark), location=self.target.location)
        job.result()
        return int(job.num_dml_affected_rows or 0)

    def _rebuild(self, changelog: bigquery.Table, columns: list[str], watermark: datetime) -> int:
        statement = sql.render(
            "bigquery/compaction_rebuild.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            state=self.state,
            changelog=self.changelog,
            columns=columns,
            clustering=changelog.clustering_fields or [],
            primary_key=self.table.primary_key,
            from_state=False,
            with_low=False,
        )
        self.client.query(statement, job_config=self._params(None, watermark), location=self.target.location).result()
        state = self._get(self.state)
        return int(state.num_rows or 0) if state is not None else 0

    def _apply_retention(self) -> None:
        """Delete changelog partitions older than retention_days that the state fully holds."""
        settings = self.target.compaction
        if settings is None or not settings.retention_days:
            return
        done = self.marks().done
        if done is None:
            return
        # whole days only, and only days that end before the done watermark: every row in them is compacted
        horizon = min(done, datetime.now(UTC) - timedelta(days=settings.retention_days))
        before = horizon.replace(hour=0, minute=0, second=0, microsecond=0)
        statement = sql.render(
            "bigquery/compaction_retention.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            changelog=self.changelog,
        )
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("before", "TIMESTAMP", before)]
        )
        job = self.client.query(statement, job_config=config, location=self.target.location)
        job.result()
        if job.num_dml_affected_rows:
            log.info(
                "%s: retention dropped %d compacted changelog row(s) stamped before %s",
                self.table.qualified_name,
                job.num_dml_affected_rows,
                timestamp_literal(before),
            )

    # -------------------------------------------------------------- helpers
    def _loads_since(self, since: datetime) -> int:
        statement = sql.render(
            "bigquery/compaction_loads_since.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            ledger=self.target.ledger_table,
        )
        config = self._params()
        config.query_parameters = [
            *config.query_parameters,
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
        ]
        try:
            rows = list(self.client.query(statement, job_config=config, location=self.target.location).result())
        except NotFound:
            return 0
        return int(rows[0]["loads"]) if rows else 0

    def _record(self, compaction_id: str, phase: str, watermark: datetime, merged_rows: int | None) -> None:
        statement = sql.render(
            "bigquery/compaction_record.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            table=compactions_table(self.target),
        )
        config = self._params()
        config.query_parameters = [
            *config.query_parameters,
            bigquery.ScalarQueryParameter("compaction_id", "STRING", compaction_id),
            bigquery.ScalarQueryParameter("phase", "STRING", phase),
            bigquery.ScalarQueryParameter("watermark", "TIMESTAMP", watermark),
            bigquery.ScalarQueryParameter("merged_rows", "INT64", merged_rows),
        ]
        self.client.query(statement, job_config=config, location=self.target.location).result()

    def _ensure_compactions_table(self) -> None:
        statement = sql.render(
            "bigquery/compaction_table.sql",
            project=self.target.project,
            dataset=self.target.dataset,
            table=compactions_table(self.target),
        )
        self.client.query(statement, location=self.target.location).result()

    def _params(self, low: datetime | None = None, high: datetime | None = None) -> bigquery.QueryJobConfig:
        params: list = [
            bigquery.ScalarQueryParameter("pipeline", "STRING", self.pipeline.name),
            bigquery.ScalarQueryParameter("table_name", "STRING", self.table.qualified_name),
        ]
        if high is not None:
            params.append(bigquery.ScalarQueryParameter("high", "TIMESTAMP", high))
        if low is not None:
            params.append(bigquery.ScalarQueryParameter("low", "TIMESTAMP", low))
        return bigquery.QueryJobConfig(query_parameters=params)

    def _id(self, name: str) -> str:
        return f"{self.target.project}.{self.target.dataset}.{name}"

    def _get(self, name: str) -> bigquery.Table | None:
        try:
            return self.client.get_table(self._id(name))
        except NotFound:
            return None


def compact_pipeline(
    pipeline: Pipeline, client: bigquery.Client, *, force: bool = False, rebuild: bool = False
) -> list[CompactionReport]:
    """Compact every table of the pipeline that is due (all of them with `force` or `rebuild`)."""
    reports = []
    for table in pipeline.tables:
        compactor = Compactor(pipeline, table, client)
        reason = "requested" if force or rebuild else compactor.due()
        if not reason:
            reports.append(CompactionReport(table.qualified_name, skipped="not due"))
            continue
        log.info("%s: compacting (%s)", table.qualified_name, reason)
        reports.append(compactor.compact(rebuild=rebuild))
    return reports
