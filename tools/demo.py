"""`make demo`: the DMS → BigQuery and Aurora (merge) pipeline end to end on local stand-ins.

1. starts moto (S3) and the BigQuery emulator on free loopback ports, checks MariaDB;
2. creates a small shop database in MariaDB (the "Aurora" source);
3. lands DMS files from it in the local S3 bucket: a full load, then CDC batches;
4. runs the pipeline DAG with `airflow dags test` after each landing;
5. prints what was loaded and the latest state in BigQuery and in the Aurora stand-in
   (a second MariaDB database) next to the source rows;
6. reconciles both targets with the source, drifts the replica by hand, finds it, repairs it;
7. Firehose → Aurora (append): DynamoDB stream records through the transform Lambda and
   moto's Firehose into a clicks table, a refused record reported, a repeated delivery
   skipped.
Stops the services it started.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from tools.dms_standin import DmsStandIn  # noqa: E402
from tools.local_stack import LocalStack, StackError  # noqa: E402

DATABASE = "cdc_sync_demo"
BUCKET = "cdc-sync-demo-landing"
DATASET = "cdc_sync_demo"
REPLICA = "cdc_sync_demo_replica"  # the Aurora target (MariaDB stands in for Aurora)
STREAM = "demoClicks"  # the Firehose delivery stream (moto)
CLICK_COLUMNS = ["_event_id", "event_id", "user_id", "page"]


def say(text: str = "") -> None:
    print(text, flush=True)


def make_source(conn) -> None:
    with conn.cursor() as cur:
        for name in (DATABASE, REPLICA):
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cur.execute(f"""CREATE TABLE `{DATABASE}`.customers (
            id BIGINT PRIMARY KEY, name VARCHAR(100), email VARCHAR(200), balance DECIMAL(18,4),
            signed_up DATETIME(6), vip TINYINT(1), profile JSON) CHARSET utf8mb4""")
        cur.execute(f"""CREATE TABLE `{DATABASE}`.orders (
            order_id BIGINT, line_no INT, sku VARCHAR(40), qty INT, price DECIMAL(18,4),
            PRIMARY KEY (order_id, line_no)) CHARSET utf8mb4""")


def write_config(path: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "pipelines": [
                    {
                        "name": "demo",
                        "description": "make demo: local MariaDB shop → DMS files on moto S3 → BigQuery emulator",
                        "schedule": None,
                        "source": {"kind": "dms", "bucket": BUCKET, "prefix": "dms", "file_format": "parquet"},
                        "tables": [
                            {
                                "schema": DATABASE,
                                "name": "customers",
                                "primary_key": ["id"],
                                "commit_timestamp_column": "cdc_commit_ts",
                            },
                            {
                                "schema": DATABASE,
                                "name": "orders",
                                "primary_key": ["order_id", "line_no"],
                                "commit_timestamp_column": "cdc_commit_ts",
                            },
                        ],
                        "targets": {
                            "bigquery": {"project": "local", "dataset": DATASET},
                            "aurora": {"database": REPLICA, "mode": "merge", "method": "local_infile"},
                        },
                        "options": {"poke_interval_seconds": 5, "wait_timeout_minutes": 1, "retries": 1},
                        "reconcile": {"source_conn_id": "mysql_source", "schedule": None, "recheck_seconds": 0},
                    },
                    {
                        "name": "clicks",
                        "description": "make demo: DynamoDB stream records → transform Lambda → Firehose (moto) → Aurora (append)",
                        "schedule": None,
                        "source": {
                            "kind": "firehose",
                            "bucket": BUCKET,
                            "stream": STREAM,
                            "csv_dialect": "backslash_escaped",
                        },
                        "tables": [{"schema": "web", "name": "clicks", "columns": CLICK_COLUMNS}],
                        "targets": {
                            "aurora": {
                                "database": REPLICA,
                                "mode": "append",
                                "table": "clicks",
                                "method": "local_infile",
                            }
                        },
                        "options": {"poke_interval_seconds": 5, "wait_timeout_minutes": 1, "retries": 1},
                    },
                ]
            },
            sort_keys=False,
        )
    )


def run_dag(env: dict, step: str, conf: dict | None = None, dag_id: str = "cdc_demo", may_fail: bool = False) -> None:
    argv = [str(REPO / ".venv" / "bin" / "airflow"), "dags", "test", dag_id]
    if conf:
        argv += ["--conf", json.dumps(conf)]
    say(f"\n── {' '.join(argv[1:])}  ({step})")
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    interesting = [
        line
        for line in result.stdout.splitlines()
        if "file(s) to load" in line
        or "nothing to load" in line
        or "loaded " in line
        and ("change row" in line or " record(s);" in line)
        or "state=" in line
        and "DagRun Finished" in line
        or line.startswith("| ")
        or "repair file" in line
        or "refused by the transform" in line
        or line.startswith("  s3://")
    ]
    for line in interesting:
        say("   " + line.split("[")[0].strip() if "DagRun Finished" not in line else "   " + _run_state(line))
    if result.returncode != 0 and not may_fail:
        say(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"the DAG run failed ({step})")


def _run_state(line: str) -> str:
    state = line.split("state=")[1].split(",")[0]
    return f"DAG run finished: {state}"


def show(title: str, rows: list[dict], columns: list[str]) -> None:
    say(f"\n{title}")
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) if rows else len(c) for c in columns}
    say("  " + "  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        say("  " + "  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(value) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if value is None:
        return "NULL"
    return str(value)


def main() -> int:
    try:
        stack = LocalStack.start()
    except StackError as error:
        print(f"make demo: {error}", file=sys.stderr)
        return 1
    with stack, tempfile.TemporaryDirectory(prefix="cdc-sync-demo-") as tmp:
        home = Path(tmp)
        say(
            f"moto (S3) on {stack.moto_url}, BigQuery emulator on {stack.bigquery_url}, "
            f"MariaDB on {stack.mariadb.host}:{stack.mariadb.port}"
        )
        config = home / "pipelines.yaml"
        write_config(config)
        env = {
            **os.environ,
            **stack.airflow_env(DATABASE),
            "AIRFLOW_HOME": str(home / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "CDC_SYNC_CONFIG": str(config),
            "CDC_SYNC_SQL_DIR": str(REPO / "include" / "sql"),
            "PYTHONPATH": str(REPO / "plugins"),
            "AIRFLOW_CONN_AURORA_DEFAULT": stack.mariadb.airflow_conn(REPLICA),
        }
        say("preparing the Airflow metadata database (SQLite) ...")
        subprocess.run(
            [str(REPO / ".venv" / "bin" / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
        )

        conn = stack.mariadb.connect()
        make_source(conn)
        s3 = stack.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dms = DmsStandIn(conn, s3, BUCKET, prefix="dms", timestamp_column="cdc_commit_ts")
        customers, orders = f"{DATABASE}.customers", f"{DATABASE}.orders"
        dms.track(DATABASE, "customers")
        dms.track(DATABASE, "orders")

        for i, name in enumerate(["Ada Lovelace", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Zoë 😀"], 1):
            dms.insert(
                customers,
                {
                    "id": i,
                    "name": name,
                    "email": f"user{i}@example.com",
                    "balance": Decimal(f"{i * 100}.5000"),
                    "signed_up": dt.datetime(2026, 1, i, 9, 30),
                    "vip": i % 2,
                    "profile": json.dumps({"lang": "en", "n": i}),
                },
            )
        for line in range(1, 4):
            dms.insert(
                orders,
                {"order_id": 1001, "line_no": line, "sku": f"SKU-{line}", "qty": line, "price": Decimal("9.9900")},
            )
        keys = dms.full_load(customers) + dms.full_load(orders)
        say(f"\nDMS full load landed: {', '.join(keys)}")
        run_dag(env, "full load")

        dms.update(customers, {"id": 1}, {"balance": Decimal("150.2500"), "vip": 1})
        dms.delete(customers, {"id": 3})
        dms.insert(
            customers,
            {
                "id": 6,
                "name": None,
                "email": "new@example.com",
                "balance": None,
                "signed_up": dt.datetime(2026, 11, 23, 7, 0),
                "vip": 0,
                "profile": None,
            },
        )
        dms.update(orders, {"order_id": 1001, "line_no": 2}, {"qty": 20})
        keys = [dms.flush(customers), dms.flush(orders)]
        dms.update(customers, {"id": 1}, {"name": "Ada King"})
        dms.delete(customers, {"id": 6})
        dms.insert(
            customers,
            {
                "id": 3,
                "name": "Edsger W. Dijkstra",
                "email": "ewd@example.com",
                "balance": Decimal("1.0000"),
                "signed_up": dt.datetime(2026, 2, 2),
                "vip": 1,
                "profile": "{}",
            },
        )
        keys.append(dms.flush(customers))
        say(f"\nDMS CDC files landed: {', '.join(keys)}")
        run_dag(env, "CDC batches: updates, deletes, a re-insert, NULLs")

        run_dag(env, "manual rerun with rescan: everything is in the ledger, nothing loads twice", {"rescan": True})

        bq = stack.bigquery_client()
        cols = ["id", "name", "email", "balance", "signed_up", "vip", "profile"]
        view = [dict(r) for r in bq.query(f"SELECT * FROM `local.{DATASET}.{DATABASE}_customers` ORDER BY id").result()]
        source = sorted(dms.source_rows(customers), key=lambda r: r["id"])
        show(f"source  {DATABASE}.customers (MariaDB)", source, cols)
        show(f"target  local.{DATASET}.{DATABASE}_customers (BigQuery latest-state view)", view, cols)
        import pymysql

        with stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor).cursor() as cur:
            cur.execute(f"SELECT * FROM `{REPLICA}`.`{DATABASE}_customers` ORDER BY id")
            aurora = list(cur.fetchall())
        show(f"target  {REPLICA}.{DATABASE}_customers (Aurora stand-in, merge mode, live view)", aurora, cols)
        changelog = next(
            iter(
                bq.query(
                    f"SELECT COUNT(*) AS n, COUNTIF(_cdc_op = 'D') AS d FROM `local.{DATASET}.{DATABASE}_customers_changelog`"
                ).result()
            )
        )
        say(f"\nchangelog: {changelog['n']} change rows ({changelog['d']} deletes kept as tombstones)")
        ledger = [
            dict(r)
            for r in bq.query(
                f"SELECT table_name, object_key, status, row_count FROM `local.{DATASET}._cdc_sync_ledger` "
                "WHERE status != 'pending' ORDER BY object_key"
            ).result()
        ]
        show("ledger (what was loaded, exactly once)", ledger, ["table_name", "object_key", "status", "row_count"])

        def comparable(row):
            return {c: (row[c].replace(tzinfo=None) if isinstance(row[c], dt.datetime) else row[c]) for c in cols}

        in_sync = [comparable(r) for r in view] == [comparable(r) for r in source] == [comparable(r) for r in aurora]
        orders_view = sorted(
            (r["order_id"], r["line_no"], r["qty"])
            for r in bq.query(f"SELECT * FROM `local.{DATASET}.{DATABASE}_orders`").result()
        )
        orders_source = sorted((r["order_id"], r["line_no"], r["qty"]) for r in dms.source_rows(orders))
        in_sync = in_sync and orders_view == orders_source
        say(
            f"\nresult: BigQuery and Aurora {'MATCH' if in_sync else 'DIFFER FROM'} the source "
            f"({len(view)} customers, {len(orders_view)} order lines)"
        )

        say("\nreconciliation: the same question asked of the databases themselves (bucket checksums)")
        run_dag(env, "reconcile: source ⇄ Aurora, source ⇄ BigQuery", dag_id="cdc_demo_reconcile")
        with conn.cursor() as cur:  # someone edits the replica by hand
            cur.execute(f"UPDATE `{REPLICA}`.`{DATABASE}_customers_state` SET balance = 0 WHERE id = 2")
        say("\n(an UPDATE straight into the Aurora replica: balance of customer 2 set to 0)")
        run_dag(
            env,
            "reconcile finds the drift; the task fails naming key and column",
            dag_id="cdc_demo_reconcile",
            may_fail=True,
        )
        run_dag(
            env,
            "reconcile with repair: the source row is re-emitted as a change file",
            {"repair": True},
            dag_id="cdc_demo_reconcile",
            may_fail=True,
        )
        run_dag(env, "the pipeline loads the repair file like any other")
        run_dag(env, "reconcile again", dag_id="cdc_demo_reconcile")

        clicks_ok = firehose_to_aurora(stack, conn, s3, env)
        with conn.cursor() as cur:
            for name in (DATABASE, REPLICA):
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
        say(
            "\nThese runs used `airflow dags test`. To watch the same pipeline in the Airflow UI "
            "(scheduler, triggerer, API server on PostgreSQL): make demo-ui, then make airflow-stop."
        )
        return 0 if in_sync and clicks_ok else 1


def firehose_to_aurora(stack, conn, s3, env: dict) -> bool:
    """The append flow: DynamoDB stream records → transform Lambda → Firehose → Aurora."""
    import base64

    import pymysql

    from cdc_sync.sources.firehose.transform import TransformSpec, transform_records
    from tools.firehose_standin import (
        create_delivery_stream,
        dynamodb_stream_record,
        lambda_event,
        typed_image,
        write_processing_failed,
    )

    say("\nFirehose → Aurora (append): DynamoDB stream records through the transform Lambda")
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{REPLICA}`.clicks (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "_event_id VARCHAR(64) NOT NULL, event_id VARCHAR(40) NOT NULL, user_id BIGINT NOT NULL, "
            "page TEXT, loaded_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), "
            "UNIQUE KEY one_stream_event (_event_id)) CHARSET utf8mb4"
        )
    firehose = stack.boto3_client("firehose")
    create_delivery_stream(firehose, STREAM, BUCKET)
    spec = TransformSpec.from_dict(
        {
            "columns": CLICK_COLUMNS,
            "schema": {
                "type": "object",
                "required": ["event_id", "user_id", "page"],
                "properties": {
                    "event_id": {"type": "string"},
                    "user_id": {"type": "integer"},
                    "page": {"type": "string"},
                },
            },
        }
    )

    def stream_record(n: int, page: str, event_name: str = "INSERT", user_id: int | Decimal | None = None) -> dict:
        item = {"event_id": f"click-{n}", "user_id": 100 + n if user_id is None else user_id, "page": page}
        return dynamodb_stream_record(
            event_name,
            None if event_name == "REMOVE" else typed_image(item),
            f"ddb-{n:04d}",
            keys={"event_id": {"S": item["event_id"]}},
        )

    def deliver(records: list[dict]) -> None:
        results = transform_records(lambda_event(records), spec, log=lambda line: None)["records"]
        counts = {r: sum(1 for x in results if x["result"] == r) for r in ("Ok", "Dropped", "ProcessingFailed")}
        say(
            f"   transform Lambda: {counts['Ok']} Ok, {counts['Dropped']} Dropped, "
            f"{counts['ProcessingFailed']} ProcessingFailed"
        )
        firehose.put_record_batch(
            DeliveryStreamName=STREAM,
            Records=[{"Data": base64.b64decode(r["data"])} for r in results if r["result"] == "Ok"],
        )
        refused = [r for r in results if r["result"] == "ProcessingFailed"]
        if refused:  # moto does not call the Lambda: write what Firehose writes under the error prefix
            write_processing_failed(s3, BUCKET, STREAM, refused)

    pages = ["/home", '/search?q="a, b"', "/café/😀", "/line\nbreak"]
    deliver(
        [stream_record(n, page) for n, page in enumerate(pages)]
        + [stream_record(0, "", "REMOVE"), stream_record(9, "/bad", user_id=Decimal("1.5"))]
    )
    run_dag(
        env,
        "append the delivered object; the refused record is reported and marks the run failed",
        dag_id="cdc_clicks",
        may_fail=True,
    )
    deliver([stream_record(2, pages[2]), stream_record(3, pages[3]), stream_record(4, "/checkout")])
    run_dag(
        env,
        "a producer's retry: two records again with a new one; the unique _event_id skips the two",
        dag_id="cdc_clicks",
    )
    with stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor).cursor() as cur:
        cur.execute(f"SELECT _event_id, event_id, user_id, page FROM `{REPLICA}`.clicks ORDER BY _event_id")
        rows = list(cur.fetchall())
    show(
        f"target  {REPLICA}.clicks (Aurora stand-in, append mode)",
        [{**r, "page": repr(r["page"])} for r in rows],
        CLICK_COLUMNS,
    )
    expected = [(f"ddb-{n:04d}", f"click-{n}", 100 + n, page) for n, page in enumerate([*pages, "/checkout"])]
    ok = [(r["_event_id"], r["event_id"], r["user_id"], r["page"]) for r in rows] == expected
    say(
        f"\nresult: the clicks table {'HOLDS' if ok else 'DOES NOT HOLD'} each delivered record once ({len(rows)} rows)"
    )
    return ok


if __name__ == "__main__":
    sys.exit(main())
