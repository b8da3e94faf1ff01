"""Every DAG file imports cleanly, opens no network connection while parsing, and parses fast."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))

# Run in a fresh interpreter, like the DAG processor: Airflow already imported, then the
# file parsed with every socket connect refused.
_PROBE = r"""
import json, runpy, socket, sys, time
# The DAG processor has Airflow loaded before it parses files: the SDK with its decorators
# and the DagBag (which on Airflow 3.0 pulls in airflow.models; ~1 s of Airflow's own imports
# that are not the DAG file's cost).
import airflow.sdk
from airflow.sdk import DAG, Asset, Param, task
try:
    import airflow.dag_processing.dagbag
except ImportError:  # Airflow 3.0
    import airflow.models.dagbag

def refuse(*args, **kwargs):
    raise AssertionError(f"network access while parsing a DAG file: {args}")

socket.socket.connect = refuse
socket.create_connection = refuse
start = time.perf_counter()
namespace = runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - start
from airflow.sdk import DAG
dags = {k: v for k, v in namespace.items() if isinstance(v, DAG)}
print(json.dumps({"seconds": elapsed, "dags": sorted(d.dag_id for d in dags.values())}))
"""


def test_there_are_dag_files():
    assert DAG_FILES


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_offline_in_under_a_second(dag_file):
    env = {"PYTHONPATH": str(REPO / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin"}
    import os

    env["AIRFLOW_HOME"] = os.environ["AIRFLOW_HOME"]
    # warm run first (bytecode caches), then the measured one
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", _PROBE, str(dag_file)], capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["dags"], f"{dag_file.name} defines no DAG"
    assert report["seconds"] < 1.0, f"{dag_file.name} took {report['seconds']:.2f}s to parse"


def test_dagbag_has_no_import_errors_and_every_dag_is_tagged_with_retries(monkeypatch):
    from airflow.models.dagbag import DagBag  # moved to airflow.dag_processing.dagbag in 3.1+; re-exported

    monkeypatch.setenv("CDC_SYNC_CONFIG", str(REPO / "config" / "pipelines.yaml"))  # not a test's config

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert bag.dags, "no DAGs found"
    for dag_id, dag in bag.dags.items():
        assert "cdc-sync" in dag.tags, dag_id
        assert dag.max_active_runs == 1, dag_id
        for task in dag.tasks:
            if task.task_id != "wait_for_new_files":
                assert task.retries >= 1, (dag_id, task.task_id)


def test_dag_shape_follows_the_targets_and_source_kind():
    from cdc_sync.config import parse_pipelines
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    def tasks(targets: dict, source: dict | None = None, table: dict | None = None) -> set[str]:
        (pipeline,) = parse_pipelines(
            {
                "pipelines": [
                    {
                        "name": "p",
                        "source": source or {"kind": "dms", "bucket": "landing"},
                        "tables": [table or {"schema": "s", "name": "t", "primary_key": ["id"]}],
                        "targets": targets,
                    }
                ]
            }
        )
        return set(build_pipeline_dag(pipeline).task_ids)

    common = {"wait_for_new_files", "plan_batches", "advance_watermarks", "fail_if_a_load_failed"}
    assert tasks({"bigquery": {"project": "local", "dataset": "d"}}) == common | {"load_to_bigquery"}
    assert tasks({"aurora": {"database": "r"}}) == common | {"load_to_aurora"}
    assert tasks({"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "r"}}) == (
        common | {"load_to_bigquery", "load_to_aurora"}
    )
    assert tasks(
        {"aurora": {"database": "r", "mode": "append"}},
        {"kind": "firehose", "bucket": "landing"},
        {"schema": "web", "name": "clicks", "columns": ["a"]},
    ) == (common | {"load_to_aurora", "report_failed_records"})


def test_aurora_load_takes_a_pool_slot_per_connection():
    from cdc_sync.config import parse_pipelines
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    def load_task(source: dict, table: dict, aurora: dict):
        (pipeline,) = parse_pipelines(
            {"pipelines": [{"name": "p", "source": source, "tables": [table], "targets": {"aurora": aurora}}]}
        )
        return build_pipeline_dag(pipeline).get_task("load_to_aurora")

    merge = load_task(
        {"kind": "dms", "bucket": "landing"},
        {"schema": "s", "name": "t", "primary_key": ["id"]},
        {"database": "r", "pool": "aurora_a", "load_connections": 3},
    )
    assert (merge.pool, merge.pool_slots) == ("aurora_a", 3)
    append = load_task(
        {"kind": "firehose", "bucket": "landing"},
        {"schema": "web", "name": "clicks", "columns": ["a"]},
        {"database": "r", "mode": "append", "load_connections": 3},
    )
    assert (append.pool, append.pool_slots) == ("cdc_sync_aurora", 1)  # one connection whatever the setting


def test_reconcile_dag_maps_one_task_per_table_and_reports_after_all():
    from cdc_sync.config import parse_pipelines
    from cdc_sync.orchestration.dag_factory import build_reconcile_dag

    (pipeline,) = parse_pipelines(
        {
            "pipelines": [
                {
                    "name": "p",
                    "source": {"kind": "dms", "bucket": "landing"},
                    "tables": [{"schema": "s", "name": "t", "primary_key": ["id"], "updated_at_column": "changed_at"}],
                    "targets": {"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "r"}},
                    "reconcile": {"source_conn_id": "shop_source", "schedule": "assets"},
                }
            ]
        }
    )
    dag = build_reconcile_dag(pipeline)
    assert dag.dag_id == "cdc_p_reconcile"
    assert set(dag.task_ids) == {"tables_to_check", "reconcile_table", "write_report", "all_in_sync"}
    assert dag.get_task("all_in_sync").upstream_task_ids == {"reconcile_table", "write_report"}
    assert dag.get_task("reconcile_table").pool == "cdc_sync_aurora"  # it holds an Aurora connection
    assert dag.get_task("write_report").trigger_rule == "all_done"  # a report also when tables drifted
    assert set(dag.params.keys()) == {"tables", "repair"}
    # "assets": after any load that changed one of the tables, in either target
    from cdc_sync.orchestration.dag_factory import reconcile_schedule

    condition = reconcile_schedule(pipeline)
    assert type(condition).__name__ == "AssetAny"
    uris = {a.uri for a in condition.objects}
    assert uris == {"mysql://aurora_default/r/s_t", "bigquery://local/d/s_t"}


def test_no_plugin_file_runs_when_airflow_imports_the_plugins_folder():
    """Airflow imports every .py of the plugins folder under its file stem; a `__main__.py`
    would then run its main block inside every Airflow command (it did once: `airflow dags
    test` ended in the reconcile CLI's usage message)."""
    stems = {p.stem for p in (REPO / "plugins").rglob("*.py")}
    assert "__main__" not in stems


def test_dag_description_and_tags_name_the_actual_source_and_targets():
    from cdc_sync.config import parse_pipelines
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    def dag(targets: dict, source: dict, table: dict):
        (pipeline,) = parse_pipelines(
            {"pipelines": [{"name": "p", "source": source, "tables": [table], "targets": targets}]}
        )
        return build_pipeline_dag(pipeline)

    dms, row = {"kind": "dms", "bucket": "landing"}, {"schema": "s", "name": "t", "primary_key": ["id"]}
    firehose = dag(
        {"aurora": {"database": "r", "mode": "append"}},
        {"kind": "firehose", "bucket": "clicks"},
        {"schema": "web", "name": "clicks", "columns": ["a"]},
    )
    assert firehose.description == "Firehose objects on s3://clicks → Aurora MySQL (append)"
    assert sorted(firehose.tags) == ["aurora", "cdc-sync", "firehose"]
    both = dag({"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "r"}}, dms, row)
    assert both.description == "DMS files on s3://landing → BigQuery and Aurora MySQL (merge)"
    assert sorted(both.tags) == ["aurora", "bigquery", "cdc-sync", "dms"]
    bigquery = dag({"bigquery": {"project": "local", "dataset": "d"}}, dms, row)
    assert (bigquery.description, sorted(bigquery.tags)) == (
        "DMS files on s3://landing → BigQuery",
        ["bigquery", "cdc-sync", "dms"],
    )


def test_a_failed_load_fails_the_run_and_the_watermarks_still_advance():
    """The run's state is its leaves': one_failed after every load and advance_watermarks."""
    from cdc_sync.config import parse_pipelines
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    (pipeline,) = parse_pipelines(
        {
            "pipelines": [
                {
                    "name": "p",
                    "source": {"kind": "dms", "bucket": "landing"},
                    "tables": [{"schema": "s", "name": "t", "primary_key": ["id"]}],
                    "targets": {"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "r"}},
                }
            ]
        }
    )
    dag = build_pipeline_dag(pipeline)
    verdict = dag.get_task("fail_if_a_load_failed")
    assert verdict.trigger_rule == "one_failed"
    assert verdict.upstream_task_ids == {"plan_batches", "load_to_bigquery", "load_to_aurora", "advance_watermarks"}
    assert dag.get_task("advance_watermarks").trigger_rule == "all_done"
    assert {t.task_id for t in dag.leaves} == {"fail_if_a_load_failed"}
