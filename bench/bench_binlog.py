"""Binlog capture rate against its floor, and the worker's peak memory as the batch grows.

A MariaDB of the benchmark's own (ROW binlog, binlog_row_metadata=FULL) gets ROWS row changes
(inserts, then updates of the same rows) into a table of seven columns. The floor is bare
python-mysql-replication iteration of the same events from the same position (row events of
the schema only, every row's values decoded, nothing kept). The capture step does that plus
the DMS values, the Parquet change file, its S3 put (moto) and two checkpoint writes. Both
read the same events, alternately, three times; the figures are the median row changes/s and
their ratio (target: capture ≥ 0.7× the floor). Then, each in a fresh process, a capture of a
quarter of the changes and of all of them: their peak RSS (flat when memory does not grow with
the batch).

    python bench/bench_binlog.py [ROWS]      # default 200,000 row changes
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from cdc_sync.config import TableSpec  # noqa: E402
from cdc_sync.sources.binlog.capture import BinlogCapture, Budget, capture, reader_class  # noqa: E402
from tools.binlog_server import BinlogServer  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

ROUNDS, BUCKET, SCHEMA = 3, "bench-binlog", "bench"
DDL = """CREATE TABLE bench.orders (
  id BIGINT NOT NULL PRIMARY KEY, customer INT NOT NULL, status VARCHAR(16) NOT NULL,
  amount DECIMAL(12,2) NOT NULL, note VARCHAR(64) NULL, created DATETIME(6) NOT NULL, flags TINYINT NOT NULL)"""


def spec(budget: int, checkpoint: str) -> BinlogCapture:
    table = TableSpec(schema=SCHEMA, name="orders", primary_key=("id",), commit_timestamp_column="cdc_commit_ts")
    return BinlogCapture(
        pipeline="bench",
        tables=(table,),
        bucket=BUCKET,
        table_prefixes={table.qualified_name: "binlog/bench/orders/"},
        checkpoint_key=checkpoint,
        replica_id=4_194_101,
        budget=Budget(max_events=budget, max_seconds=3600),
    )


def seed(server: BinlogServer, rows: int) -> None:
    conn = server.mariadb.connect(autocommit=False)
    inserts = rows // 2
    with conn.cursor() as cur:
        for start in range(0, inserts, 1000):
            values = ",".join(
                f"({i}, {i % 997}, 'new', {i % 10000}.25, 'note {i}', '2026-12-06 10:00:00.{i % 1000000:06d}', {i % 3})"
                for i in range(start, min(start + 1000, inserts))
            )
            cur.execute(f"INSERT INTO bench.orders VALUES {values}")
            conn.commit()
        for start in range(0, rows - inserts, 1000):
            cur.execute(
                "UPDATE bench.orders SET status = 'paid', amount = amount + 1 WHERE id >= %s AND id < %s",
                (start, start + 1000),
            )
            conn.commit()
    conn.close()


def floor(settings: dict, gtid: str) -> int:
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    # the library's reader with its MariaDB dump request fixed (see capture.reader_class)
    stream = reader_class()(
        connection_settings=dict(settings),
        server_id=4_194_102,
        blocking=False,
        is_mariadb=True,
        auto_position=gtid,
        only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
        only_schemas=[SCHEMA],
        enable_logging=False,
    )
    count = 0
    for event in stream:
        count += len(event.rows)
    stream.close()
    return count


def _capture_in_child(settings: dict, port: int, moto_env: dict, checkpoint: bytes, budget: int, queue) -> None:
    import os

    os.environ.update(moto_env)
    from tools.local_stack import MariaDB, StackError  # noqa: F401 - the child's own imports

    s3 = _s3(moto_env)
    key = f"cdc-sync/checkpoints/bench/mem-{budget}.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=checkpoint)
    report = capture(spec(budget, key), settings, lambda: MariaDB(port=port).connect(), s3)
    queue.put((report.written, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))


def _s3(env: dict):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["BENCH_MOTO_URL"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with LocalStack.start() as stack, BinlogServer.start(Path(tempfile.mkdtemp(prefix="bench-binlog-"))) as server:
        s3 = stack.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        m = server.mariadb
        settings = {"host": m.host, "port": m.port, "user": m.user, "passwd": m.password}
        with m.connect().cursor() as cur:
            cur.execute("CREATE DATABASE bench")
            cur.execute(DDL)
        # the checkpoint every round starts from: an empty table's snapshot, before the changes
        start = capture(spec(rows + 1, "cdc-sync/checkpoints/bench/start.json"), settings, m.connect, s3)
        checkpoint = json.dumps({**start.checkpoint, "pending": None}).encode()
        gtid = start.checkpoint["position"]["gtid"]
        began = time.perf_counter()
        seed(server, rows)
        print(f"seeded {rows:,} row changes in {time.perf_counter() - began:.0f}s")

        floor_rates, capture_rates = [], []
        for round_ in range(ROUNDS):
            began = time.perf_counter()
            assert floor(settings, gtid) == rows
            floor_rates.append(rows / (time.perf_counter() - began))
            key = f"cdc-sync/checkpoints/bench/round{round_}.json"
            s3.put_object(Bucket=BUCKET, Key=key, Body=checkpoint)
            began = time.perf_counter()
            report = capture(spec(rows + 1, key), settings, m.connect, s3)
            capture_rates.append(rows / (time.perf_counter() - began))
            assert report.written == rows, report.written
        floor_rate, capture_rate = statistics.median(floor_rates), statistics.median(capture_rates)
        print(f"floor (bare BinLogStreamReader iteration): {floor_rate:,.0f} row changes/s")
        print(f"capture (values, Parquet, S3, checkpoint):  {capture_rate:,.0f} row changes/s")
        print(f"capture / floor: {capture_rate / floor_rate:.2f} (target ≥ 0.70)")

        context = multiprocessing.get_context("spawn")
        env = {"BENCH_MOTO_URL": stack.moto_url}
        for budget in (rows // 4, rows):
            queue = context.Queue()
            child = context.Process(target=_capture_in_child, args=(settings, m.port, env, checkpoint, budget, queue))
            child.start()
            written, peak_kib = queue.get()
            child.join()
            print(f"capture of {written:,} row changes in a fresh worker: peak RSS {peak_kib / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
