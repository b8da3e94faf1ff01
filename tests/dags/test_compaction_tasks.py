"""The pipeline DAG gets its compaction and purge tasks only when configured, wired after the loads."""

from __future__ import annotations

import pytest

from cdc_sync.config import ConfigError, parse_pipelines
from cdc_sync.orchestration.dag_factory import build_pipeline_dag


def _dag(targets: dict):
    pipeline = parse_pipelines(
        {
            "pipelines": [
                {
                    "name": "p",
                    "source": {"kind": "dms", "bucket": "landing"},
                    "tables": [{"schema": "s", "name": "t", "primary_key": ["id"]}],
                    "targets": targets,
                }
            ]
        }
    )[0]
    return build_pipeline_dag(pipeline)


def test_compaction_and_purge_tasks_follow_the_loads_and_fail_the_run_as_leaves():
    dag = _dag(
        {
            "bigquery": {"project": "local", "dataset": "d", "compaction": {"every_loads": 3}},
            "aurora": {"database": "r", "purge_tombstones_after_hours": 24},
        }
    )
    compact = dag.get_task("compact_bigquery")
    purge = dag.get_task("purge_aurora_tombstones")
    assert compact.upstream_task_ids == {"load_to_bigquery"} and compact.trigger_rule == "all_done"
    assert purge.upstream_task_ids == {"load_to_aurora"} and purge.trigger_rule == "all_done"
    assert purge.pool == "cdc_sync_aurora"
    assert {t.task_id for t in dag.leaves} == {"fail_if_a_load_failed", "compact_bigquery", "purge_aurora_tombstones"}
    assert {"compact_now", "rebuild_state"} <= set(dag.params)


def test_without_settings_there_is_no_compaction_or_purge():
    dag = _dag({"bigquery": {"project": "local", "dataset": "d"}, "aurora": {"database": "r"}})
    assert not {"compact_bigquery", "purge_aurora_tombstones"} & set(dag.task_ids)
    assert "compact_now" not in dag.params


def test_a_purge_setting_on_an_append_target_is_refused():
    with pytest.raises(ConfigError, match="purge_tombstones_after_hours: only for mode merge"):
        parse_pipelines(
            {
                "pipelines": [
                    {
                        "name": "p",
                        "source": {"kind": "firehose", "bucket": "landing"},
                        "tables": [{"schema": "web", "name": "clicks", "columns": ["a"]}],
                        "targets": {"aurora": {"database": "r", "mode": "append", "purge_tombstones_after_hours": 1}},
                    }
                ]
            }
        )
