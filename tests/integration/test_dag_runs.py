"""The generated pipeline DAG run for real through dag.test(): deferrable sensor (trigger run
in line), planning, mapped loads, Airflow Variables as watermarks, asset events."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.integration.harness import World, customer, expected_row

pytestmark = [pytest.mark.services, pytest.mark.airflow]


@pytest.fixture
def world(stack, airflow_db, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    yield w
    w.close()


def _task_states(dag_run) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for ti in dag_run.get_task_instances():
        states.setdefault(ti.task_id, []).append(str(ti.state))
    return states


def _airflow_30_missing_variable(line: str) -> bool:
    """Airflow 3.0.x's Task SDK client logs a Variable that does not exist yet at error level
    (later versions at debug); a table's first run asks for its watermark before there is one."""
    import airflow

    return airflow.__version__.startswith("3.0.") and "Variable not found" in line and ".watermark" in line


def _error_lines(capfd) -> list[str]:
    out, err = capfd.readouterr()
    return [
        line
        for line in (out + err).splitlines()
        if re.search(r"\[error\s*\]|\bERROR\b", line) and not _airflow_30_missing_variable(line)
    ]


def test_dag_loads_full_load_then_cdc_batches_into_latest_state(world, capfd):
    expected = world.seed(range(1, 6))
    world.dms.insert(world.lines, {"order_id": 1, "line_no": 1, "sku": "A-1", "price": "9.5000"})
    world.dms.full_load(world.lines)

    dag = world.dag()
    capfd.readouterr()
    run = dag.test()
    assert str(run.state) == "success", _task_states(run)
    assert world.view_rows() == expected
    assert _error_lines(capfd) == []  # a healthy run (two tables mapped) logs no error

    # CDC batch: update, delete, insert with NULLs in every nullable column
    world.dms.update(world.customers, {"id": 1}, {"name": "Ådel 😀", "qty": 11})
    expected[1].update(name="Ådel 😀", qty=11)
    world.dms.delete(world.customers, {"id": 2})
    del expected[2]
    nulls = customer(
        6,
        qty=None,
        amount=None,
        name=None,
        notes=None,
        updated_at=None,
        seen_at=None,
        birthday=None,
        active=None,
        attrs=None,
    )
    world.dms.insert(world.customers, nulls)
    expected[6] = expected_row(nulls)
    world.dms.flush(world.customers)

    run = dag.test()
    assert str(run.state) == "success", _task_states(run)
    assert world.view_rows() == expected
    assert world.view_rows() == world.source_rows(world.customers)
    # 5 full-load rows + 3 changes; order_lines untouched by the second run
    assert world.changelog_count() == 8
    assert world.view_rows("order_lines") == world.source_rows(world.lines)

    from airflow.models.variable import Variable  # the metadata DB itself, outside any task

    watermark = Variable.get(f"cdc_sync.{world.pipeline.name}.{world.customers}.watermark", deserialize_json=True)
    assert watermark["load_after"].endswith("LOAD00000001.parquet")

    # asset events only for tables that changed: customers in both runs, order_lines in the first
    assert _asset_events(world.pipeline.bigquery.asset_uri(world.pipeline.tables[0])) == 2
    assert _asset_events(world.pipeline.bigquery.asset_uri(world.pipeline.tables[1])) == 1
    assert watermark["cdc_after"].startswith(f"dms/{world.db}/customers/2026")


def test_dag_skips_when_nothing_new_and_clear_rerun_loads_nothing_twice(world):
    world.seed(range(1, 4))
    dag = world.dag()
    assert str(dag.test().state) == "success"
    assert world.changelog_count() == 3

    # the same run again, as a cleared run would: the ledger keeps it from appending twice
    rerun = dag.test(run_conf={"rescan": True})
    assert str(rerun.state) == "success", _task_states(rerun)
    assert world.changelog_count() == 3
    assert world.view_rows() == world.source_rows(world.customers)


def _bad_file(world) -> str:
    key = f"dms/{world.db}/customers/20261123-080000000.parquet"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=b"PAR1 this is not parquet")
    return key


