"""What users do with a deployed cdc-sync: a scheduled run waits in the triggerer until files
land; runs are cleared and triggered with params from the REST API."""

from __future__ import annotations

import pytest

from tests.integration.harness import customer, expected_row

pytestmark = [pytest.mark.services, pytest.mark.deployed]


def test_scheduled_run_defers_to_the_triggerer_then_loads_what_landed(deployment):
    world, dag_id = deployment.worlds["live"], deployment.dag_id("live")
    deployment.set_paused(dag_id, False)
    try:
        # the scheduler starts a run; its sensor finds nothing and hands the waiting to the triggerer
        def deferred_sensor():
            for run in deployment.runs(dag_id):
                for ti in deployment.task_instances(dag_id, run["dag_run_id"]):
                    if ti["task_id"] == "wait_for_new_files" and ti["state"] == "deferred":
                        return run, ti
            return None

        run, sensor = deployment.wait_until("the sensor of a scheduled run to defer", deferred_sensor, timeout=240)
        assert run["run_type"] == "scheduled"
        # a deferred task holds no worker slot: the pool counts it as deferred, not running
        pool = deployment.airflow.api("GET", f"/api/v2/pools/{sensor['pool']}")
        assert pool["deferred_slots"] >= 1 and pool["running_slots"] == 0, pool

        expected = world.seed(range(1, 4))  # a DMS full load lands
        world.dms.update(world.customers, {"id": 1}, {"name": "changed after the full load"})
        world.dms.delete(world.customers, {"id": 2})
        world.dms.flush(world.customers)  # then a CDC file
        expected[1] = expected_row(customer(1, name="changed after the full load"))
        del expected[2]

        ended = deployment.wait_for_run(dag_id, run["dag_run_id"], timeout=300)
        states = deployment.task_states(dag_id, run["dag_run_id"])
        assert ended["state"] == "success", states
        assert states["wait_for_new_files"] == ["success"]
        assert states["load_to_bigquery"] == ["success"] and states["load_to_aurora"] == ["success"]
    finally:
        deployment.set_paused(dag_id, True)
    assert world.view_rows() == expected == world.source_rows(world.customers)
    assert world.aurora_rows() == expected


def test_clearing_failed_and_successful_loads_reruns_them_safely(deployment):
    world, dag_id = deployment.worlds["ops"], deployment.dag_id("ops")
    deployment.set_paused(dag_id, False)
    expected = world.seed(range(1, 4))
    world.dms.update(world.customers, {"id": 3}, {"qty": 333})
    world.dms.flush(world.customers)
    expected[3] = expected_row(customer(3, qty=333))
    world.dms.update(world.customers, {"id": 1}, {"qty": 111})
    bad = world.dms.flush(world.customers)  # lands broken: the body is not Parquet
    fixed = world.s3.get_object(Bucket=world.bucket, Key=bad)["Body"].read()
    world.s3.put_object(Bucket=world.bucket, Key=bad, Body=b"this is not parquet")

    run_id = deployment.trigger(dag_id)
    run = deployment.wait_for_run(dag_id, run_id)
    states = deployment.task_states(dag_id, run_id)
    assert run["state"] == "failed", states  # a quarantined file fails the run
    assert states["load_to_bigquery"] == ["failed"] and states["load_to_aurora"] == ["failed"]
    assert world.view_rows() == expected and world.aurora_rows() == expected  # the good files are in
    changes = world.changelog_count()

    # clear the failed loads: they run again, load nothing twice, and fail again on the bad file
    deployment.airflow.api(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {
            "dag_run_id": run_id,
            "task_ids": ["load_to_bigquery", "load_to_aurora"],
            "only_failed": True,
            "reset_dag_runs": True,
            "dry_run": False,
        },
    )
    deployment.wait_until("the cleared run to start again", lambda: deployment.run(dag_id, run_id)["state"] != "failed")
    run = deployment.wait_for_run(dag_id, run_id)
    assert run["state"] == "failed"
    tries = {ti["task_id"]: ti["try_number"] for ti in deployment.task_instances(dag_id, run_id)}
    assert tries["load_to_bigquery"] == 2 and tries["load_to_aurora"] == 2
    assert world.changelog_count() == changes
    assert world.view_rows() == expected and world.aurora_rows() == expected

    # fix the file and replay it by key (params from the REST API)
    world.s3.put_object(Bucket=world.bucket, Key=bad, Body=fixed)
    expected[1] = expected_row(customer(1, qty=111))
    replay = deployment.trigger(dag_id, {"replay_keys": [bad]})
    assert deployment.wait_for_run(dag_id, replay)["state"] == "success", deployment.task_states(dag_id, replay)
    assert world.view_rows() == expected and world.aurora_rows() == expected
    changes = world.changelog_count()

    # clear a successful load: it runs again and loads nothing twice
    deployment.airflow.api(
        "POST",
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        {
            "dag_run_id": replay,
            "task_ids": ["load_to_bigquery"],
            "only_failed": False,
            "reset_dag_runs": True,
            "dry_run": False,
        },
    )
    deployment.wait_until(
        "the cleared run to start again", lambda: deployment.run(dag_id, replay)["state"] != "success"
    )
    assert deployment.wait_for_run(dag_id, replay)["state"] == "success"
    tries = {ti["task_id"]: ti["try_number"] for ti in deployment.task_instances(dag_id, replay)}
    assert tries["load_to_bigquery"] == 2
    assert world.changelog_count() == changes
    assert world.view_rows() == expected and world.aurora_rows() == expected


def test_dry_run_lists_what_would_load_and_rescan_loads_nothing_twice(deployment):
    world, dag_id = deployment.worlds["ops"], deployment.dag_id("ops")
    deployment.set_paused(dag_id, False)
    before_view, before_aurora, changes = world.view_rows(), world.aurora_rows(), world.changelog_count()
    world.dms.insert(world.customers, customer(50))
    key = world.dms.flush(world.customers)

    dry = deployment.trigger(dag_id, {"dry_run": True})
    assert deployment.wait_for_run(dag_id, dry)["state"] == "success", deployment.task_states(dag_id, dry)
    would_load = deployment.airflow.api(
        "GET", f"/api/v2/dags/{dag_id}/dagRuns/{dry}/taskInstances/plan_batches/xcomEntries/would_load"
    )["value"]
    assert would_load == {world.customers: [key]}
    assert deployment.task_states(dag_id, dry)["load_to_bigquery"] == ["skipped"] or "load_to_bigquery" not in (
        deployment.task_states(dag_id, dry)
    )
    assert world.view_rows() == before_view and world.aurora_rows() == before_aurora
    assert world.changelog_count() == changes

    rescan = deployment.trigger(dag_id, {"rescan": True})
    assert deployment.wait_for_run(dag_id, rescan)["state"] == "success", deployment.task_states(dag_id, rescan)
    expected = {**before_view, 50: expected_row(customer(50))}
    assert world.view_rows() == expected and world.aurora_rows() == expected
    assert world.changelog_count() == changes + 1  # every older file was in the ledger already
