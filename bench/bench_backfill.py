"""What backfilling a `*/10` pipeline costs under a real Airflow, run by run against one window run.

Starts the stand-ins and a local Airflow (scheduler, triggerer, api-server, dag-processor on
PostgreSQL), lands one DMS CDC file every ten minutes over BENCH_HOURS hours (default 2), then:

1. `airflow backfill create` over those hours: one run per 10 minutes. Measures runs created,
   wall time until the backfill completes, and the metadata rows it added (dag_run,
   task_instance, task_instance_history, xcom, log, rendered fields);
2. one manual run of a twin pipeline (fresh targets) with params `window_start`/`window_end`
   over the same hours: the practical way to backfill a long window (docs/operations.md).

Both must end in the same latest state (checked). Prints the figures and extrapolates the
backfill to a week (1,008 runs) from its per-run cost.

    .venv/bin/python bench/bench_backfill.py
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

from tests.integration.harness import World, customer  # noqa: E402
from tools.local_airflow import POSTGRES_URL, LocalAirflow  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

HOURS = int(os.environ.get("BENCH_HOURS", "2"))
START = dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC)
TABLES = ("dag_run", "task_instance", "task_instance_history", "xcom", "log", "rendered_task_instance_fields")


def metadata_rows(database: str) -> dict[str, int]:
    import psycopg2

    conn = psycopg2.connect(f"{POSTGRES_URL}/{database}")
    try:
        with conn.cursor() as cur:
            counts = {}
            for table in TABLES:
                cur.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


def wait(check, what: str, timeout: float = 4 * 3600):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(2)
    return value


def main() -> int:
    uid = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix="cdc-sync-bench-backfill-"))
    with LocalStack.start() as stack:
        world = World(stack, f"bf{uid}", root, aurora=True)
        world.write_config(
            tables=[{"schema": world.db, "name": "customers", "primary_key": ["id"]}],
            retries=0,
            late_file_grace_minutes=0,
            wait_timeout_minutes=1,
        )
        (pipeline,) = yaml.safe_load(world.config_path.read_text())["pipelines"]
        pipeline.update(name=f"bf_{uid}", schedule="*/10 * * * *")
        pipeline["targets"]["aurora"]["mysql_conn_id"] = "aurora_bench"
        twin = copy.deepcopy(pipeline)
        twin["name"] = f"bfwin_{uid}"
        twin["targets"]["bigquery"]["dataset"] = f"{world.dataset}_win"
        twin["targets"]["aurora"].update(database=f"{world.target_db}_win", mysql_conn_id="aurora_bench_win")
        with world.mysql.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{world.target_db}_win`")
        config = root / "pipelines.yaml"
        config.write_text(yaml.safe_dump({"pipelines": [pipeline, twin]}))

        files = HOURS * 6
        for n in range(files):
            when = START + dt.timedelta(minutes=10 * n + 5)
            world.dms._clock = when - dt.timedelta(seconds=30)
            world.dms.insert(world.customers, customer(n + 1))
            if n % 3 == 2:
                world.dms.update(world.customers, {"id": n}, {"qty": -n})
            world.dms.flush(world.customers, file_time=when)
        print(f"landed {files} DMS CDC files, one every 10 minutes over {HOURS} h")

        airflow = LocalAirflow.start(
            stack,
            home=root / "airflow",
            config_path=config,
            connections={
                "aurora_bench": stack.mariadb.airflow_conn(world.target_db),
                "aurora_bench_win": stack.mariadb.airflow_conn(f"{world.target_db}_win"),
            },
        )
        try:
            dag, dag_win = f"cdc_bf_{uid}", f"cdc_bfwin_{uid}"
            wait(lambda: {dag, dag_win} <= {d["dag_id"] for d in airflow.api("GET", "/api/v2/dags")["dags"]}, "DAGs")
            for name in (dag, dag_win):  # backfill runs only run while the DAG is unpaused
                airflow.api("PATCH", f"/api/v2/dags/{name}", {"is_paused": False})
            for name in (dag, dag_win):  # unpausing starts the latest interval's run: let it end first
                wait(
                    lambda name=name: [
                        r
                        for r in airflow.api("GET", f"/api/v2/dags/{name}/dagRuns")["dag_runs"]
                        if r["state"] in ("success", "failed")
                    ],
                    f"first run of {name}",
                )
            for name in (dag, dag_win):
                airflow.api("PATCH", f"/api/v2/dags/{name}", {"is_paused": name == dag_win})

            before = metadata_rows(airflow.database)
            end = START + dt.timedelta(hours=HOURS) - dt.timedelta(minutes=10)
            started = time.monotonic()
            airflow.cli(
                "backfill", "create", "--dag-id", dag, "--from-date", START.isoformat(), "--to-date", end.isoformat()
            )
            wait(
                lambda: all(
                    b["completed_at"] for b in airflow.api("GET", f"/api/v2/backfills?dag_id={dag}")["backfills"]
                ),
                "the backfill",
            )
            backfill_seconds = time.monotonic() - started
            after = metadata_rows(airflow.database)
            runs = [
                r
                for r in airflow.api("GET", f"/api/v2/dags/{dag}/dagRuns?limit=2000")["dag_runs"]
                if r["run_type"] == "backfill"
            ]
            failed = [r["dag_run_id"] for r in runs if r["state"] != "success"]

            airflow.api("PATCH", f"/api/v2/dags/{dag_win}", {"is_paused": False})
            before_win = metadata_rows(airflow.database)
            started = time.monotonic()
            run = airflow.api(
                "POST",
                f"/api/v2/dags/{dag_win}/dagRuns",
                {
                    "logical_date": None,
                    "conf": {
                        "window_start": START.isoformat(),
                        "window_end": (START + dt.timedelta(hours=HOURS)).isoformat(),
                    },
                },
            )
            wait(
                lambda: (
                    airflow.api("GET", f"/api/v2/dags/{dag_win}/dagRuns/{run['dag_run_id']}")["state"]
                    in ("success", "failed")
                ),
                "the window run",
            )
            window_seconds = time.monotonic() - started
            after_win = metadata_rows(airflow.database)
        finally:
            airflow.stop()
            airflow.drop_database()

        backfilled = world.view_rows()
        win = copy.copy(world)
        win.dataset, win.target_db = f"{world.dataset}_win", f"{world.target_db}_win"
        same = backfilled == win.view_rows() == world.source_rows(world.customers) == win.aurora_rows()
        with world.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{world.target_db}_win`")
        world.close()

    added = {t: after[t] - before[t] for t in TABLES}
    added_win = {t: after_win[t] - before_win[t] for t in TABLES}
    per_run_seconds = backfill_seconds / max(len(runs), 1)
    per_run_rows = sum(added.values()) / max(len(runs), 1)
    print(f"\nbackfill create over {HOURS} h of a */10 pipeline: {len(runs)} runs, {backfill_seconds:.0f} s wall")
    print(f"  metadata rows added: {sum(added.values())} ({', '.join(f'{t} {n}' for t, n in added.items() if n)})")
    print(f"  failed runs: {failed or 'none'}")
    print(
        f"  a week (1,008 runs) at this rate: ~{per_run_seconds * 1008 / 3600:.1f} h wall, "
        f"~{per_run_rows * 1008:,.0f} metadata rows"
    )
    print(f"one manual run with window_start/window_end over the same {HOURS} h: {window_seconds:.0f} s wall")
    print(
        f"  metadata rows added: {sum(added_win.values())} ({', '.join(f'{t} {n}' for t, n in added_win.items() if n)})"
    )
    print(f"same latest state in both pairs of targets and the source: {same}")
    return 0 if same and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
