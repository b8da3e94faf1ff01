"""One DAG per configured pipeline: wait for files → plan batches → load each table (mapped).

    wait_for_new_files (deferrable sensor)
        └─ plan_batches (one batch per table with files some target has not finished)
              ├─ load_to_bigquery.expand(batch=...)  (one mapped task per table)
              ├─ load_to_aurora.expand(batch=...)    (same batches, in the Aurora pool)
              ├─ compact_bigquery                    (bigquery.compaction: tables due, after the loads)
              ├─ purge_aurora_tombstones             (aurora.purge_tombstones_after_hours, after the loads)
              └─ advance_watermarks                  (past what every target handled)
                    └─ fail_if_a_load_failed         (one_failed: a failed load fails the run)

Everything heavy is imported inside the tasks: building the DAG opens no connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetAlias, Param, get_current_context, task

from cdc_sync.config import Pipeline
from cdc_sync.orchestration import tasks
from cdc_sync.orchestration.events import event_schedule
from cdc_sync.orchestration.sensor import NewObjectsSensor


def _name_mapped_task(table: str) -> dict:
    """The running task's context, with the table that names the mapped task in the UI."""
    context = get_current_context()
    context["cdc_table"] = table  # type: ignore[typeddict-unknown-key]  # map_index_template reads it
    return context  # type: ignore[return-value]


def _describe(pipeline: Pipeline) -> str:
    """The default description, from the pipeline's actual source and targets."""
    from cdc_sync.orchestration.sensor import landed_files

    names = {"bigquery": "BigQuery", "aurora": "Aurora MySQL"}
    aurora = pipeline.aurora
    targets = [
        f"{names[t]} ({aurora.mode})" if t == "aurora" and aurora is not None else names[t]
        for t in tasks.targets(pipeline)
    ]
    return f"{landed_files(pipeline)} on s3://{pipeline.source.bucket} → {' and '.join(targets)}"


def _load_task(pipeline: Pipeline, target: str):
    """The mapped `load_to_<target>` task: one per table batch, in the target's pool, emitting
    its tables' asset events through the target's alias."""
    if target == "aurora":
        assert pipeline.aurora is not None
        pool, pool_slots = pipeline.aurora.pool, pipeline.aurora.task_pool_slots
    else:
        pool, pool_slots = pipeline.options.pool, 1

    def load(batch: dict) -> dict:
        return tasks.load(pipeline, target, batch, _name_mapped_task(batch["table"]))

    load.__name__ = load.__qualname__ = f"load_to_{target}"
    # multiple_outputs=False: a `-> dict` annotation would make Airflow push every key as its own XCom
    return task(
        task_id=f"load_to_{target}",
        pool=pool,
        pool_slots=pool_slots,
        outlets=[AssetAlias(tasks.asset_alias_name(pipeline, target))],
        map_index_template="{{ cdc_table }}",
        multiple_outputs=False,
    )(load)


def run_schedule(schedule: str | None):
    """A cron or preset as data intervals: each run covers [previous tick, its tick).

    Airflow 3 turns a cron string into a CronTriggerTimetable whose runs have an empty data
    interval; a backfill run then could not say which files are its own. Presets that are
    no cron (@once, @continuous) and None stay as they are."""
    if schedule is None or schedule in ("@once", "@continuous"):
        return schedule
    from cdc_sync._compat import CronDataIntervalTimetable

    return CronDataIntervalTimetable(schedule, timezone="UTC")


def pipeline_params(pipeline: Pipeline) -> dict[str, Param]:
    """The trigger form of a pipeline DAG: what a manual run may do differently."""
    params = {
        "dry_run": Param(
            False,
            type=["null", "boolean"],  # with "null" the form marks no switch as required
            title="Dry run",
            description="List the files this run would load (the log and the XCom would_load of task "
            "plan_batches) and load nothing; no watermark moves.",
        ),
        "rescan": Param(
            False,
            type=["null", "boolean"],
            title="Rescan every folder",
            description="List every file under the table folders instead of from the watermark "
            "(the ledgers still skip what is loaded).",
        ),
        "replay_keys": Param(
            [],
            type=["null", "array"],  # a field typed in and cleared again sends null: still a normal run
            items={"type": "string"},
            title="Replay these object keys",
            description="S3 keys (one per line) to load again even if quarantined, after fixing them. "
            "Empty: a normal run.",
        ),
        "window_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window start (UTC)",
            description="With window end: load the files written in [start, end) in this one run, as a "
            "backfill does run by run: a long window in one run. Empty: a normal run.",
        ),
        "window_end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window end (UTC)",
            description="End of the window (exclusive); needs window start.",
        ),
    }
    if pipeline.source.kind == "dynamodb_stream":
        params["resnapshot"] = Param(
            False,
            type=["null", "boolean"],
            title="Re-snapshot the table",
            description="Land the whole table again (a parallel Scan tied to the stream's current end) "
            "instead of reading the stream; after lost history.",
        )
    if pipeline.source.kind == "binlog":
        params["resnapshot"] = Param(
            [],
            type="array",
            items={"type": "string"},
            title="Re-snapshot these tables",
            description="schema.table names (one per line), or * for all: read them again as a snapshot tied "
            "to the binlog's current position; * also after lost history. Empty: a normal run.",
        )
    if pipeline.bigquery is not None and pipeline.bigquery.compaction is not None:
        params["compact_now"] = Param(
            False,
            type=["null", "boolean"],
            title="Compact now",
            description="Compact every table's BigQuery changelog into its state table after this run's "
            "loads, whatever bigquery.compaction's cadence says.",
        )
        params["rebuild_state"] = Param(
            False,
            type=["null", "boolean"],
            title="Rebuild the state tables",
            description="Rebuild every table's BigQuery state table from its whole changelog (refused with "
            "retention_days).",
        )
    return params


