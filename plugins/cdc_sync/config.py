"""Pipelines are configuration: load `pipelines.yaml`, validate it, return typed objects.

Validation is a JSON Schema (schemas/pipelines.schema.json) plus a few cross-field checks.
Every problem becomes one ConfigError naming the file, the pipeline and the field.
Nothing here touches the network: the DAG file calls `load_pipelines` at parse time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from cdc_sync.errors import SetupError

SCHEMA_PATH = Path(__file__).with_name("schemas") / "pipelines.schema.json"
CONFIG_ENV = "CDC_SYNC_CONFIG"


class ConfigError(SetupError, ValueError):
    """The pipeline configuration is invalid; the message names file, pipeline and field."""


@dataclass(frozen=True)
class TableSpec:
    schema: str
    name: str
    primary_key: tuple[str, ...] = ()
    commit_timestamp_column: str | None = None
    columns: tuple[str, ...] = ()  # Firehose: the CSV columns in order; DMS CSV: "name type" per column
    updated_at_column: str | None = None  # source column with each row's last change time (reconcile: lag)
    reconcile_exclude: tuple[str, ...] = ()  # source columns reconciliation leaves out

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_types(self) -> tuple[tuple[str, str | None], ...]:
        """(name, declared MySQL type or None) per declared column."""
        return tuple(
            (parts[0], parts[1] if len(parts) > 1 else None) for parts in (c.split(None, 1) for c in self.columns)
        )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.column_types)

    @property
    def target_name(self) -> str:
        """Base name of this table's objects in a target (`<schema>_<table>`)."""
        return f"{self.schema}_{self.name}"


@dataclass(frozen=True)
class DmsCsvSettings:
    """A DMS S3 target endpoint's CSV settings, as that endpoint was configured
    (`file_format: csv`; read by dms/csv_files.py)."""

    add_column_name: bool = False  # AddColumnName: the first line names the columns
    delimiter: str = ","  # CsvDelimiter
    null_value: str = ""  # CsvNullValue: how a NULL is written
    rfc4180: bool = True  # Rfc4180: values with quotes, delimiters or line breaks are quoted


@dataclass(frozen=True)
class DynamoDbStreamSettings:
    """`kind: dynamodb_stream`: the stream a capture step reads (sources/dynamodb_stream)."""

    stream: str  # a table name (its latest stream) or a stream ARN
    filter_criteria: dict | None = None  # as for a Lambda event source mapping
    extra_attributes_column: str | None = None  # JSON text of the attributes `columns` does not declare
    checkpoint_prefix: str = "cdc-sync/checkpoints/"
    max_records_per_run: int = 100_000
    max_seconds_per_run: float = 300.0

    def checkpoint_key(self, pipeline: str, table: TableSpec) -> str:
        return f"{self.checkpoint_prefix}{pipeline}/{table.qualified_name}.json"


@dataclass(frozen=True)
class BinlogSettings:
    """`kind: binlog`: the MySQL/MariaDB server whose ROW binlog a capture step reads
    (sources/binlog)."""

    conn_id: str  # an Airflow MySQL connection to the source server (REPLICATION SLAVE/CLIENT, SELECT)
    server_id: int = 4_194_001  # the replica id the capture registers with; unique among the server's replicas
    checkpoint_prefix: str = "cdc-sync/checkpoints/"
    max_events_per_run: int = 200_000  # row changes read before the run lands what it has
    max_seconds_per_run: float = 300.0
    snapshot_chunk_rows: int = 50_000  # rows per full-load file of a snapshot (read as a stream)
    kinesis_stream: str | None = None  # also publish each row change as JSON here (the seed's stream)

    def checkpoint_key(self, pipeline: str) -> str:
        return f"{self.checkpoint_prefix}{pipeline}/binlog.json"


@dataclass(frozen=True)
class AuditLogSettings:
    """`source.audit_log`: the Aurora audit log's Kinesis stream (sources/audit_log). Any
    pipeline with it may be scheduled on its tables' audit assets (`schedule: audit_log`);
    a `kind: audit_log` pipeline captures it as its audit trail."""

    stream: str
    source_name: str | None = None  # mysql://<source_name>/<schema>/<table>; default: the pipeline's name
    aws_conn_id: str | None = None  # default: source.aws_conn_id
    poll_interval_seconds: float = 5.0
    events: str = "all"  # the trail: every parsed event, or "writes" only
    checkpoint_prefix: str = "cdc-sync/checkpoints/"
    max_records_per_run: int = 100_000
    max_seconds_per_run: float = 300.0

    def checkpoint_key(self, pipeline: str) -> str:
        return f"{self.checkpoint_prefix}{pipeline}/audit_log.json"


