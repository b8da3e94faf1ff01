"""One DAG per configured pipeline: wait for files → plan batches → load each table (mapped).

    wait_for_new_files (deferrable sensor)
        └─ plan_batches (one batch per table with files some target has not finished)
              ├─ load_to_bigquery.expand(batch=...)  (one mapped task per table)
              ├─ load_to_aurora.expand(batch=...)    (same batches, in the Aurora pool)
              └─ advance_watermarks                  (past what every target handled)
                    └─ fail_if_a_load_failed         (one_failed: a failed load fails the run)

Everything heavy is imported inside the tasks: building the DAG opens no connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetAlias, Param, get_current_context, task

from cdc_sync.config import Pipeline
from cdc_sync.orchestration.sensor import DmsNewFilesSensor


def _s3(pipeline: Pipeline):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=pipeline.source.aws_conn_id).get_conn()


def _bigquery(pipeline: Pipeline):
    from cdc_sync.orchestration.hooks.bigquery import CdcBigQueryHook

    target = pipeline.bigquery
    assert target is not None
    return CdcBigQueryHook(gcp_conn_id=target.gcp_conn_id, location=target.location).get_client(
        project_id=target.project, location=target.location
    )


def _aurora_connect(pipeline: Pipeline):
    from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook

    target = pipeline.aurora
    assert target is not None
    hook = CdcMySqlHook(mysql_conn_id=target.mysql_conn_id)
    # LOCAL INFILE only on the loader's own connection, and only for the method that needs it
    return lambda: hook.get_conn(local_infile=target.method == "local_infile")


def _finished_checks(pipeline: Pipeline) -> list:
    checks = []
    if pipeline.bigquery is not None:
        from cdc_sync.targets.bigquery.batch import finished_in_bigquery

        checks.append(finished_in_bigquery(pipeline, _bigquery(pipeline)))
    if pipeline.aurora is not None:
        from cdc_sync.targets.aurora.batch import finished_in_aurora

        checks.append(finished_in_aurora(pipeline, _aurora_connect(pipeline)))
    return checks


def _name_mapped_task(batch: dict):
    context = get_current_context()
    context["cdc_table"] = batch["table"]  # type: ignore[typeddict-unknown-key]  # names the mapped task in the UI
    return context


def _finish(pipeline: Pipeline, report) -> dict:
    """Log what a load did; fail (without retries) when files were quarantined."""
    from cdc_sync._compat import AirflowFailException

    rows = "record(s)" if pipeline.source.kind == "firehose" else "change row(s)"
    print(
        f"{report.table} → {report.target}: loaded {len(report.loaded)} file(s), "
        f"{sum(report.loaded.values())} {rows}"
        + (f" (job {report.job_id})" if report.job_id else "")
        + f"; already loaded {len(report.already_loaded)}; quarantined {len(report.quarantined)}"
    )
    if report.quarantined:
        # The good files are loaded and recorded; fail without retries so a person looks.
        details = "; ".join(f"s3://{pipeline.source.bucket}/{k}: {r}" for k, r in report.quarantined.items())
        raise AirflowFailException(
            f"{report.table} → {report.target}: {len(report.quarantined)} file(s) quarantined — {details}. "
            "Fix them and trigger the DAG with params.replay_keys to load them again."
        )
    return report.to_dict()


def _is_backfill(context) -> bool:
    dag_run = context.get("dag_run")
    return str(getattr(dag_run, "run_type", "")).lower().endswith("backfill")


def _targets(pipeline: Pipeline) -> list[str]:
    return [name for name in ("bigquery", "aurora") if getattr(pipeline, name) is not None]


def _describe(pipeline: Pipeline) -> str:
    """The default description, from the pipeline's actual source and targets."""
    from cdc_sync.orchestration.sensor import landed_files

    names = {"bigquery": "BigQuery", "aurora": "Aurora MySQL"}
    aurora = pipeline.aurora
    targets = [f"{names[t]} ({aurora.mode})" if t == "aurora" and aurora is not None else names[t]
               for t in _targets(pipeline)]
    return f"{landed_files(pipeline)} on s3://{pipeline.source.bucket} → {' and '.join(targets)}"


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
        schedule=pipeline.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,  # one planner per pipeline: two runs must not batch the same files
        default_args=default_args,
        tags=["cdc-sync", pipeline.source.kind, *_targets(pipeline)],
        params={
            "replay_keys": Param(
                [], type="array", items={"type": "string"},
                description="Object keys to load again even if quarantined (after fixing them). Empty: normal run.",
            ),
            "rescan": Param(
                False, type="boolean",
                description="List every file under the table folders instead of from the watermark "
                            "(the ledger still skips what is loaded).",
            ),
        },
        doc_md=f"**cdc-sync pipeline `{pipeline.name}`** — tables: "
               + ", ".join(f"`{t.qualified_name}`" for t in pipeline.tables),
    ) as dag:
        wait = DmsNewFilesSensor(
            task_id="wait_for_new_files",
            pipeline_name=pipeline.name,
            config_path=config_path,
            deferrable=True,
            poke_interval=options.poke_interval_seconds,
            timeout=options.wait_timeout_minutes * 60,
            soft_fail=True,
            retries=0,
        )

        @task
        def plan_batches(tables: list[str]) -> list[dict]:
            from cdc_sync import planning
            from cdc_sync.sources import watermarks

            context = get_current_context()
            params = context["params"]
            window = None
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if _is_backfill(context) and start and end:
                # a backfill run looks at the files DMS wrote in its own data interval
                window = (start, end)
                print(f"backfill run: CDC files written in [{start}, {end})")
            batches = planning.plan_batches(
                pipeline, _s3(pipeline), watermarks.read, _finished_checks(pipeline), tables=tables,
                replay_keys=params.get("replay_keys") or (), rescan=bool(params.get("rescan")), window=window,
                write_watermark=watermarks.write,  # remembers finished files inside the grace for the sensor
            )
            for batch in batches:
                print(f"{batch['table']}: {len(batch['files'])} file(s) to load")
            if not batches:
                print("nothing to load: every listed file is already in the ledgers")
            return batches

        batches = plan_batches(wait.output)  # type: ignore[arg-type]
        loads = []

        if pipeline.bigquery is not None:
            bigquery_alias = AssetAlias(f"cdc_sync_{pipeline.name}_bigquery")

            # multiple_outputs=False: a `-> dict` annotation would make Airflow push every key as its own XCom
            @task(pool=options.pool, outlets=[bigquery_alias], map_index_template="{{ cdc_table }}", multiple_outputs=False)
            def load_to_bigquery(batch: dict) -> dict:
                from cdc_sync.targets.bigquery import batch as dms_to_bigquery

                context = _name_mapped_task(batch)
                report = dms_to_bigquery.load_batch(
                    pipeline, batch, _s3(pipeline), _bigquery(pipeline), replay=bool(context["params"].get("replay_keys"))
                )
                table = pipeline.table(batch["table"])
                if report.loaded:
                    context["outlet_events"][bigquery_alias].add(Asset(pipeline.bigquery.asset_uri(table)))  # type: ignore[union-attr]
                return _finish(pipeline, report)

            loads.append(load_to_bigquery.expand(batch=batches))

        if pipeline.aurora is not None:
            aurora_alias = AssetAlias(f"cdc_sync_{pipeline.name}_aurora")

            @task(pool=pipeline.aurora.pool, pool_slots=pipeline.aurora.task_pool_slots, outlets=[aurora_alias],
                  map_index_template="{{ cdc_table }}", multiple_outputs=False)
            def load_to_aurora(batch: dict) -> dict:
                from cdc_sync.targets.aurora import batch as to_aurora

                context = _name_mapped_task(batch)
                report = to_aurora.load_batch(
                    pipeline, batch, _s3(pipeline), _aurora_connect(pipeline),
                    replay=bool(context["params"].get("replay_keys")),
                )
                table = pipeline.table(batch["table"])
                if report.loaded:
                    context["outlet_events"][aurora_alias].add(Asset(pipeline.aurora.asset_uri(table)))  # type: ignore[union-attr]
                return _finish(pipeline, report)

            loads.append(load_to_aurora.expand(batch=batches))

        if pipeline.source.kind == "firehose":

            @task(trigger_rule="none_failed", retries=0, multiple_outputs=False)
            def report_failed_records() -> dict:
                """Records the transform Lambda refused: counted, sampled, and the task fails so a
                person sees them; the good records load regardless (this task blocks nothing)."""
                from airflow.sdk import Variable

                from cdc_sync._compat import AirflowFailException
                from cdc_sync.sources.firehose.failures import read_failed_records

                key = f"cdc_sync.{pipeline.name}.failed_records.watermark"
                after = Variable.get(key, default=None)
                found = read_failed_records(_s3(pipeline), pipeline.source.bucket, pipeline.source.error_prefix, after)
                if found.objects:
                    Variable.set(key, max(found.objects))  # each refused record is reported once
                summary = found.summary(pipeline.source.bucket)
                print(summary)
                if found.count:
                    raise AirflowFailException(summary)
                return {"objects": found.objects, "count": found.count}

            batches >> report_failed_records()

        @task(trigger_rule="all_done", multiple_outputs=False)
        def advance_watermarks(*reports_per_target) -> dict:
            """Past the files every target handled; a table that failed somewhere keeps its mark."""
            from cdc_sync import planning
            from cdc_sync.sources import watermarks

            # a slice reads a mapped task's XComs in one call; iterating would ask for one index
            # past the end, which the API server logs as an error ("XCom not found") in a healthy run
            reports = [r for target_reports in reports_per_target for r in (target_reports or [])[:] if r]
            moved = planning.advance_watermarks(pipeline, reports, len(reports_per_target), watermarks.read,
                                                watermarks.write)
            return {table: mark.to_dict() for table, mark in moved.items()}

        advanced = advance_watermarks(*loads)

        @task(trigger_rule="one_failed")  # AirflowFailException: no retries
        def fail_if_a_load_failed() -> None:
            """Fail the run when a load (or the planning) failed.

            Runs only then (one_failed); advance_watermarks runs regardless (all_done). In a
            healthy run it is skipped and the run succeeds. Without it the run's state would be
            advance_watermarks', always green."""
            from cdc_sync._compat import AirflowFailException

            raise AirflowFailException(
                f"pipeline {pipeline.name}: a load failed in this run — the failed load_to_* or plan_batches "
                "task's log names the table, the files and what is wrong. The watermarks moved only past "
                "what every target handled, so the next run lists the rest again."
            )

        [batches, *loads, advanced] >> fail_if_a_load_failed()
    return dag