def test_dag_run_fails_with_clear_message_on_quarantined_file_and_loads_the_rest(world, capfd):
    world.seed(range(1, 4))
    world.dms.insert(world.lines, {"order_id": 1, "line_no": 1, "sku": "A-1", "price": "9.5000"})
    world.dms.full_load(world.lines)
    _bad_file(world)
    capfd.readouterr()
    run = world.dag().test()
    states = _task_states(run)
    assert sorted(states["load_to_bigquery"]) == ["failed", "success"], states  # customers, order_lines
    assert states["advance_watermarks"] == ["success"] and states["fail_if_a_load_failed"] == ["failed"], states
    assert str(run.state) == "failed", states  # alerts on failed runs fire
    assert world.view_rows() == world.source_rows(world.customers)
    out, err = capfd.readouterr()
    assert "20261123-080000000.parquet" in out + err and "not a readable Parquet file" in out + err

    from airflow.models.variable import Variable

    # the watermarks still moved past what every target handled: order_lines loaded, customers keeps its mark
    assert world.view_rows("order_lines") == world.source_rows(world.lines)
    lines = Variable.get(f"cdc_sync.{world.pipeline.name}.{world.lines}.watermark", deserialize_json=True)
    assert lines["load_after"].endswith("LOAD00000001.parquet")
    assert Variable.get(f"cdc_sync.{world.pipeline.name}.{world.customers}.watermark", default_var=None) is None


def test_airflow_dags_test_exits_non_zero_when_a_load_failed(world):
    world.seed(range(1, 3))
    _bad_file(world)
    world.dag()  # points CDC_SYNC_CONFIG at the world's config, as the dags folder reads it
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", world.pipeline.dag_id],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode != 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "DagRun failed" in result.stderr
    assert world.view_rows() == world.source_rows(world.customers)  # the good files loaded all the same


def test_a_late_file_alone_wakes_the_sensor_and_is_loaded(world):
    """A CDC file named before the watermark (inside the 15-minute grace), and no newer file:
    the sensor notices it on its first look, the run loads it."""
    import datetime as dt

    world.seed(range(1, 3))
    world.dms.insert(world.customers, customer(3))
    on_time = world.dms.flush(world.customers, dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC))
    dag = world.dag()
    assert str(dag.test().state) == "success"

    world.dms.insert(world.customers, customer(4, name="late"))
    late = world.dms.flush(world.customers, dt.datetime(2026, 11, 23, 7, 50, tzinfo=dt.UTC))  # 10 min older
    assert late < on_time
    run = dag.test()
    states = _task_states(run)
    assert states["wait_for_new_files"] == ["success"], states  # not skipped after waiting out the timeout
    assert str(run.state) == "success", states
    assert world.view_rows() == world.source_rows(world.customers)
    assert world.view_rows()[4]["name"] == "late"

    from airflow.models.variable import Variable

    watermark = Variable.get(f"cdc_sync.{world.pipeline.name}.{world.customers}.watermark", deserialize_json=True)
    assert watermark["cdc_after"] == on_time and late in watermark["recent"]
    # handled: the next run has nothing to wake for (skipped at the timeout)
    assert _task_states(dag.test())["wait_for_new_files"] == ["skipped"]


def test_sensor_defers_until_a_file_lands_then_loads_it(world, monkeypatch):
    import threading

    from cdc_sync.orchestration.trigger import NewObjectsTrigger

    world.seed(range(1, 3), full_load=False)
    deferred = threading.Event()
    real_run = NewObjectsTrigger.run

    def spied_run(self):  # calls straight through; only tells the test the trigger started
        deferred.set()
        return real_run(self)

    monkeypatch.setattr(NewObjectsTrigger, "run", spied_run)

    def land_once_deferred():
        if deferred.wait(timeout=50):  # nothing lands before the sensor handed over to its trigger
            world.dms.full_load(world.customers)

    thread = threading.Thread(target=land_once_deferred)
    thread.start()
    try:
        run = world.dag().test()
    finally:
        thread.join()
    assert deferred.is_set()
    assert str(run.state) == "success", _task_states(run)
    assert world.view_rows() == world.source_rows(world.customers)


def test_sensor_skips_the_run_when_nothing_lands_before_the_timeout(world):
    run = world.dag().test()
    states = _task_states(run)
    assert states["wait_for_new_files"] == ["skipped"], states
    assert str(run.state) == "success"
    assert not _dataset_exists(world)  # planning and loading never ran


def _dataset_exists(world) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        world.bq.get_dataset(f"local.{world.dataset}")
        return True
    except NotFound:
        return False


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_dag_feeds_bigquery_and_aurora_from_the_same_files(
    stack, airflow_db, unique_name, tmp_path, monkeypatch, file_format
):
    w = World(stack, unique_name, tmp_path, aurora=True, file_format=file_format)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.target_db))
        w.seed(range(1, 4))
        w.dms.update(w.customers, {"id": 1}, {"name": "both targets"})
        w.dms.delete(w.customers, {"id": 2})
        w.dms.flush(w.customers)
        run = w.dag().test()
        states = _task_states(run)
        assert str(run.state) == "success", states
        assert states["load_to_aurora"] == ["success"] and states["load_to_bigquery"] == ["success"]
        assert w.aurora_rows() == w.source_rows(w.customers) == w.view_rows()
    finally:
        w.close()