@dataclass(frozen=True)
class Notifications:
    """S3 event notifications of the landing bucket, sent to an SQS queue: a run starts when
    files land (orchestration.events); the cron schedule stays as the sweep."""

    queue_url: str
    aws_conn_id: str | None = None  # unset: the source's aws_conn_id


@dataclass(frozen=True)
class LandingSource:
    """Where change data lands: DMS table folders, or a Firehose delivery prefix."""

    bucket: str
    kind: str = "dms"
    prefix: str = ""
    file_format: str = "parquet"  # "firehose" for Firehose objects (CSV lines from the transform Lambda)
    aws_conn_id: str = "aws_default"
    quarantine_prefix: str = "cdc-sync/quarantine/"
    error_prefix: str = "processing-failed/"  # Firehose: records the transform Lambda refused
    stream: str | None = None  # Firehose: only objects of this delivery stream
    csv: DmsCsvSettings = field(default_factory=DmsCsvSettings)  # DMS CSV: the endpoint's settings
    # DMS: the endpoint's DatePartitionTimezone, in which it names date folders and CDC files
    date_partition_timezone: str | None = None
    # Firehose: how the producer writes CSV (firehose.dialects): rfc4180 or backslash_escaped
    csv_dialect: str = "rfc4180"
    csv_null_value: str | None = None  # Firehose rfc4180: the field text that stands for NULL (none if unset)
    dynamodb: DynamoDbStreamSettings | None = None  # kind dynamodb_stream: the stream to capture
    notifications: Notifications | None = None  # S3 → SQS: run when files land
    binlog: BinlogSettings | None = None  # kind binlog: the server whose binlog is captured
    audit_log: AuditLogSettings | None = None  # the audit log's stream: schedule audit_log, kind audit_log

    @property
    def file_time_zone(self) -> tzinfo:
        """The zone DMS's CDC file names and date folders are written in (UTC unless set)."""
        return ZoneInfo(self.date_partition_timezone) if self.date_partition_timezone else UTC

    def table_prefix(self, table: TableSpec) -> str:
        """DMS: `<prefix>/<schema>/<table>/`. Firehose: the delivery prefix itself."""
        base = self.prefix.strip("/")
        if self.kind == "firehose":
            if "!{" in self.prefix:  # expressions: as the delivery stream has it (see firehose.layout)
                return self.prefix.lstrip("/")
            return f"{base}/" if base else ""
        return f"{base}/{table.schema}/{table.name}/" if base else f"{table.schema}/{table.name}/"

    def object_name(self, table: TableSpec, key: str) -> str:
        """The key relative to the table's folder: what change positions name."""
        prefix = self.table_prefix(table)
        return key[len(prefix) :] if key.startswith(prefix) else key


@dataclass(frozen=True)
class Compaction:
    """BigQuery compaction of the changelog into a state table (bigquery.compaction)."""

    every_loads: int = 12  # compact a table once this many load jobs appended to it since the last compaction
    every_minutes: int = 60  # ... or once this long has passed since the last one, with at least one new load
    retention_days: int | None = None  # drop compacted changelog partitions older than this; None keeps all


@dataclass(frozen=True)
class BigQueryTarget:
    project: str
    dataset: str
    gcp_conn_id: str = "google_cloud_default"
    location: str = "US"
    ledger_table: str = "_cdc_sync_ledger"
    compaction: Compaction | None = None

    def changelog_table(self, table: TableSpec) -> str:
        return f"{table.target_name}_changelog"

    def state_table(self, table: TableSpec) -> str:
        """With compaction: the latest change per key loaded before the compaction watermark."""
        return f"{table.target_name}_state"

    def latest_view(self, table: TableSpec) -> str:
        return table.target_name

    def asset_uri(self, table: TableSpec) -> str:
        return f"bigquery://{self.project}/{self.dataset}/{self.latest_view(table)}"