def pipeline_schedule(pipeline: Pipeline):
    """A cron or preset; "audit_log": whenever the audit log shows a write to one of the tables."""
    if pipeline.schedule == "audit_log":
        from cdc_sync.sources.audit_log.assets import pipeline_audit_assets

        return pipeline_audit_assets(pipeline)
    return run_schedule(pipeline.schedule)


def _audit_trail_capture(pipeline: Pipeline):
    """`kind: audit_log`: the task that lands the audit log's new events as one trail file."""

    @task(multiple_outputs=False)
    def capture_audit_trail() -> dict:
        """Read the audit log's Kinesis stream from its checkpoint; land one audit-trail file."""
        from cdc_sync.sources.audit_log.trail import capture_task

        return capture_task(pipeline)

    return capture_audit_trail()


def build_pipeline_dag(pipeline: Pipeline, config_path: str | None = None) -> DAG:
    options = pipeline.options
    default_args = {
        "owner": "cdc-sync",
        "retries": options.retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }
    with DAG(
        dag_id=pipeline.dag_id,
        description=pipeline.description or _describe(pipeline),
        schedule=event_schedule(pipeline, pipeline_schedule(pipeline)),  # with notifications: OR files landing
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,  # one planner per pipeline: two runs must not batch the same files
        default_args=default_args,
        tags=["cdc-sync", pipeline.source.kind, *tasks.targets(pipeline)],
        params=pipeline_params(pipeline),
        doc_md=f"**cdc-sync pipeline `{pipeline.name}`** — tables: "
        + ", ".join(f"`{t.qualified_name}`" for t in pipeline.tables),
    ) as dag:
        wait = NewObjectsSensor(
            task_id="wait_for_new_files",
            pipeline_name=pipeline.name,
            config_path=config_path,
            deferrable=True,
            poke_interval=options.poke_interval_seconds,
            timeout=options.wait_timeout_minutes * 60,
            soft_fail=True,
            retries=0,
        )

        if pipeline.source.kind == "dynamodb_stream":

            @task(multiple_outputs=False)
            def capture_stream() -> dict:
                """Read the DynamoDB stream's shards from their checkpoints; land one change file."""
                return tasks.capture_dynamodb_stream(pipeline, get_current_context())  # type: ignore[arg-type]

            capture_stream() >> wait

        if pipeline.source.kind == "binlog":

            @task(multiple_outputs=False)
            def capture_binlog() -> dict:
                """Read the source's binlog from the checkpoint; land DMS-format change files."""
                return tasks.capture_binlog(pipeline, get_current_context())  # type: ignore[arg-type]

            capture_binlog() >> wait

        if pipeline.source.kind == "audit_log":
            _audit_trail_capture(pipeline) >> wait

        @task
        def plan_batches(tables: list[str]) -> list[dict]:
            return tasks.plan(pipeline, get_current_context(), tables)  # type: ignore[arg-type]

        batches = plan_batches(wait.output)  # type: ignore[arg-type]
        loads = [_load_task(pipeline, target).expand(batch=batches) for target in tasks.targets(pipeline)]

        if pipeline.source.kind == "firehose":

            @task(trigger_rule="none_failed", retries=0, multiple_outputs=False)
            def report_failed_records() -> dict:
                """Records the transform Lambda refused: counted, sampled, and the task fails so a
                person sees them; the good records load regardless (this task blocks nothing)."""
                return tasks.report_failed_records(pipeline)

            batches >> report_failed_records()

        @task(trigger_rule="all_done", multiple_outputs=False)
        def advance_watermarks(*reports_per_target) -> dict:
            """Past the files every target handled; a table that failed somewhere keeps its mark."""
            return tasks.advance(pipeline, reports_per_target)

        advanced = advance_watermarks(*loads)

        if pipeline.bigquery is not None and pipeline.bigquery.compaction is not None:

            @task(trigger_rule="all_done", multiple_outputs=False)
            def compact_bigquery() -> list[dict]:
                """Compact the tables due into their state tables; a leaf, so its failure fails the run."""
                return tasks.compact(pipeline, get_current_context())  # type: ignore[arg-type]

            loads[tasks.targets(pipeline).index("bigquery")] >> compact_bigquery()

        aurora = pipeline.aurora
        if aurora is not None and aurora.mode == "merge" and aurora.purge_tombstones_after_hours is not None:

            @task(trigger_rule="all_done", pool=aurora.pool, multiple_outputs=False)
            def purge_aurora_tombstones() -> list[dict]:
                """Delete tombstones older than the safe horizon in small batches; a leaf like compact_bigquery."""
                return tasks.purge_tombstones(pipeline, get_current_context())  # type: ignore[arg-type]

            loads[tasks.targets(pipeline).index("aurora")] >> purge_aurora_tombstones()

        @task(trigger_rule="one_failed")  # AirflowFailException: no retries
        def fail_if_a_load_failed() -> None:
            """Fail the run when a load (or the planning) failed.

            Runs only then (one_failed); advance_watermarks runs regardless (all_done). In a
            healthy run it is skipped and the run succeeds. Without it the run's state would be
            advance_watermarks', always green."""
            tasks.fail_run(pipeline)

        [batches, *loads, advanced] >> fail_if_a_load_failed()
    return dag