def test_firehose_dag_appends_and_reports_refused_records(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    import json

    from tests.integration.harness import pipeline_dag
    from tests.integration.test_firehose_to_aurora import FirehoseWorld, _clicks

    fh = FirehoseWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(fh.db))
        fh.deliver(_clicks(0, 3))
        fh.deliver(_clicks(3, 2))
        fh.s3.put_object(
            Bucket=fh.bucket,
            Key=f"processing-failed/2026/11/23/07/{fh.stream}-1-2026-11-23-07-50-52-ab",
            Body=json.dumps({"errorCode": "Lambda.ProcessingFailed", "errorMessage": "bad", "rawData": ""}),
        )
        run = pipeline_dag(fh.config, fh.pipeline.dag_id).test()
        states = _task_states(run)
        assert states["load_to_aurora"] == ["success"], states
        assert states["report_failed_records"] == ["failed"], states  # a person sees the refused record
        assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])
    finally:
        fh.close()


def _asset_events(uri: str) -> int:
    from airflow import settings
    from airflow.models.asset import AssetEvent, AssetModel

    with settings.Session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == uri)
            .count()
        )


def test_merge_mode_without_its_database_says_which_and_what_to_run(
    stack, airflow_db, unique_name, tmp_path, monkeypatch, capfd
):
    from cdc_sync.targets.aurora.batch import AuroraDatabaseMissing

    w = World(stack, unique_name, tmp_path, aurora=True)
    try:
        w.seed(range(1, 3))
        with w.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE `{w.target_db}`")
        expected = (
            f"pipeline {w.pipeline.name}: the Aurora database `{w.target_db}` (targets.aurora.database, "
            "connection `mysql_target`) does not exist"
        )
        create = f"CREATE DATABASE `{w.target_db}` CHARACTER SET utf8mb4;"
        # a connection without a default database: the first statement would meet the missing database
        with pytest.raises(AuroraDatabaseMissing) as refused:
            w.run_aurora()
        assert expected in str(refused.value) and create in str(refused.value)

        # the Airflow connection names the database: connecting fails; the run fails with the same words
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.target_db))
        capfd.readouterr()
        run = w.dag().test()
        out, err = capfd.readouterr()
        assert str(run.state) == "failed", _task_states(run)
        # Airflow 3.0 wraps the exception's text across lines in its log: compare words, not line breaks
        logged = " ".join((out + err).split())
        assert expected in logged and create in logged
    finally:
        w.close()


def _tries(dag_run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in dag_run.get_task_instances() if ti.map_index == -1}


def test_a_setup_error_fails_the_task_at_once_and_a_transient_error_is_retried(
    stack, airflow_db, unique_name, tmp_path, monkeypatch, capfd
):
    """The DAG decides from the error family: a lost connection may pass (retried up to
    options.retries), a missing database will not (failed on the first try, in its own words)."""
    import json
    import socket
    from datetime import timedelta

    w = World(stack, unique_name, tmp_path, aurora=True)
    try:
        w.write_config(retries=2)
        w.seed(range(1, 4))
        dag = w.dag()
        for operator in dag.tasks:  # retry at once: the test is about whether, not when
            operator.retry_delay, operator.retry_exponential_backoff = timedelta(0), False

        # transient: nothing listens on the Aurora port (connection refused) → tried 1 + 2 times
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        refused = json.loads(stack.mariadb.airflow_conn(w.target_db)) | {"port": closed_port}
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", json.dumps(refused))
        run = dag.test()
        assert str(run.state) == "failed" and _tries(run)["plan_batches"] == ("failed", 3), _tries(run)

        # setup: the target database does not exist → failed on the first try, with what to run
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.target_db))
        with w.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE `{w.target_db}`")
        capfd.readouterr()
        run = dag.test()
        out, err = capfd.readouterr()
        assert str(run.state) == "failed" and _tries(run)["plan_batches"] == ("failed", 1), _tries(run)
        assert f"CREATE DATABASE `{w.target_db}` CHARACTER SET utf8mb4;" in out + err
        assert not _dataset_exists(w)  # nothing was loaded anywhere

        # the person acts; the next run loads both targets
        with w.mysql.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{w.target_db}` CHARACTER SET utf8mb4")
        run = dag.test()
        assert str(run.state) == "success", _task_states(run)
        assert w.aurora_rows() == w.source_rows(w.customers) == w.view_rows()
    finally:
        w.close()