@dataclass(frozen=True)
class AuroraTarget:
    """Aurora MySQL (or any MySQL/MariaDB) kept equal to the source: `mode: merge`."""

    database: str
    mysql_conn_id: str = "aurora_default"
    mode: str = "merge"  # append: Firehose rows added to an existing table
    table: str | None = None  # append mode: the target table (default <schema>_<table>)
    method: str = "local_infile"  # aurora_s3 on Aurora: the cluster reads S3 itself
    pool: str = "cdc_sync_aurora"  # caps concurrent Aurora connections; `make pools` creates it
    pool_slots: int = 4
    chunk_rows: int = 500_000
    load_connections: int = 2  # merge: chunks of a file applied in parallel, one pool slot each
    widen_decimals: bool = False  # merge: follow a source DECIMAL that grew (MODIFY COLUMN) instead of refusing
    staging_prefix: str = "cdc-sync/staging/"
    ledger_table: str = "_cdc_sync_ledger"
    purge_tombstones_after_hours: int | None = None  # merge: purge tombstones older than this (+ the grace)
    purge_batch_rows: int = 1000  # merge: tombstones deleted per short transaction

    @property
    def task_pool_slots(self) -> int:
        """Pool slots one load task takes: one per connection it opens."""
        return self.load_connections if self.mode == "merge" else 1

    def state_table(self, table: TableSpec) -> str:
        """Every key with its latest change, deletes kept as tombstones."""
        return f"{table.target_name}_state"

    def view(self, table: TableSpec) -> str:
        """What users query: the live rows of the state table."""
        return table.target_name

    def append_table(self, table: TableSpec) -> str:
        return self.table or table.target_name

    def asset_uri(self, table: TableSpec) -> str:
        return f"mysql://{self.mysql_conn_id}/{self.database}/{self.view(table)}"


@dataclass(frozen=True)
class Reconcile:
    """Compare each target with the source database DMS reads (`cdc_<name>_reconcile` DAG)."""

    source_conn_id: str  # a MySQL/Aurora connection to the source database
    schedule: str | None = "@daily"  # a cron, a preset, "assets" (after every load that changed a table) or null
    max_buckets: int = 4096
    leaf_rows: int = 2000
    max_fetch_rows: int = 200_000  # per side; a table that differs more is reported as partial
    sample_keys: int = 20
    recheck_seconds: float = 60.0
    reports_prefix: str = "cdc-sync/reports/"  # in the landing bucket
    results_table: str = "_cdc_sync_reconcile"  # in each target
    pool: str | None = None  # default: the Aurora target's pool, else options.pool
    checksum: str = "fast"  # fast: CRC32/MD5 sums (chance); strong: SHA-256 digests (crafted values)


@dataclass(frozen=True)
class Options:
    late_file_grace_minutes: int = 15
    poke_interval_seconds: int = 60
    wait_timeout_minutes: int = 50
    max_batch_files: int = 2000
    max_batch_bytes: int = 4 * 1024**3
    retries: int = 3
    pool: str = "default_pool"


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: LandingSource
    tables: tuple[TableSpec, ...]
    bigquery: BigQueryTarget | None
    aurora: AuroraTarget | None = None
    schedule: str | None = "*/10 * * * *"
    description: str = ""
    options: Options = field(default_factory=Options)
    reconcile: Reconcile | None = None

    @property
    def dag_id(self) -> str:
        return f"cdc_{self.name}"

    @property
    def reconcile_dag_id(self) -> str:
        return f"cdc_{self.name}_reconcile"

    def table(self, qualified_name: str) -> TableSpec:
        for table in self.tables:
            if table.qualified_name == qualified_name:
                return table
        raise ConfigError(f"pipeline {self.name!r} has no table {qualified_name!r}")


@cache
def _validator():
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def _field_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error) -> str:
    if error.validator == "pattern" and "description" in error.schema:
        return f"{error.instance!r} is not {error.schema['description']}"
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    return error.message


def parse_pipelines(document: Any, source_name: str = "<config>") -> list[Pipeline]:
    """Validate a parsed YAML document and build the Pipeline objects."""
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        path = list(error.absolute_path)
        where = ""
        if len(path) >= 2 and path[0] == "pipelines" and isinstance(path[1], int):
            raw = document["pipelines"][path[1]]
            name = raw.get("name") if isinstance(raw, dict) else None
            where = f" pipeline {name!r}" if name else f" pipelines[{path[1]}]"
            path = path[2:]
        field_name = _field_path(path) or "(top level)"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source_name}:{where} field {field_name}: {_describe(error)}{more}")

    for raw in document["pipelines"]:
        _check_firehose_csv(raw, source_name)
        _check_trail_table(raw, source_name)
    pipelines = [_build(raw) for raw in document["pipelines"]]
    _check_unique(pipelines, source_name)
    return pipelines


