"""One real Airflow for the tests marked `deployed`: api-server, scheduler, dag-processor and
triggerer on PostgreSQL (tools/local_airflow.py), with the pipelines of tests/deployed/worlds.py.

The tests drive it only through its public surfaces — the REST API and the `airflow` CLI — as
a user does; they never call dag.test(). The session starts it once (~40 s) and drops its
metadata database at the end; its process logs are kept in the session's temporary folder
and printed when a test fails.
"""

from __future__ import annotations

import uuid

import pytest

from tests.deployed.worlds import Deployment


@pytest.fixture(scope="session")
def deployment(stack, tmp_path_factory):
    from tools.local_airflow import LocalAirflow

    uid = uuid.uuid4().hex[:8]
    root = tmp_path_factory.mktemp("deployed")
    deployment = Deployment.create(stack, uid, root)
    airflow = LocalAirflow.start(
        stack,
        home=root / "airflow-home",
        config_path=deployment.config_path,
        connections=deployment.connections(),
    )
    deployment.airflow = airflow
    try:
        deployment.wait_for_dags()
        # backfills need their DAGs unpaused: start those now, their first scheduled runs
        # (nothing landed: the sensor times out after a minute) end while other tests run
        for role in ("daily", "daily_back", "clicks"):
            deployment.set_paused(deployment.dag_id(role), False)
        yield deployment
    finally:
        airflow.stop()
        airflow.drop_database()
        deployment.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed deployed test shows the tail of the Airflow processes' logs."""
    outcome = yield
    report = outcome.get_result()
    deployment = getattr(item, "funcargs", {}).get("deployment")
    if report.failed and deployment is not None and deployment.airflow is not None:
        for name in ("scheduler", "triggerer", "dag-processor", "api-server"):
            report.sections.append((f"airflow {name} log (tail)", deployment.airflow.log_tail(name, 1500)))
