"""Event-driven runs: S3 notifications through SQS start a pipeline run when files land; the
cron schedule is the sweep that loads what a consumed-but-lost message left behind."""

from __future__ import annotations

import json
from datetime import datetime
from urllib.parse import unquote_plus  # S3 event notifications URL-encode the key

import pytest

from tests.integration.harness import customer, expected_row

pytestmark = [pytest.mark.services, pytest.mark.deployed]


def _runs_of_type(deployment, dag_id: str, run_type: str) -> list[dict]:
    return [r for r in deployment.runs(dag_id) if r["run_type"] == run_type]


def _seconds(ti: dict) -> float:
    return (datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])).total_seconds()


def test_a_landed_file_starts_a_run_and_the_sweep_loads_what_a_lost_message_left(deployment):
    world, dag_id = deployment.worlds["events"], deployment.dag_id("events")
    sqs = deployment.stack.boto3_client("sqs")

    # a full load lands while the DAG is paused; its notification is consumed and lost
    # (as when the watcher took it and the run then failed or never started)
    expected = world.seed(range(1, 4))
    received = sqs.receive_message(QueueUrl=world.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
    (message,) = received["Messages"]
    assert unquote_plus(json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]).startswith("dms/")
    sqs.delete_message(QueueUrl=world.queue_url, ReceiptHandle=message["ReceiptHandle"])

    deployment.set_paused(dag_id, False)
    try:
        # the sweep: the cron's run ("0 0 1 1 *": the one for the last complete year, at unpausing)
        sweep = deployment.wait_until(
            "the sweep run", lambda: next(iter(_runs_of_type(deployment, dag_id, "scheduled")), None), timeout=120
        )
        sweep = deployment.wait_for_run(dag_id, sweep["dag_run_id"])
        assert sweep["state"] == "success", deployment.task_states(dag_id, sweep["dag_run_id"])
        assert world.view_rows() == expected and world.aurora_rows() == expected
        assert _runs_of_type(deployment, dag_id, "asset_triggered") == []  # no message was left to start one

        # a CDC file lands: its notification starts a run, long before the cron's next tick
        world.dms.update(world.customers, {"id": 1}, {"name": "changed by an event-driven run"})
        world.dms.delete(world.customers, {"id": 2})
        world.dms.flush(world.customers)
        expected[1] = expected_row(customer(1, name="changed by an event-driven run"))
        del expected[2]
        run = deployment.wait_until(
            "a run started by the S3 notification",
            lambda: next(iter(_runs_of_type(deployment, dag_id, "asset_triggered")), None),
            timeout=180,
        )
        run = deployment.wait_for_run(dag_id, run["dag_run_id"])
        states = deployment.task_states(dag_id, run["dag_run_id"])
        assert run["state"] == "success", states
        assert states["load_to_bigquery"] == ["success"] and states["load_to_aurora"] == ["success"]
        assert world.view_rows() == expected == world.source_rows(world.customers)
        assert world.aurora_rows() == expected
        assert len(_runs_of_type(deployment, dag_id, "scheduled")) == 1  # the cron did not run it
        changes = world.changelog_count()

        # a stale notification (its file loaded already): the run skips at once, loads nothing
        sqs.send_message(QueueUrl=world.queue_url, MessageBody=message["Body"])
        stale = deployment.wait_until(
            "a run started by the stale notification",
            lambda: next(
                (
                    r
                    for r in _runs_of_type(deployment, dag_id, "asset_triggered")
                    if r["dag_run_id"] != run["dag_run_id"]
                ),
                None,
            ),
            timeout=180,
        )
        stale_id = stale["dag_run_id"]
        assert deployment.wait_for_run(dag_id, stale_id)["state"] == "success"
        (sensor,) = [t for t in deployment.task_instances(dag_id, stale_id) if t["task_id"] == "wait_for_new_files"]
        assert sensor["state"] == "skipped"
        assert _seconds(sensor) < 60, sensor  # not held for wait_timeout (1 minute) in the triggerer
        assert world.changelog_count() == changes
        assert world.view_rows() == expected and world.aurora_rows() == expected
    finally:
        deployment.set_paused(dag_id, True)