def _check_firehose_csv(raw: dict, source_name: str) -> None:
    """The CSV settings of a source fit its kind: a Firehose source says its dialect with
    csv_dialect / csv_null_value; `csv` (DMS's endpoint settings) would be ignored there."""
    source, where = raw["source"], f"{source_name}: pipeline {raw['name']!r} field source"
    if source["kind"] == "firehose":
        if "csv" in source:
            raise ConfigError(
                f"{where}.csv: the settings of a DMS CSV endpoint; a firehose source says how its "
                "objects are written with csv_dialect (rfc4180 or backslash_escaped) and "
                "csv_null_value"
            )
        if "csv_null_value" in source and source.get("csv_dialect", "rfc4180") != "rfc4180":
            raise ConfigError(
                f"{where}.csv_null_value: only for csv_dialect rfc4180 (backslash_escaped writes NULL as \\N)"
            )
        return
    for name in ("csv_dialect", "csv_null_value"):
        if name in source:
            raise ConfigError(f"{where}.{name}: a firehose setting; a dms source's CSV is described by source.csv")


def _check_trail_table(raw: dict, source_name: str) -> None:
    """The audit trail's columns, key and commit time column are the capture's: not declared."""
    if raw["source"]["kind"] != "audit_log":
        return
    for index, table in enumerate(raw["tables"]):
        for name in ("columns", "primary_key", "commit_timestamp_column"):
            if name in table:
                raise ConfigError(
                    f"{source_name}: pipeline {raw['name']!r} field tables[{index}].{name}: the audit trail's "
                    "columns and key are set by the capture (docs/audit-log.md); leave it out"
                )


def _build(raw: dict) -> Pipeline:
    tables = tuple(
        TableSpec(
            schema=t["schema"],
            name=t["name"],
            primary_key=tuple(t.get("primary_key", ())),
            commit_timestamp_column=t.get("commit_timestamp_column"),
            columns=tuple(t.get("columns", ())),
            updated_at_column=t.get("updated_at_column"),
            reconcile_exclude=tuple(t.get("reconcile_exclude", ())),
        )
        for t in raw["tables"]
    )
    source = dict(raw["source"])
    if "csv" in source:
        source["csv"] = DmsCsvSettings(**source["csv"])
    if "dynamodb" in source:
        source["dynamodb"] = DynamoDbStreamSettings(**source["dynamodb"])
    if "notifications" in source:
        source["notifications"] = Notifications(**source["notifications"])
    if "binlog" in source:
        source["binlog"] = BinlogSettings(**source["binlog"])
    if "audit_log" in source:
        source["audit_log"] = AuditLogSettings(**source["audit_log"])
    if source.get("kind") == "audit_log":  # the trail's columns and key are the capture's own
        from cdc_sync.sources.audit_log.trail_table import TRAIL_COLUMNS, TRAIL_KEY, TRAIL_TIMESTAMP_COLUMN

        tables = tuple(
            replace(t, columns=TRAIL_COLUMNS, primary_key=TRAIL_KEY, commit_timestamp_column=TRAIL_TIMESTAMP_COLUMN)
            for t in tables
        )
    if source.get("kind") in ("dynamodb_stream", "binlog"):  # the capture writes the commit time in this column
        tables = tuple(
            t if t.commit_timestamp_column else replace(t, commit_timestamp_column="cdc_commit_ts") for t in tables
        )
    if source.get("kind") == "firehose":
        source["file_format"] = "firehose"
        source.setdefault("prefix", "processed/")
    bigquery = raw["targets"].get("bigquery")
    aurora = raw["targets"].get("aurora")
    return Pipeline(
        name=raw["name"],
        description=raw.get("description", ""),
        schedule=raw.get("schedule", "*/10 * * * *"),
        source=LandingSource(**source),
        tables=tables,
        bigquery=_bigquery_target(bigquery) if bigquery else None,
        aurora=AuroraTarget(**aurora) if aurora else None,
        options=Options(**raw.get("options", {})),
        reconcile=Reconcile(**raw["reconcile"]) if raw.get("reconcile") else None,
    )


def _bigquery_target(raw: dict) -> BigQueryTarget:
    settings = dict(raw)
    if settings.get("compaction") is not None:
        settings["compaction"] = Compaction(**settings["compaction"])
    return BigQueryTarget(**settings)


