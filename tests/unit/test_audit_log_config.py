"""`source.audit_log`, `kind: audit_log` (the audit trail) and `schedule: audit_log` in pipelines.yaml:
what is accepted, what is refused with which field named, and the DAGs they build."""

from __future__ import annotations

import copy

import pytest

from cdc_sync.config import ConfigError, parse_pipelines
from cdc_sync.orchestration.dag_factory import build_pipeline_dag, build_reconcile_dag
from cdc_sync.sources.audit_log.trail_table import TRAIL_COLUMNS

SHOP = {
    "name": "shop",
    "schedule": "audit_log",
    "source": {
        "kind": "dms",
        "bucket": "landing",
        "audit_log": {"stream": "shop-audit", "source_name": "shop_source", "poll_interval_seconds": 2},
    },
    "tables": [
        {"schema": "shop", "name": "customers", "primary_key": ["id"]},
        {"schema": "shop", "name": "orders", "primary_key": ["id"]},
    ],
    "targets": {"bigquery": {"project": "local", "dataset": "d"}},
    "reconcile": {"source_conn_id": "mysql_source", "schedule": "audit_log"},
}
TRAIL = {
    "name": "shop_trail",
    "schedule": "@hourly",
    "source": {"kind": "audit_log", "bucket": "landing", "prefix": "audit", "audit_log": {"stream": "shop-audit"}},
    "tables": [{"schema": "audit", "name": "shop"}],
    "targets": {"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "ops"}},
}


def parse(*pipelines: dict):
    return parse_pipelines({"pipelines": [copy.deepcopy(p) for p in pipelines]}, "pipelines.yaml")


def watched(condition) -> dict[str, tuple]:
    """asset uri -> (trigger class path, its kwargs), for an asset or an any-of condition."""
    assets = getattr(condition, "objects", [condition])
    return {a.uri: a.watchers[0].trigger.serialize() for a in assets}


def test_schedule_audit_log_makes_the_dag_and_its_reconciliation_run_on_the_tables_audit_assets():
    (pipeline,) = parse(SHOP)
    trigger = "cdc_sync.sources.audit_log.trigger.AuditLogTrigger"
    expected = {
        f"mysql://shop_source/shop/{name}": (
            trigger,
            {
                "stream_name": "shop-audit",
                "aws_conn_id": "aws_default",
                "tables": [f"shop.{name}"],
                "poll_interval": 2,
                "max_records_per_call": 10000,
            },
        )
        for name in ("customers", "orders")
    }
    dag = build_pipeline_dag(pipeline)
    assert type(dag.timetable.asset_condition).__name__ == "AssetAny"  # any table written, not all of them
    assert watched(dag.timetable.asset_condition) == expected
    assert watched(build_reconcile_dag(pipeline).timetable.asset_condition) == expected


def test_the_audit_trail_pipeline_gets_the_trail_columns_and_a_capture_task():
    (pipeline,) = parse(TRAIL)
    table = pipeline.tables[0]
    assert table.columns == TRAIL_COLUMNS and table.primary_key == ("event_id",)
    assert table.commit_timestamp_column == "cdc_commit_ts"
    assert pipeline.source.audit_log.checkpoint_key("shop_trail") == "cdc-sync/checkpoints/shop_trail/audit_log.json"
    dag = build_pipeline_dag(pipeline)
    assert {"capture_audit_trail", "wait_for_new_files", "load_to_aurora", "load_to_bigquery"} <= set(dag.task_ids)
    assert dag.get_task("wait_for_new_files").upstream_task_ids == {"capture_audit_trail"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda p: p["source"].pop("audit_log"),
            "field schedule: audit_log schedules on writes .* source.audit_log.stream",
        ),
        (
            lambda p: (p.update(schedule="@daily"), p["source"].pop("audit_log")),
            "field reconcile.schedule: audit_log schedules",
        ),
        (lambda p: p["source"]["audit_log"].update(events="some"), "field source.audit_log.events"),
        (lambda p: p["source"]["audit_log"].update(stream="a b"), "field source.audit_log.stream"),
    ],
)
def test_audit_log_schedules_without_a_stream_are_refused(change, message):
    raw = copy.deepcopy(SHOP)
    change(raw)
    with pytest.raises(ConfigError, match=message):
        parse(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["source"].pop("audit_log"), "field source.audit_log: required for kind audit_log"),
        (lambda p: p["tables"][0].update(primary_key=["id"]), r"field tables\[0\].primary_key: the audit trail's"),
        (lambda p: p["tables"][0].update(columns=["a int"]), r"field tables\[0\].columns: the audit trail's"),
        (lambda p: p["tables"].append({"schema": "audit", "name": "x"}), "exactly one table"),
        (lambda p: p["targets"]["aurora"].update(mode="append"), "field targets.aurora.mode: the trail"),
        (lambda p: p.update(reconcile={"source_conn_id": "x"}), "field reconcile: the audit trail"),
        (lambda p: p.update(schedule="audit_log"), "field schedule: the audit trail pipeline's table"),
    ],
)
def test_audit_trail_settings_that_cannot_work_are_refused(change, message):
    raw = copy.deepcopy(TRAIL)
    change(raw)
    with pytest.raises(ConfigError, match=message):
        parse(raw)
