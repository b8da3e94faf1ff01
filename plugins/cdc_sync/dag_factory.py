"""One DAG per configured pipeline: wait for files → plan batches → load each table (mapped).

    wait_for_new_files (deferrable sensor)
        └─ plan_batches (one batch per table with new files)
              └─ load_to_bigquery.expand(batch=...)  (one mapped task per table)

Everything heavy is imported inside the tasks: building the DAG opens no connection.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetAlias, Param, get_current_context, task

from cdc_sync.config import Pipeline
from cdc_sync.sensors.dms_files import DmsNewFilesSensor


def _hooks(pipeline: Pipeline):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from cdc_sync.hooks.bigquery import CdcBigQueryHook

    target = pipeline.bigquery
    assert target is not None
    s3 = S3Hook(aws_conn_id=pipeline.source.aws_conn_id).get_conn()
    bq = CdcBigQueryHook(gcp_conn_id=target.gcp_conn_id, location=target.location).get_client(
        project_id=target.project, location=target.location
    )
    return s3, bq


def _is_backfill(context) -> bool:
    dag_run = context.get("dag_run")
    return str(getattr(dag_run, "run_type", "")).lower().endswith("backfill")


def build_pipeline_dag(pipeline: Pipeline, config_path: str | None = None) -> DAG:
    options = pipeline.options
    alias = AssetAlias(f"cdc_sync_{pipeline.name}_bigquery")
    default_args = {
        "owner": "cdc-sync",
        "retries": options.retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }
    with DAG(
        dag_id=pipeline.dag_id,
        description=pipeline.description or f"DMS files on s3://{pipeline.source.bucket} → BigQuery",
        schedule=pipeline.schedule,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        max_active_runs=1,  # one planner per pipeline: two runs must not batch the same files
        default_args=default_args,
        tags=["cdc-sync", "dms", "bigquery"],
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
            from cdc_sync import dms_to_bigquery, watermarks

            context = get_current_context()
            params = context["params"]
            window = None
            start, end = context.get("data_interval_start"), context.get("data_interval_end")
            if _is_backfill(context) and start and end:
                # a backfill run looks at the files DMS wrote in its own data interval
                window = (start, end)
                print(f"backfill run: CDC files written in [{start}, {end})")
            s3, bq = _hooks(pipeline)
            batches = dms_to_bigquery.plan_batches(
                pipeline, s3, bq, watermarks.read, tables=tables,
                replay_keys=params.get("replay_keys") or (), rescan=bool(params.get("rescan")), window=window,
            )
            for batch in batches:
                print(f"{batch['table']}: {len(batch['files'])} file(s) to load")
            if not batches:
                print("nothing to load: every listed file is already in the ledger")
            return batches

        @task(pool=options.pool, outlets=[alias], map_index_template="{{ cdc_table }}")
        def load_to_bigquery(batch: dict) -> dict:
            from cdc_sync import dms_to_bigquery, watermarks
            from cdc_sync._compat import AirflowFailException

            context = get_current_context()
            context["cdc_table"] = batch["table"]  # type: ignore[typeddict-unknown-key]  # names the mapped task in the UI
            replay = bool(context["params"].get("replay_keys"))
            s3, bq = _hooks(pipeline)
            report = dms_to_bigquery.load_batch(
                pipeline, batch, s3, bq, watermarks.read, watermarks.write, replay=replay
            )
            table = pipeline.table(batch["table"])
            if report.loaded:
                context["outlet_events"][alias].add(Asset(pipeline.bigquery.asset_uri(table)))  # type: ignore[union-attr]
            print(
                f"{table.qualified_name}: loaded {len(report.loaded)} file(s), "
                f"{sum(report.loaded.values())} change row(s) (job {report.job_id}); "
                f"already loaded {len(report.already_loaded)}; quarantined {len(report.quarantined)}"
            )
            if report.quarantined:
                # The good files are loaded and recorded; fail without retries so a person looks.
                details = "; ".join(f"s3://{pipeline.source.bucket}/{k}: {r}" for k, r in report.quarantined.items())
                raise AirflowFailException(
                    f"{table.qualified_name}: {len(report.quarantined)} file(s) quarantined — {details}. "
                    "Fix them and trigger the DAG with params.replay_keys to load them again."
                )
            return report.to_dict()

        load_to_bigquery.expand(batch=plan_batches(wait.output))  # type: ignore[arg-type]
    return dag