def _check_unique(pipelines: list[Pipeline], source_name: str) -> None:
    seen: set[str] = set()
    for pipeline in pipelines:
        if pipeline.name in seen:
            raise ConfigError(f"{source_name}: pipeline {pipeline.name!r} is declared twice")
        seen.add(pipeline.name)
        names = [t.qualified_name for t in pipeline.tables]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise ConfigError(
                    f"{source_name}: pipeline {pipeline.name!r} field tables[{index}]: table {name!r} is declared twice"
                )
        _check_kind(pipeline, source_name)
        _check_derived_names(pipeline, source_name)
        for index, table in enumerate(pipeline.tables):
            if table.commit_timestamp_column and table.commit_timestamp_column in table.primary_key:
                raise ConfigError(
                    f"{source_name}: pipeline {pipeline.name!r} field tables[{index}].commit_timestamp_column: "
                    f"{table.commit_timestamp_column!r} is part of the primary key"
                )


def _check_notifications(pipeline: Pipeline, where: str) -> None:
    """Event-driven runs need a schedule to sweep up what a lost message left behind."""
    if pipeline.source.kind not in ("dms", "firehose"):
        raise ConfigError(
            f"{where} field source.notifications: a {pipeline.source.kind} pipeline lands its own files in "
            "its run; nothing else lands to be notified of"
        )
    if pipeline.schedule in (None, "@once", "@continuous", "audit_log"):
        raise ConfigError(
            f"{where} field source.notifications: needs a cron schedule as the safety sweep (SQS "
            f"messages are deleted on receipt; a lost one waits for the next sweep), not {pipeline.schedule!r}"
        )