def _mysql_connect(mysql_conn_id: str):
    from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook

    hook = CdcMySqlHook(mysql_conn_id=mysql_conn_id)
    return lambda: hook.get_conn()


def _source_connect(pipeline: Pipeline):
    assert pipeline.reconcile is not None
    return _mysql_connect(pipeline.reconcile.source_conn_id)


def _aurora_plain_connect(pipeline: Pipeline):
    """Aurora for reading and writing results: no LOCAL INFILE on this connection."""
    return _mysql_connect(pipeline.aurora.mysql_conn_id) if pipeline.aurora is not None else None


def _reconcile_schedule(pipeline: Pipeline):
    """A cron or preset; "assets": after every load that changed one of the tables."""
    assert pipeline.reconcile is not None
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
        schedule=_reconcile_schedule(pipeline),
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,
        default_args={"owner": "cdc-sync", "retries": pipeline.options.retries, "retry_delay": timedelta(seconds=30),
                      "retry_exponential_backoff": True, "max_retry_delay": timedelta(minutes=10)},
        tags=["cdc-sync", "reconcile"],
        params={
            "tables": Param([], type="array", items={"type": "string"},
                            description="Only these tables (schema.table). Empty: every table of the pipeline."),
            "repair": Param(False, type="boolean",
                            description="Re-emit the source rows of keys that differ as a change file in the landing "
                                        "folder; the pipeline's next run loads it into every target."),
        },
        doc_md=f"**cdc-sync reconciliation of `{pipeline.name}`**: source (`{reconcile.source_conn_id}`) against "
               + ", ".join(t for t in ("aurora", "bigquery") if getattr(pipeline, t) is not None)
               + f". Results: table `{reconcile.results_table}` in each target; report: "
               f"`s3://{pipeline.source.bucket}/{reconcile.reports_prefix}{pipeline.name}/<run_id>.html`.",
    ) as dag:

        @task
        def tables_to_check() -> list[str]:
            wanted = get_current_context()["params"].get("tables") or [t.qualified_name for t in pipeline.tables]
            for name in wanted:
                pipeline.table(name)  # an unknown table fails here, naming it
            return list(wanted)

        @task(pool=pool, map_index_template="{{ cdc_table }}", multiple_outputs=False)
        def reconcile_table(table: str) -> list[dict]:
            from cdc_sync._compat import AirflowFailException
            from cdc_sync.reconcile.repair import emit_repair_file, keys_to_repair
            from cdc_sync.reconcile.run import reconcile_table as run_reconcile

            context = _name_mapped_task({"table": table})
            source_connect = _source_connect(pipeline)
            comparisons = run_reconcile(
                pipeline, table, source_connect=source_connect, run_id=context["run_id"],
                bigquery_client=_bigquery(pipeline) if pipeline.bigquery is not None else None,
                aurora_connect=_aurora_plain_connect(pipeline),
            )
            drift = [c for c in comparisons if c.status == "drift"]
            if drift and context["params"].get("repair"):
                emit_repair_file(pipeline, pipeline.table(table), source_connect, _s3(pipeline),
                                 keys_to_repair(drift))
            if drift:
                raise AirflowFailException(" | ".join(c.summary() for c in drift))
            return [c.to_dict() for c in comparisons]

        @task(trigger_rule="all_done", multiple_outputs=False)
        def write_report() -> dict:
            from cdc_sync.reconcile.report import html_page, markdown, report_key
            from cdc_sync.reconcile.run import load_results

            run_id = get_current_context()["run_id"]
            rows = load_results(pipeline, run_id, bigquery_client=_bigquery(pipeline) if pipeline.bigquery else None,
                                aurora_connect=_aurora_plain_connect(pipeline))
            text = markdown(pipeline.name, run_id, rows)
            print(text)
            s3 = _s3(pipeline)
            keys = {}
            for extension, body, content_type in (("md", text, "text/markdown"),
                                                  ("html", html_page(pipeline.name, run_id, rows), "text/html")):
                keys[extension] = report_key(reconcile.reports_prefix, pipeline.name, run_id, extension)
                s3.put_object(Bucket=pipeline.source.bucket, Key=keys[extension], Body=body.encode("utf-8"),
                              ContentType=f"{content_type}; charset=utf-8")
            print("report: " + ", ".join(f"s3://{pipeline.source.bucket}/{k}" for k in keys.values()))
            return {"report": keys, "comparisons": len(rows), "drift": sum(r["status"] == "drift" for r in rows)}

        @task(multiple_outputs=False)
        def all_in_sync(report: dict) -> int:
            """The run's verdict: it only runs when every comparison passed (drift failed a
            reconcile_table task above), so the run itself shows failed on drift."""
            print(f"{report['comparisons']} comparison(s), none with drift")
            return int(report["comparisons"])

        checks = reconcile_table.expand(table=tables_to_check())
        report = write_report()
        checks >> report
        verdict = all_in_sync(report)  # type: ignore[arg-type]  # an XComArg at parse time
        checks >> verdict
    return dag
