"""A pipeline scheduled on the audit log under a real triggerer: a write the audit log records
runs the pipeline's DAG — once per batch of writes, not once per statement."""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import customer, expected_row
from tools.audit_standin import audit_line

pytestmark = [pytest.mark.services, pytest.mark.deployed]


def _audit(world, statements: list[str]) -> None:
    """The audit plugin's lines for these statements, through CloudWatch Logs to Kinesis."""
    logs = world.stack.boto3_client("logs")
    logs.put_log_events(
        logGroupName=world.audit_group,
        logStreamName="shop-instance-1",
        logEvents=[
            {"timestamp": int(time.time() * 1000), "message": audit_line(s, database=world.db, query_id=n)}
            for n, s in enumerate(statements)
        ],
    )


def _asset_runs(deployment, dag_id: str) -> list[dict]:
    return [r for r in deployment.runs(dag_id) if r["run_type"] == "asset_triggered"]


def test_writes_in_the_audit_log_run_the_pipeline_once_per_batch(deployment):
    world, dag_id = deployment.worlds["audited"], deployment.dag_id("audited")
    deployment.set_paused(dag_id, False)

    # 50 inserts in the source: DMS lands them, the audit log records 50 statements at once
    expected = world.seed(range(1, 51), full_load=False)
    world.dms.flush(world.customers)
    _audit(world, [f"INSERT INTO customers (id) VALUES ({i})" for i in range(1, 51)] + ["SELECT 1"])
    first = deployment.wait_until("a run triggered by the audit log", lambda: _asset_runs(deployment, dag_id))
    assert len(first) == 1, first
    run = deployment.wait_for_run(dag_id, first[0]["dag_run_id"])
    assert run["state"] == "success", deployment.task_states(dag_id, run["dag_run_id"])
    assert world.view_rows() == expected and world.aurora_rows() == expected

    # a write to a table the pipeline does not hold: no run; then an update of customers: one run
    world.dms.update(world.customers, {"id": 7}, {"name": "audited"})
    world.dms.flush(world.customers)
    expected[7] = expected_row(customer(7, name="audited"))
    _audit(world, ["INSERT INTO other_table VALUES (1)", "SELECT * FROM customers"])
    _audit(world, [f"UPDATE {world.db}.customers SET name = 'audited' WHERE id = 7"])
    second = deployment.wait_until("a second audit-triggered run", lambda: len(_asset_runs(deployment, dag_id)) >= 2)
    assert second
    runs = _asset_runs(deployment, dag_id)
    assert len(runs) == 2, runs
    for run in runs:
        assert deployment.wait_for_run(dag_id, run["dag_run_id"])["state"] == "success"
    assert world.view_rows() == expected and world.aurora_rows() == expected
    assert len(_asset_runs(deployment, dag_id)) == 2
