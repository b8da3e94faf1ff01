"""What each task of a cdc-sync DAG does, as plain functions of the pipeline and the task's context.

`dag_factory` only declares the tasks and wires them; the work is here, callable from a
test with a context dict and without `dag.test()`. Every function runs under `by_family`,
which turns the error family (`cdc_sync.errors`) into what Airflow does next:

    SetupError  → AirflowFailException, same message: failed at once, no retry (a person must act)
    BadInput    → AirflowFailException, same message: the object's report names it, no retry
    anything else (TransientError, a lost connection, ...) → raised as is: Airflow retries it

Clients come from `cdc_sync.connections`; heavy modules are imported inside the functions,
so building a DAG imports none of them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from cdc_sync import connections
from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.errors import BadInput, SetupError

if TYPE_CHECKING:
    from cdc_sync.sources.landed import LoadReport

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

TARGETS = ("bigquery", "aurora")


def by_family(function: Callable[P, R]) -> Callable[P, R]:
    """Run a task body; a SetupError or BadInput escaping it fails the task without retries."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        from cdc_sync._compat import AirflowFailException

        try:
            return function(*args, **kwargs)
        except (SetupError, BadInput) as error:
            # retrying cannot help: fail now, with the error's own words
            raise AirflowFailException(str(error)) from error

    return run


def targets(pipeline: Pipeline) -> list[str]:
    """The pipeline's configured targets, in a fixed order."""
    return [name for name in TARGETS if getattr(pipeline, name) is not None]


def asset_alias_name(pipeline: Pipeline, target: str) -> str:
    """The AssetAlias a load task emits its tables' asset events through."""
    return f"cdc_sync_{pipeline.name}_{target}"


def target_asset_uri(pipeline: Pipeline, target: str, table: TableSpec) -> str:
    """The asset a load into `target` emits for `table` through the target's alias."""
    spec = pipeline.bigquery if target == "bigquery" else pipeline.aurora
    if spec is None:
        raise ValueError(f"pipeline {pipeline.name} has no {target} target")
    return spec.asset_uri(table)


def is_backfill(context: Mapping[str, Any]) -> bool:
    """Whether the task runs in a backfill run."""
    dag_run = context.get("dag_run")
    return str(getattr(dag_run, "run_type", "")).lower().endswith("backfill")


def finished_checks(pipeline: Pipeline) -> list:
    """One "what is finished" check per target, for the planner."""
    checks = []
    if pipeline.bigquery is not None:
        from cdc_sync.targets.bigquery.batch import finished_in_bigquery

        checks.append(finished_in_bigquery(pipeline, connections.bigquery_client(pipeline)))
    if pipeline.aurora is not None:
        from cdc_sync.targets.aurora.batch import finished_in_aurora

        checks.append(finished_in_aurora(pipeline, connections.aurora_connect(pipeline)))
    return checks