def _check_kind(pipeline: Pipeline, source_name: str) -> None:
    """What each kind of source needs beyond the schema."""
    where = f"{source_name}: pipeline {pipeline.name!r}"
    if pipeline.aurora is not None and pipeline.aurora.task_pool_slots > pipeline.aurora.pool_slots:
        raise ConfigError(
            f"{where} field targets.aurora.load_connections: {pipeline.aurora.load_connections} "
            f"connections need as many slots, but the pool has pool_slots {pipeline.aurora.pool_slots}"
        )
    if pipeline.aurora is not None and pipeline.aurora.mode != "merge":
        if pipeline.aurora.purge_tombstones_after_hours is not None:
            raise ConfigError(
                f"{where} field targets.aurora.purge_tombstones_after_hours: only for mode merge "
                "(an append table keeps no tombstones)"
            )
    if pipeline.source.date_partition_timezone is not None:
        if pipeline.source.kind != "dms":
            raise ConfigError(
                f"{where} field source.date_partition_timezone: DMS's DatePartitionTimezone; a "
                "firehose source's time folders follow the prefix's expressions"
            )
        try:
            ZoneInfo(pipeline.source.date_partition_timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ConfigError(
                f"{where} field source.date_partition_timezone: "
                f"{pipeline.source.date_partition_timezone!r} is not a time zone name "
                "(Area/Location, as DMS takes it)"
            ) from error
    if pipeline.source.notifications is not None:
        _check_notifications(pipeline, where)
    _check_audit_log_schedule(pipeline, where)
    if pipeline.source.kind == "audit_log":
        _check_audit_trail(pipeline, where)
        return
    if pipeline.source.kind == "dynamodb_stream":
        _check_dynamodb_stream(pipeline, where)
        return
    if pipeline.source.dynamodb is not None:
        raise ConfigError(f"{where} field source.dynamodb: only for kind dynamodb_stream")
    if pipeline.source.kind == "binlog":
        _check_binlog(pipeline, where)
        return
    if pipeline.source.binlog is not None:
        raise ConfigError(f"{where} field source.binlog: only for kind binlog")
    if pipeline.source.kind == "dms":
        if "!{" in pipeline.source.prefix:
            raise ConfigError(
                f"{where} field source.prefix: !{{…}} expressions are Firehose's; a dms source's "
                "prefix is the endpoint's BucketFolder as it is"
            )
        for index, table in enumerate(pipeline.tables):
            if not table.primary_key:
                raise ConfigError(f"{where} field tables[{index}]: 'primary_key' is required for a dms source")
            if pipeline.source.file_format == "csv":
                _check_csv_columns(table, f"{where} field tables[{index}].columns")
        if pipeline.aurora is not None and pipeline.aurora.mode != "merge":
            raise ConfigError(f"{where} field targets.aurora.mode: a dms source is applied with mode merge")
        return
    from cdc_sync.sources.firehose.layout import PrefixError, delivery_layout

    for name, prefix in (
        ("prefix", pipeline.source.table_prefix(pipeline.tables[0])),
        ("error_prefix", pipeline.source.error_prefix),
    ):
        try:
            delivery_layout(prefix)
        except PrefixError as error:
            raise ConfigError(f"{where} field source.{name}: {error}") from error
    if pipeline.reconcile is not None:
        raise ConfigError(
            f"{where} field reconcile: reconciliation compares a dms source's database with its "
            "targets; a firehose source has no source database to compare with"
        )
    if len(pipeline.tables) != 1:
        raise ConfigError(f"{where} field tables: a firehose source feeds exactly one table")
    if not pipeline.tables[0].columns:
        raise ConfigError(
            f"{where} field tables[0]: 'columns' (the CSV columns, in order) is required for a firehose source"
        )
    typed = [name for name, kind in pipeline.tables[0].column_types if kind]
    if typed:
        raise ConfigError(
            f"{where} field tables[0].columns: a firehose source lists column names only "
            f"(the target table has the types); {typed[0]!r} has a type"
        )
    if pipeline.aurora is None or pipeline.aurora.mode != "append" or pipeline.bigquery is not None:
        raise ConfigError(f"{where} field targets: a firehose source needs targets.aurora with mode append (only)")


def _check_audit_log_schedule(pipeline: Pipeline, where: str) -> None:
    """`schedule: audit_log` (the pipeline's or its reconciliation's) needs the stream to watch."""
    fields = [name for name, value in (("schedule", pipeline.schedule),) if value == "audit_log"]
    if pipeline.reconcile is not None and pipeline.reconcile.schedule == "audit_log":
        fields.append("reconcile.schedule")
    for name in fields:
        if pipeline.source.audit_log is None:
            raise ConfigError(
                f"{where} field {name}: audit_log schedules on writes the audit log shows; set "
                "source.audit_log.stream (the Kinesis stream the audit log's subscription filter feeds)"
            )
        if pipeline.source.kind == "audit_log":
            raise ConfigError(
                f"{where} field {name}: the audit trail pipeline's table is the trail itself; give it a "
                "cron schedule (each run lands what the stream holds)"
            )


def _check_audit_trail(pipeline: Pipeline, where: str) -> None:
    """`kind: audit_log`: one table (the trail), whose columns and key the capture sets."""
    source = pipeline.source
    if source.audit_log is None:
        raise ConfigError(f"{where} field source.audit_log: required for kind audit_log (at least `stream`)")
    if source.file_format != "parquet" or "!{" in source.prefix:
        raise ConfigError(f"{where} field source: the capture writes Parquet under a plain prefix")
    if len(pipeline.tables) != 1:
        raise ConfigError(f"{where} field tables: a kind audit_log pipeline feeds exactly one table (the trail)")
    if pipeline.aurora is not None and pipeline.aurora.mode != "merge":
        raise ConfigError(
            f"{where} field targets.aurora.mode: the trail is applied with mode merge (one row per audit "
            "event, keyed by its CloudWatch event id, so a redelivered event is still one row)"
        )
    if pipeline.reconcile is not None:
        raise ConfigError(
            f"{where} field reconcile: the audit trail has no source database to compare with (its "
            "source is the stream)"
        )


def _check_dynamodb_stream(pipeline: Pipeline, where: str) -> None:
    """A DynamoDB stream is one table: its attributes declared as typed columns, its key
    attributes the primary key, filter criteria Lambda would take."""
    from cdc_sync.sources.dms.mysql_types import check_mysql_type
    from cdc_sync.sources.dynamodb_stream.filters import FilterCriteria, FilterError

    source = pipeline.source
    if source.dynamodb is None:
        raise ConfigError(f"{where} field source.dynamodb: required for kind dynamodb_stream (at least `stream`)")
    if source.file_format != "parquet" or "!{" in source.prefix:
        raise ConfigError(f"{where} field source: the capture writes Parquet under a plain prefix")
    if len(pipeline.tables) != 1:
        raise ConfigError(f"{where} field tables: a dynamodb_stream source feeds exactly one table")
    if pipeline.aurora is not None and pipeline.aurora.mode != "merge":
        raise ConfigError(f"{where} field targets.aurora.mode: a dynamodb_stream source is applied with mode merge")
    table, here = pipeline.tables[0], f"{where} field tables[0]"
    if not table.primary_key:
        raise ConfigError(f"{here}: 'primary_key' (the table's key attributes) is required")
    if not table.columns:
        raise ConfigError(f"{here}: 'columns' is required: every attribute to load as 'name mysql_type'")
    names = [name for name, _ in table.column_types]
    for name, kind in table.column_types:
        if kind is None:
            raise ConfigError(f"{here}.columns: attribute {name!r} needs its MySQL type ('{name} varchar(64)')")
        if problem := check_mysql_type(kind):
            raise ConfigError(f"{here}.columns: attribute {name!r}: {problem}")
    reserved = [table.commit_timestamp_column, source.dynamodb.extra_attributes_column]
    for own in reserved:
        if own and own.lower() in (n.lower() for n in names):
            raise ConfigError(f"{here}.columns: {own!r} is the capture's own column; leave it out of columns")
    missing = [k for k in table.primary_key if k not in names]
    if missing:
        raise ConfigError(f"{here}: key attribute(s) {', '.join(missing)} not declared in columns")
    try:
        FilterCriteria.parse(source.dynamodb.filter_criteria)
    except FilterError as error:
        raise ConfigError(f"{where} field source.dynamodb.filter_criteria: {error}") from error


def _check_binlog(pipeline: Pipeline, where: str) -> None:
    """A binlog source: the server to read, tables with their keys, merge into Aurora."""
    source = pipeline.source
    if source.binlog is None:
        raise ConfigError(f"{where} field source.binlog: required for kind binlog (at least `conn_id`)")
    if source.file_format != "parquet" or "!{" in source.prefix:
        raise ConfigError(f"{where} field source: the capture writes Parquet under a plain prefix")
    if pipeline.aurora is not None and pipeline.aurora.mode != "merge":
        raise ConfigError(f"{where} field targets.aurora.mode: a binlog source is applied with mode merge")
    for index, table in enumerate(pipeline.tables):
        if not table.primary_key:
            raise ConfigError(f"{where} field tables[{index}]: 'primary_key' is required for a binlog source")
        if table.columns:
            raise ConfigError(
                f"{where} field tables[{index}].columns: a binlog source takes its columns from the binlog's "
                "row metadata; leave columns out"
            )


MYSQL_NAME_CHARS = 64  # MySQL/Aurora table and view names (error 1103 above it)
BIGQUERY_NAME_BYTES = 1024  # BigQuery table and view names, in UTF-8 bytes


def derived_names(pipeline: Pipeline, table: TableSpec) -> list[tuple[str, str, int, str]]:
    """(what, name, limit, unit) for every object name the targets derive from a table: the
    Aurora state table and view (merge) or append table, the BigQuery changelog and view."""
    names = []
    if pipeline.aurora is not None:
        aurora = pipeline.aurora
        if aurora.mode == "merge":
            names += [
                ("Aurora state table", aurora.state_table(table), MYSQL_NAME_CHARS, "characters"),
                ("Aurora view", aurora.view(table), MYSQL_NAME_CHARS, "characters"),
            ]
        else:
            names.append(("Aurora table", aurora.append_table(table), MYSQL_NAME_CHARS, "characters"))
    if pipeline.bigquery is not None:
        names += [
            ("BigQuery changelog table", pipeline.bigquery.changelog_table(table), BIGQUERY_NAME_BYTES, "bytes"),
            ("BigQuery view", pipeline.bigquery.latest_view(table), BIGQUERY_NAME_BYTES, "bytes"),
        ]
        if pipeline.bigquery.compaction is not None:
            names.append(("BigQuery state table", pipeline.bigquery.state_table(table), BIGQUERY_NAME_BYTES, "bytes"))
    return names


def _check_derived_names(pipeline: Pipeline, source_name: str) -> None:
    """The names the targets build from a table's schema and name must fit those targets."""
    for index, table in enumerate(pipeline.tables):
        for what, name, limit, unit in derived_names(pipeline, table):
            size = len(name.encode()) if unit == "bytes" else len(name)
            if size > limit:
                raise ConfigError(
                    f"{source_name}: pipeline {pipeline.name!r} field tables[{index}] (schema {table.schema!r}, "
                    f"name {table.name!r}): the {what} {name!r} would be {size} {unit}; the target allows {limit}."
                    + (" Set targets.aurora.table" if what == "Aurora table" else " Use shorter names")
                )


def _check_csv_columns(table: TableSpec, where: str) -> None:
    """DMS CSV files carry no names (by default) and no types: the table declares both."""
    from cdc_sync.sources.dms.mysql_types import check_mysql_type

    if not table.columns:
        raise ConfigError(
            f"{where}: required for file_format csv: every source column as 'name type', "
            "in table order (DMS CSV files carry no types)"
        )
    names = [name.lower() for name in table.column_names]
    for name, kind in table.column_types:
        if kind is None:
            raise ConfigError(f"{where}: column {name!r} needs its MySQL type ('{name} varchar(64)')")
        if problem := check_mysql_type(kind):
            raise ConfigError(f"{where}: column {name!r}: {problem}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: a column is declared twice")
    missing = [k for k in table.primary_key if k.lower() not in names]
    if missing:
        raise ConfigError(f"{where}: primary key column(s) {', '.join(missing)} not declared")
    if table.commit_timestamp_column and table.commit_timestamp_column.lower() in names:
        raise ConfigError(
            f"{where}: {table.commit_timestamp_column!r} is the commit timestamp column DMS adds "
            "(TimestampColumnName), not a source column: leave it out of columns"
        )


def default_config_path() -> Path:
    """CDC_SYNC_CONFIG, else config/pipelines.yaml next to the dags folder (repo layout),
    else dags/config/pipelines.yaml (MWAA, where only the dags folder is synced)."""
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    for candidate in (repo_root / "config" / "pipelines.yaml", repo_root / "dags" / "config" / "pipelines.yaml"):
        if candidate.exists():
            return candidate
    return repo_root / "config" / "pipelines.yaml"


def load_pipelines(path: str | os.PathLike | None = None) -> list[Pipeline]:
    config_path = Path(path) if path else default_config_path()
    try:
        document = _read_yaml(config_path.read_text(encoding="utf-8"), str(config_path))
    except FileNotFoundError as error:
        raise ConfigError(f"{config_path}: file not found (set {CONFIG_ENV} to the pipelines file)") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{config_path}: not valid YAML: {error}") from error
    return parse_pipelines(document, str(config_path))


# A pipelines file with aliases may repeat a node; a few levels of aliases of aliases name an
# exponentially large document (700 bytes took 23 s to refuse). Far above any real config.
MAX_EXPANDED_NODES = 100_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys.

    YAML says keys are unique; PyYAML's own loader keeps the last one silently."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}  # key -> line
            for key_node, _ in node.value:  # the mapping's own keys: a merge (`<<`) may be overridden
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise ConfigError(
                            f"{self.name}: line {line}: key {key!r} is already set on line "
                            f"{seen[key]} of the same mapping (YAML keys must be unique)"
                        )
                    seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, sizes: dict[int, int]) -> int:
    """Count the nodes of the document with every alias expanded.

    Memoised per distinct node, so the count costs the file's size, not the expansion's."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once instead of looping
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_size(item, sizes) for item in node.value)
    else:
        total = 1
    sizes[id(node)] = total
    return total


def _read_yaml(text: str, source_name: str) -> Any:
    """Parse a pipelines file, refusing duplicate keys and alias bombs.

    The expanded size is checked on the composed nodes, before anything walks the data."""
    loader = _StrictLoader(text)
    loader.name = source_name
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        size = _expanded_size(root, {})
        if size > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{source_name}: the document expands to {size:,} nodes through its YAML aliases "
                f"(more than {MAX_EXPANDED_NODES:,}); write the repeated parts out or use fewer "
                "nested aliases"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()


def pools(pipelines: list[Pipeline]) -> dict[str, dict]:
    """The Airflow pools the pipelines name, in `airflow pools import` format: the smallest
    size any pipeline asks for, but never fewer slots than one load task takes (such a task
    would never run)."""
    smallest: dict[str, int] = {}
    widest_task: dict[str, int] = {}
    for pipeline in pipelines:
        if pipeline.aurora is not None:
            name = pipeline.aurora.pool
            smallest[name] = min(smallest.get(name, pipeline.aurora.pool_slots), pipeline.aurora.pool_slots)
            widest_task[name] = max(widest_task.get(name, 1), pipeline.aurora.task_pool_slots)
    return {
        name: {
            "slots": max(slots, widest_task[name]),
            "include_deferred": False,
            "description": "cdc-sync: caps concurrent connections of Aurora loads",
        }
        for name, slots in smallest.items()
    }


def get_pipeline(name: str, path: str | os.PathLike | None = None) -> Pipeline:
    for pipeline in load_pipelines(path):
        if pipeline.name == name:
            return pipeline
    raise ConfigError(f"no pipeline named {name!r} in {path or default_config_path()}")
