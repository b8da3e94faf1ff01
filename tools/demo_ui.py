"""`make demo-ui`: the demo's DMS pipeline under a real local Airflow, left running to look at.

Starts the stand-ins and a local Airflow (tools/local_airflow.py) with the demo's pipelines,
lands a DMS full load and a CDC batch from the demo shop database, triggers `cdc_demo` through
the REST API as the UI's Trigger button does, waits for the run, prints the latest state in both
targets, and says where to look in the UI. `make airflow-stop` stops it all.
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from tools.demo import BUCKET, DATABASE, DATASET, REPLICA, make_source, say, show, write_config  # noqa: E402
from tools.dms_standin import DmsStandIn  # noqa: E402
from tools.local_airflow import STATE_DIR, up  # noqa: E402
from tools.local_stack import MariaDB  # noqa: E402


def main() -> int:
    STATE_DIR.mkdir(exist_ok=True)
    config = STATE_DIR / "demo-pipelines.yaml"
    write_config(config)
    mariadb = MariaDB.from_env()
    airflow = up(
        config,
        connections={"aurora_default": mariadb.airflow_conn(REPLICA), "mysql_source": mariadb.airflow_conn(DATABASE)},
    )
    if airflow is None:
        return 1
    import boto3

    state = __import__("json").loads((STATE_DIR / "state.json").read_text())
    s3 = boto3.client(
        "s3",
        endpoint_url=state["moto"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=BUCKET)
    conn = mariadb.connect()
    make_source(conn)
    dms = DmsStandIn(conn, s3, BUCKET, prefix="dms", timestamp_column="cdc_commit_ts")
    customers = f"{DATABASE}.customers"
    dms.track(DATABASE, "customers")
    dms.track(DATABASE, "orders")
    for i, name in enumerate(["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra"], 1):
        dms.insert(customers, {"id": i, "name": name, "email": f"user{i}@example.com", "balance": Decimal(i), "vip": 0})
    keys = dms.full_load(customers)
    dms.update(customers, {"id": 1}, {"name": "Ada King", "vip": 1})
    dms.delete(customers, {"id": 3})
    keys.append(dms.flush(customers))
    say(f"landed DMS files: {', '.join(keys)}")

    dag_id = "cdc_demo"
    deadline = time.monotonic() + 120
    while not any(d["dag_id"] == dag_id for d in airflow.api("GET", "/api/v2/dags")["dags"]):
        if time.monotonic() > deadline:
            say("the dag-processor has not parsed cdc_demo within 2 minutes; see .local-airflow/home/dag-processor.log")
            return 1
        time.sleep(1)
    airflow.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    run = airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}})
    say(f"triggered {dag_id} (run {run['dag_run_id']}) through the REST API; waiting for it ...")
    while (state_now := airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}")["state"]) not in (
        "success",
        "failed",
    ):
        if time.monotonic() > deadline + 480:
            say("the run did not end within 10 minutes; see the UI")
            return 1
        time.sleep(2)
    say(f"run {run['dag_run_id']}: {state_now}")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    bq = bigquery.Client(
        project="local", credentials=AnonymousCredentials(), client_options={"api_endpoint": state["bigquery"]}
    )
    rows = [dict(r) for r in bq.query(f"SELECT id, name, vip FROM `local.{DATASET}.{DATABASE}_customers` ORDER BY id")]
    show("BigQuery latest state (customers)", rows, ["id", "name", "vip"])
    say(f"\nIn the UI ({airflow.url}, user admin, password {airflow.password}):")
    say(f"  {airflow.url}/dags/{dag_id} → the run's grid; load_to_bigquery / load_to_aurora → Logs: the summary lines")
    say(f"  Trigger (▶) on {dag_id}: the params form (dry run, rescan, replay keys, window)")
    say("Stop it all: make airflow-stop")
    return 0 if state_now == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