def requested_window(params: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """The [window_start, window_end) a manual run asks for; None for a normal run."""
    start, end = params.get("window_start"), params.get("window_end")
    if not start and not end:
        return None
    if not (start and end):
        raise SetupError("params window_start and window_end go together: give both (UTC, e.g. 2026-12-01T00:00:00Z)")
    try:
        window = tuple(_utc(datetime.fromisoformat(str(v).replace("Z", "+00:00"))) for v in (start, end))
    except ValueError as error:
        raise SetupError(
            f"params window_start/window_end: {error} (expected ISO 8601, e.g. 2026-12-01T00:00:00Z)"
        ) from error
    if window[0] >= window[1]:
        raise SetupError(f"params window_start ({start}) must be before window_end ({end})")
    return window  # type: ignore[return-value]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@by_family
def plan(pipeline: Pipeline, context: Mapping[str, Any], tables: list[str]) -> list[dict]:
    """plan_batches: one batch per table with files some target has not finished."""
    from cdc_sync import planning
    from cdc_sync.sources import watermarks

    params = context["params"]
    window = requested_window(params)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if window is not None:
        log.info("manual run over a window: files written in [%s, %s)", *window)
    elif is_backfill(context) and start and end:
        # a backfill run looks at the files the source wrote in its own data interval
        window = (start, end)
        log.info("backfill run: files written in [%s, %s)", start, end)
    dry_run = bool(params.get("dry_run"))
    batches = planning.plan_batches(
        pipeline,
        connections.s3_client(pipeline),
        watermarks.read,
        finished_checks(pipeline),
        tables=tables,
        replay_keys=params.get("replay_keys") or (),
        rescan=bool(params.get("rescan")),
        window=window,
        # remembers finished files inside the grace for the sensor; a dry run changes nothing
        write_watermark=None if dry_run else watermarks.write,
    )
    for batch in batches:
        log.info("%s: %d file(s) to load", batch["table"], len(batch["files"]))
    if not batches:
        log.info("nothing to load: every listed file is already in the ledgers")
    if dry_run:
        would_load = {b["table"]: [f["key"] for f in b["files"]] for b in batches}
        for table, keys in would_load.items():
            for key in keys:
                log.info("dry run: would load s3://%s/%s into %s", pipeline.source.bucket, key, table)
        log.info(
            "dry run: %d file(s) of %d table(s) would load; nothing loaded",
            sum(map(len, would_load.values())),
            len(would_load),
        )
        context["ti"].xcom_push(key="would_load", value=would_load)
        return []
    return batches


@by_family
def load(pipeline: Pipeline, target: str, batch: dict, context: Mapping[str, Any]) -> dict:
    """load_to_<target>: load one table's batch into one target; emit its asset event if it changed."""
    from airflow.sdk import Asset, AssetAlias

    replay = bool(context["params"].get("replay_keys"))
    s3 = connections.s3_client(pipeline)
    if target == "bigquery":
        from cdc_sync.targets.bigquery.batch import load_batch as load_into_bigquery

        report = load_into_bigquery(pipeline, batch, s3, connections.bigquery_client(pipeline), replay=replay)
    elif target == "aurora":
        from cdc_sync.targets.aurora.batch import load_batch as load_into_aurora

        report = load_into_aurora(pipeline, batch, s3, connections.aurora_connect(pipeline), replay=replay)
    else:
        raise ValueError(f"pipeline {pipeline.name}: unknown target {target!r} (known: {', '.join(TARGETS)})")
    if report.loaded:
        uri = target_asset_uri(pipeline, target, pipeline.table(batch["table"]))
        context["outlet_events"][AssetAlias(asset_alias_name(pipeline, target))].add(Asset(uri))
    return finish(pipeline, report)


def finish(pipeline: Pipeline, report: LoadReport) -> dict:
    """Log what a load did; fail (without retries) when files were quarantined."""
    from cdc_sync._compat import AirflowFailException

    rows = "record(s)" if pipeline.source.kind == "firehose" else "change row(s)"
    log.info(
        "%s → %s: loaded %d file(s), %d %s%s; already loaded %d; quarantined %d",
        report.table,
        report.target,
        len(report.loaded),
        sum(report.loaded.values()),
        rows,
        f" (job {report.job_id})" if report.job_id else "",
        len(report.already_loaded),
        len(report.quarantined),
    )
    if report.quarantined:
        # The good files are loaded and recorded; fail without retries so a person looks.
        details = "; ".join(f"s3://{pipeline.source.bucket}/{k}: {r}" for k, r in report.quarantined.items())
        raise AirflowFailException(
            f"{report.table} → {report.target}: {len(report.quarantined)} file(s) quarantined — {details}. "
            "Fix them and trigger the DAG with params.replay_keys to load them again."
        )
    return report.to_dict()


@by_family
def report_failed_records(pipeline: Pipeline) -> dict:
    """report_failed_records: the records the transform Lambda refused, counted and sampled; fails if any."""
    from airflow.sdk import Variable

    from cdc_sync._compat import AirflowFailException
    from cdc_sync.sources.firehose.failures import read_failed_records

    key = f"cdc_sync.{pipeline.name}.failed_records.watermark"
    after = Variable.get(key, default=None)
    found = read_failed_records(
        connections.s3_client(pipeline), pipeline.source.bucket, pipeline.source.error_prefix, after
    )
    if found.objects:
        Variable.set(key, max(found.objects))  # each refused record is reported once
    summary = found.summary(pipeline.source.bucket)
    log.info("%s", summary)
    if found.count:
        raise AirflowFailException(summary)
    return {"objects": found.objects, "count": found.count}


@by_family
def advance(pipeline: Pipeline, reports_per_target: tuple) -> dict:
    """advance_watermarks: past the files every target handled; a table that failed somewhere keeps its mark."""
    from cdc_sync import planning
    from cdc_sync.sources import watermarks

    # a slice reads a mapped task's XComs in one call; iterating would ask for one index
    # past the end, which the API server logs as an error ("XCom not found") in a healthy run
    reports = [r for target_reports in reports_per_target for r in (target_reports or [])[:] if r]
    moved = planning.advance_watermarks(pipeline, reports, len(reports_per_target), watermarks.read, watermarks.write)
    return {table: mark.to_dict() for table, mark in moved.items()}


@by_family
def compact(pipeline: Pipeline, context: Mapping[str, Any]) -> list[dict]:
    """compact_bigquery: compact each table due by `bigquery.compaction`'s cadence (every table
    with the param compact_now; rebuilt from the whole changelog with rebuild_state)."""
    from cdc_sync.targets.bigquery.compaction import compact_pipeline

    params = context["params"]
    if params.get("dry_run"):
        log.info("dry run: no compaction")
        return []
    reports = compact_pipeline(
        pipeline,
        connections.bigquery_client(pipeline),
        force=bool(params.get("compact_now")),
        rebuild=bool(params.get("rebuild_state")),
    )
    return [r.to_dict() for r in reports]


@by_family
def purge_tombstones(pipeline: Pipeline, context: Mapping[str, Any]) -> list[dict]:
    """purge_aurora_tombstones: delete the Aurora state tables' tombstones older than the safe horizon."""
    from cdc_sync.targets.aurora.purge import purge_pipeline

    if context["params"].get("dry_run"):
        log.info("dry run: no tombstone purge")
        return []

    connect = connections.aurora_plain_connect(pipeline)
    assert connect is not None  # the task exists only with an Aurora target
    return [r.to_dict() for r in purge_pipeline(pipeline, connect)]


def fail_run(pipeline: Pipeline) -> None:
    """fail_if_a_load_failed: the run's verdict when a load or the planning failed."""
    from cdc_sync._compat import AirflowFailException

    raise AirflowFailException(
        f"pipeline {pipeline.name}: a load failed in this run — the failed load_to_* or plan_batches "
        "task's log names the table, the files and what is wrong. The watermarks moved only past "
        "what every target handled, so the next run lists the rest again."
    )


# ------------------------------------------------------------------ reconciliation


@by_family
def tables_to_check(pipeline: Pipeline, context: Mapping[str, Any]) -> list[str]:
    """tables_to_check: params.tables, or every table of the pipeline; an unknown name fails here."""
    wanted = context["params"].get("tables") or [t.qualified_name for t in pipeline.tables]
    for name in wanted:
        pipeline.table(name)  # an unknown table fails here, naming it
    return list(wanted)


@by_family
def reconcile_table(pipeline: Pipeline, table: str, context: Mapping[str, Any]) -> list[dict]:
    """reconcile_table: compare one table in every target with the source; repair on request; fail on drift."""
    from cdc_sync._compat import AirflowFailException
    from cdc_sync.reconcile.repair import emit_repair_file, keys_to_repair
    from cdc_sync.reconcile.run import reconcile_table as run_reconcile

    source_connect = connections.source_connect(pipeline)
    if pipeline.source.kind == "dynamodb_stream":  # the source side is a Scan of the DynamoDB table
        from cdc_sync.reconcile.run import settings_of
        from cdc_sync.sources.dynamodb_stream.scan import connection_database, reconcile_with_scan

        if context["params"].get("repair"):
            raise SetupError(
                f"pipeline {pipeline.name}: repair re-emits source database rows; a dynamodb_stream source "
                "is repaired with the DAG param resnapshot"
            )
        assert pipeline.reconcile is not None
        comparisons = reconcile_with_scan(
            pipeline,
            connections.aws_client(pipeline, "dynamodb"),
            source_connect,
            connection_database(source_connect),
            bigquery_client=connections.bigquery_client(pipeline) if pipeline.bigquery is not None else None,
            aurora_connect=connections.aurora_plain_connect(pipeline),
            settings=settings_of(pipeline.reconcile),
            run_id=context["run_id"],
        )
    else:
        comparisons = run_reconcile(
            pipeline,
            table,
            source_connect=source_connect,
            run_id=context["run_id"],
            bigquery_client=connections.bigquery_client(pipeline) if pipeline.bigquery is not None else None,
            aurora_connect=connections.aurora_plain_connect(pipeline),
        )
    drift = [c for c in comparisons if c.status == "drift"]
    if drift and context["params"].get("repair"):
        emit_repair_file(
            pipeline, pipeline.table(table), source_connect, connections.s3_client(pipeline), keys_to_repair(drift)
        )
    if drift:
        raise AirflowFailException(" | ".join(c.summary() for c in drift))
    return [c.to_dict() for c in comparisons]


@by_family
def write_report(pipeline: Pipeline, context: Mapping[str, Any]) -> dict:
    """write_report: the run's results as Markdown (logged and stored) and HTML, both on S3."""
    from cdc_sync.reconcile.report import html_page, markdown, report_key
    from cdc_sync.reconcile.run import load_results

    reconcile = pipeline.reconcile
    assert reconcile is not None
    run_id = context["run_id"]
    rows = load_results(
        pipeline,
        run_id,
        bigquery_client=connections.bigquery_client(pipeline) if pipeline.bigquery else None,
        aurora_connect=connections.aurora_plain_connect(pipeline),
    )
    text = markdown(pipeline.name, run_id, rows)
    log.info("%s", text)
    s3 = connections.s3_client(pipeline)
    keys = {}
    for extension, body, content_type in (
        ("md", text, "text/markdown"),
        ("html", html_page(pipeline.name, run_id, rows), "text/html"),
    ):
        keys[extension] = report_key(reconcile.reports_prefix, pipeline.name, run_id, extension)
        s3.put_object(
            Bucket=pipeline.source.bucket,
            Key=keys[extension],
            Body=body.encode("utf-8"),
            ContentType=f"{content_type}; charset=utf-8",
        )
    log.info("report: %s", ", ".join(f"s3://{pipeline.source.bucket}/{k}" for k in keys.values()))
    return {"report": keys, "comparisons": len(rows), "drift": sum(r["status"] == "drift" for r in rows)}


def all_in_sync(report: dict) -> int:
    """all_in_sync: runs only when every comparison passed, so the run shows failed on drift."""
    log.info("%d comparison(s), none with drift", report["comparisons"])
    return int(report["comparisons"])


@by_family
def capture_dynamodb_stream(pipeline: Pipeline, context: Mapping[str, Any]) -> dict:
    """`kind: dynamodb_stream`: read every shard from its checkpoint and land one change file
    (sources/dynamodb_stream); the loads that follow apply it like a DMS file. With the param
    `resnapshot`, land the whole table instead, tied to the stream's current end."""
    from cdc_sync.sources.dynamodb_stream.capture import capture, pipeline_capture
    from cdc_sync.sources.dynamodb_stream.scan import resnapshot

    streams = connections.aws_client(pipeline, "dynamodbstreams")
    dynamodb = connections.aws_client(pipeline, "dynamodb")
    s3 = connections.s3_client(pipeline)
    if context.get("params", {}).get("resnapshot"):
        return resnapshot(pipeline, streams, dynamodb, s3).to_dict()
    return capture(pipeline_capture(pipeline), streams, dynamodb, s3).to_dict()


@by_family
def capture_binlog(pipeline: Pipeline, context: Mapping[str, Any]) -> dict:
    """`kind: binlog`: read the source's ROW binlog from the checkpoint (a snapshot first when
    there is none) and land DMS-format change files (sources/binlog). The param `resnapshot`
    (table names, or `*`) reads those tables again, tied to the binlog's current position."""
    from cdc_sync.sources.binlog.capture import capture, pipeline_capture
    from cdc_sync.sources.binlog.kinesis import KinesisSink

    settings = pipeline.source.binlog
    assert settings is not None
    resnapshot = context.get("params", {}).get("resnapshot") or []
    kinesis = (
        KinesisSink(connections.aws_client(pipeline, "kinesis"), settings.kinesis_stream)
        if settings.kinesis_stream
        else None
    )
    return capture(
        pipeline_capture(pipeline),
        connections.mysql_settings(settings.conn_id),
        connections.mysql_connect(settings.conn_id),
        connections.s3_client(pipeline),
        resnapshot=list(resnapshot),
        kinesis=kinesis,
    ).to_dict()