def reconcile_schedule(pipeline: Pipeline):
    """A cron or preset; "assets": after every load that changed one of the tables."""
    assert pipeline.reconcile is not None
    if pipeline.reconcile.schedule == "audit_log":
        from cdc_sync.sources.audit_log.assets import pipeline_audit_assets

        return pipeline_audit_assets(pipeline)
    if pipeline.reconcile.schedule != "assets":
        return pipeline.reconcile.schedule
    import functools
    import operator

    uris = []
    for table in pipeline.tables:
        if pipeline.aurora is not None and pipeline.aurora.mode == "merge":
            uris.append(pipeline.aurora.asset_uri(table))
        if pipeline.bigquery is not None:
            uris.append(pipeline.bigquery.asset_uri(table))
    return functools.reduce(operator.or_, (Asset(uri) for uri in uris))  # any of them


def build_reconcile_dag(pipeline: Pipeline) -> DAG:
    """`cdc_<name>_reconcile`: compare every table with every target, store the results,
    write a report; optionally re-emit the differing source rows (repair)."""
    reconcile = pipeline.reconcile
    assert reconcile is not None
    pool = reconcile.pool or (pipeline.aurora.pool if pipeline.aurora is not None else pipeline.options.pool)
    with DAG(
        dag_id=pipeline.reconcile_dag_id,
        description=f"Reconcile the targets of cdc-sync pipeline {pipeline.name} with its source database",
        schedule=reconcile_schedule(pipeline),
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={
            "owner": "cdc-sync",
            "retries": pipeline.options.retries,
            "retry_delay": timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "max_retry_delay": timedelta(minutes=10),
        },
        tags=["cdc-sync", "reconcile"],
        params={
            "tables": Param(
                [],
                type="array",
                items={"type": "string"},
                description="Only these tables (schema.table). Empty: every table of the pipeline.",
            ),
            "repair": Param(
                False,
                type="boolean",
                description="Re-emit the source rows of keys that differ as a change file in the landing "
                "folder; the pipeline's next run loads it into every target.",
            ),
        },
        doc_md=f"**cdc-sync reconciliation of `{pipeline.name}`**: source (`{reconcile.source_conn_id}`) against "
        + ", ".join(t for t in ("aurora", "bigquery") if getattr(pipeline, t) is not None)
        + f". Results: table `{reconcile.results_table}` in each target; report: "
        f"`s3://{pipeline.source.bucket}/{reconcile.reports_prefix}{pipeline.name}/<run_id>.html`.",
    ) as dag:

        @task
        def tables_to_check() -> list[str]:
            return tasks.tables_to_check(pipeline, get_current_context())  # type: ignore[arg-type]

        @task(pool=pool, map_index_template="{{ cdc_table }}", multiple_outputs=False)
        def reconcile_table(table: str) -> list[dict]:
            return tasks.reconcile_table(pipeline, table, _name_mapped_task(table))

        @task(trigger_rule="all_done", multiple_outputs=False)
        def write_report() -> dict:
            return tasks.write_report(pipeline, get_current_context())  # type: ignore[arg-type]

        @task(multiple_outputs=False)
        def all_in_sync(report: dict) -> int:
            """The run's verdict: it only runs when every comparison passed (drift failed a
            reconcile_table task above), so the run itself shows failed on drift."""
            return tasks.all_in_sync(report)

        checks = reconcile_table.expand(table=tables_to_check())
        report = write_report()
        checks >> report
        verdict = all_in_sync(report)  # type: ignore[arg-type]  # an XComArg at parse time
        checks >> verdict
    return dag
