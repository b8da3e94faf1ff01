"""Binlog capture against a MariaDB server of the tests' own with its ROW binlog on
(tools/binlog_server.py, started once for the session): a snapshot, then inserts, updates and
deletes on three tables — one key changed three times in one transaction in one second, a
delete and re-insert, an added column — landed as DMS files, loaded into the Aurora stand-in and
the BigQuery emulator. Both latest-state views must equal the source table (a SELECT on the
source server), through crashes between the files and the checkpoint, split transactions, purged
binlogs and re-snapshots."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pymysql
import pytest
import yaml

from cdc_sync.sources.binlog.capture import capture, pipeline_capture, read_checkpoint
from cdc_sync.sources.binlog.columns import RowMetadataMissing
from cdc_sync.sources.binlog.server import LostHistoryError
from cdc_sync.sources.dms.writer import mysql_time_text
from tests.integration.harness import World
from tools.binlog_server import BinlogServer

pytestmark = [pytest.mark.services, pytest.mark.own_server]

TABLES = {
    "customers": """
        CREATE TABLE `{db}`.`customers` (
          id BIGINT NOT NULL PRIMARY KEY,
          qty INT NULL,
          amount DECIMAL(18,4) NULL,
          name VARCHAR(100) NULL,
          notes TEXT NULL,
          updated_at DATETIME(6) NULL,
          seen_at TIMESTAMP(6) NULL DEFAULT NULL,
          birthday DATE NULL,
          active TINYINT(1) NULL,
          attrs JSON NULL
        ) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_bin""",
    "order_lines": """
        CREATE TABLE `{db}`.`order_lines` (
          order_id BIGINT NOT NULL,
          line_no INT NOT NULL,
          sku VARCHAR(40) NULL,
          price DECIMAL(18,4) NULL,
          PRIMARY KEY (order_id, line_no)
        ) DEFAULT CHARSET = utf8mb4""",
    "kinds": """
        CREATE TABLE `{db}`.`kinds` (
          id INT UNSIGNED NOT NULL PRIMARY KEY,
          small TINYINT UNSIGNED NULL,
          big BIGINT UNSIGNED NULL,
          ratio DOUBLE NULL,
          took TIME(3) NULL,
          born YEAR NULL,
          color ENUM('red', 'green') NULL,
          payload BLOB NULL,
          code VARBINARY(16) NULL
        ) DEFAULT CHARSET = utf8mb4""",
}
KEYS = {"customers": ["id"], "order_lines": ["order_id", "line_no"], "kinds": ["id"]}


@pytest.fixture(scope="session")
def binlog_server(tmp_path_factory):
    """One MariaDB with binlog_format=ROW, binlog_row_metadata=FULL for the whole session."""
    server = BinlogServer.start(tmp_path_factory.mktemp("binlog-server"))
    yield server
    server.stop()


def customer(i: int, **overrides) -> dict:
    row = {
        "id": i,
        "qty": i * 10,
        "amount": Decimal(f"{i}.1234"),
        "name": f"customer {i} 🚀 – ünïcode",
        "notes": f'line one\nline "two", with comma {i}',
        "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5, 123456),
        "seen_at": dt.datetime(2026, 5, 6, 7, 8, 9, 654321),
        "birthday": dt.date(1990, 1, i % 28 + 1),
        "active": i % 2,
        "attrs": '{"tier": "gold", "tags": ["a", "b"]}',
    }
    row.update(overrides)
    return row


def kind(i: int, **overrides) -> dict:
    row = {
        "id": i,
        "small": 250,
        "big": 18446744073709551000 + i,
        "ratio": 0.1 * i,
        "took": dt.timedelta(hours=30, seconds=i, milliseconds=500),
        "born": 2001,
        "color": "green",
        "payload": bytes([0, 255, i]),
        "code": b"\x01\x02",
    }
    row.update(overrides)
    return row


def _normal(value):
    """One spelling per value across MariaDB, the Aurora view and BigQuery."""
    if isinstance(value, dt.datetime):
        return (value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value).isoformat()
    if isinstance(value, dt.timedelta):
        return mysql_time_text(value)
    if isinstance(value, Decimal):  # an unsigned BIGINT is a NUMERIC in the targets
        return int(value) if value == value.to_integral_value() else format(value.normalize(), "f")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, float):
        return round(value, 12)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return value


class BinlogWorld:
    """A source database on the binlog server and a `kind: binlog` pipeline into MariaDB (Aurora
    stand-in, merge) and the BigQuery emulator, run with the harness's World plumbing."""

    def __init__(self, stack, server: BinlogServer, uid: str, tmp_path, **binlog_settings):
        self.world = World(stack, uid, tmp_path, aurora=True)
        self.server = server
        self.db = self.world.db
        self.source = server.mariadb.connect()
        with self.source.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
            cur.execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")
            for ddl in TABLES.values():
                cur.execute(ddl.format(db=self.db))
        self.with_bigquery = True
        self.binlog_settings = {"conn_id": "binlog_source", "server_id": 4000 + int(uid, 16) % 1000, **binlog_settings}
        self.write_config()

    def write_config(self, reconcile: dict | None = None) -> None:
        document = {
            "pipelines": [
                {
                    "name": f"p_{self.world.uid}",
                    "schedule": None,
                    "source": {
                        "kind": "binlog",
                        "bucket": self.world.bucket,
                        "prefix": "binlog",
                        "binlog": self.binlog_settings,
                    },
                    "tables": [{"schema": self.db, "name": name, "primary_key": KEYS[name]} for name in TABLES],
                    "targets": {
                        "bigquery": {"project": "local", "dataset": self.world.dataset},
                        "aurora": {"database": self.world.target_db, "mysql_conn_id": "mysql_target"},
                    },
                    "options": {"retries": 0},
                    **({"reconcile": reconcile} if reconcile else {}),
                }
            ]
        }
        self.world.config_path.write_text(yaml.safe_dump(document))

    @property
    def spec(self):
        return pipeline_capture(self.world.pipeline)

    def settings(self) -> dict:
        m = self.server.mariadb
        return {"host": m.host, "port": m.port, "user": m.user, "passwd": m.password}

    def connect(self):
        return self.server.mariadb.connect(self.db)

    def capture(self, s3=None, **kwargs):
        return capture(self.spec, self.settings(), self.connect, s3 or self.world.s3, **kwargs)

    def sql(self, *statements, params=None) -> None:
        with self.source.cursor() as cur:
            for statement in statements:
                cur.execute(statement, params)

    def insert(self, table: str, row: dict) -> None:
        names = ", ".join(f"`{k}`" for k in row)
        marks = ", ".join(["%s"] * len(row))
        with self.source.cursor() as cur:
            cur.execute(f"INSERT INTO `{self.db}`.`{table}` ({names}) VALUES ({marks})", list(row.values()))

    def load(self, bigquery: bool = True) -> None:
        """Plan and load into both targets as the DAG's tasks do (only Aurora, the faster, when
        a test is about the capture's bookkeeping rather than the targets)."""
        self.world.run_aurora()
        self.with_bigquery = bigquery
        if bigquery:
            reports = [self.world.load_bigquery(batch) for batch in self.world.plan()]
            self.world.advance(reports)

    def expected(self, table: str) -> dict:
        """The independent expectation: the source table itself."""
        conn = self.server.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute("SET time_zone = '+00:00'")
                cur.execute(f"SELECT * FROM `{self.db}`.`{table}`")
                return {self._key(table, r): self._row(r) for r in cur.fetchall()}
        finally:
            conn.close()

    def aurora_rows(self, table: str) -> dict:
        conn = self.world.stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{self.world.target_db}`.`{self.db}_{table}`")
                return {self._key(table, r): self._row(r) for r in cur.fetchall()}
        finally:
            conn.close()

    def bigquery_rows(self, table: str) -> dict:
        view = f"local.{self.world.dataset}.{self.db}_{table}"
        return {
            self._key(table, r): self._row(dict(r)) for r in self.world.bq.query(f"SELECT * FROM `{view}`").result()
        }

    def assert_views_equal_source(self, tables=tuple(TABLES)) -> None:
        for table in tables:
            expected = self.expected(table)
            aurora = self.aurora_rows(table)
            assert aurora == expected, f"Aurora view of {table}: {aurora} != {expected}"
            if self.with_bigquery:
                assert self.bigquery_rows(table) == expected, f"BigQuery view of {table}"

    def landed_rows(self, table: str) -> int:
        """Row changes in every file landed for `table`."""
        import io

        import pyarrow.parquet as pq

        prefix = self.spec.table_prefixes[f"{self.db}.{table}"]
        listing = self.world.s3.list_objects_v2(Bucket=self.world.bucket, Prefix=prefix)
        return sum(
            pq.read_metadata(
                io.BytesIO(self.world.s3.get_object(Bucket=self.world.bucket, Key=o["Key"])["Body"].read())
            ).num_rows
            for o in listing.get("Contents", [])
        )

    @staticmethod
    def _key(table: str, row: dict):
        return tuple(row[k] for k in KEYS[table])

    @staticmethod
    def _row(row: dict) -> dict:
        return {k: _normal(v) for k, v in row.items() if not k.startswith("_cdc_") and k != "cdc_commit_ts"}

    def close(self) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{self.db}`")
        self.source.close()
        self.world.close()


@pytest.fixture
def bw(stack, binlog_server, unique_name, tmp_path):
    w = BinlogWorld(stack, binlog_server, unique_name, tmp_path)
    yield w
    w.close()


def _seed(bw: BinlogWorld) -> None:
    for i in range(1, 6):
        bw.insert("customers", customer(i))
        bw.insert("kinds", kind(i))
    for line in range(1, 4):
        bw.insert("order_lines", {"order_id": 1, "line_no": line, "sku": f"sku-{line}", "price": Decimal("9.99")})


def _changes(bw: BinlogWorld) -> None:
    """Inserts, updates, deletes; one key changed three times in one transaction (one second);
    a delete and re-insert of one key; a NULL set."""
    bw.insert("customers", customer(6))
    bw.sql(
        "BEGIN",
        f"UPDATE `{bw.db}`.customers SET qty = 1 WHERE id = 2",
        f"UPDATE `{bw.db}`.customers SET qty = 2, name = 'second' WHERE id = 2",
        f"UPDATE `{bw.db}`.customers SET qty = 3, notes = NULL WHERE id = 2",
        "COMMIT",
    )
    bw.sql(f"DELETE FROM `{bw.db}`.customers WHERE id = 3")
    bw.sql(f"DELETE FROM `{bw.db}`.customers WHERE id = 4")
    bw.insert("customers", customer(4, name="born again", attrs=None))
    bw.sql(f"UPDATE `{bw.db}`.order_lines SET price = 1.5 WHERE order_id = 1")
    bw.sql(f"DELETE FROM `{bw.db}`.order_lines WHERE line_no = 2")
    bw.sql(f"UPDATE `{bw.db}`.kinds SET small = 0, took = '-00:00:01', color = NULL WHERE id = 1")
    bw.sql(f"DELETE FROM `{bw.db}`.kinds WHERE id = 5")


def test_snapshot_then_stream_reach_both_views_equal_to_the_source(bw):
    _seed(bw)
    first = bw.capture()
    assert sorted(first.snapshot_tables) == sorted(f"{bw.db}.{t}" for t in TABLES)
    assert first.snapshot_rows == 13 and first.events == 0
    assert all(key.rsplit("/", 1)[1].startswith("LOAD") for key in first.keys)
    bw.load()
    bw.assert_views_equal_source()

    _changes(bw)
    second = bw.capture()
    assert second.snapshot_tables == [] and second.written == 13
    bw.load()
    bw.assert_views_equal_source()
    assert bw.aurora_rows("customers")[(2,)]["qty"] == 3  # the last of three changes in one second

    again = bw.capture()  # nothing new: no file, the same checkpoint
    assert again.keys == [] and again.events == 0
    assert again.checkpoint["position"] == second.checkpoint["position"]


def test_an_added_column_flows_to_both_targets(bw):
    _seed(bw)
    bw.capture()
    bw.load()
    bw.sql(f"UPDATE `{bw.db}`.customers SET qty = 99 WHERE id = 1")  # before the DDL: old columns
    bw.sql(f"ALTER TABLE `{bw.db}`.customers ADD COLUMN loyalty DECIMAL(10,2) NULL")
    bw.sql(f"UPDATE `{bw.db}`.customers SET loyalty = 12.5 WHERE id = 1")
    bw.insert("customers", customer(7, loyalty=Decimal("3.25")))
    report = bw.capture()
    assert len([k for k in report.keys if "/customers/" in k]) == 2  # one file per column layout
    bw.load()
    bw.assert_views_equal_source()
    assert bw.bigquery_rows("customers")[(1,)]["loyalty"] == "12.5"


def test_a_crash_between_the_files_and_the_checkpoint_is_harmless(bw):
    _seed(bw)
    bw.capture()
    _changes(bw)
    spec = bw.spec
    before = bw.world.s3.get_object(Bucket=spec.bucket, Key=spec.checkpoint_key)["Body"].read()

    class FailingCheckpointWrite:
        """S3 whose second checkpoint write fails: after the files are put, before the state commits."""

        def __init__(self, s3):
            self.s3, self.writes = s3, 0

        def __getattr__(self, name):
            return getattr(self.s3, name)

        def put_object(self, **kwargs):
            if kwargs["Key"] == spec.checkpoint_key:
                self.writes += 1
                if self.writes == 2:
                    raise ConnectionError("lost connection after the change files were put")
            return self.s3.put_object(**kwargs)

    with pytest.raises(ConnectionError):
        bw.capture(FailingCheckpointWrite(bw.world.s3))
    rerun = bw.capture()  # the pending files are on S3: their state is taken, nothing read twice
    assert rerun.events == 0 and rerun.keys == []
    bw.load()
    bw.assert_views_equal_source()
    landed = bw.world.changelog_count("customers")

    # a crash that lost even the pending record: the run reads the same changes again
    bw.world.s3.put_object(Bucket=spec.bucket, Key=spec.checkpoint_key, Body=before)
    replay = bw.capture()
    assert replay.written == 13
    bw.load()
    assert bw.world.changelog_count("customers") > landed  # copies in the changelog …
    bw.assert_views_equal_source()  # … and the same latest state


def test_a_transaction_larger_than_the_budget_is_split_across_runs(stack, binlog_server, unique_name, tmp_path):
    bw = BinlogWorld(stack, binlog_server, unique_name, tmp_path, max_events_per_run=3)
    try:
        _seed(bw)
        bw.capture()
        bw.sql(
            "BEGIN",
            *(f"UPDATE `{bw.db}`.customers SET qty = qty + {n} WHERE id = {n}" for n in range(1, 6)),
            f"DELETE FROM `{bw.db}`.customers WHERE id = 5",
            "COMMIT",
        )
        runs = []
        while not runs or runs[-1].written:
            runs.append(bw.capture())
        assert [r.written for r in runs] == [3, 3, 0]
        checkpoint = read_checkpoint(bw.world.s3, bw.spec.bucket, bw.spec.checkpoint_key)
        assert checkpoint.txn_rows == 0
        bw.load(bigquery=False)
        assert bw.landed_rows("customers") == 5 + 6  # the snapshot and each change once
        bw.assert_views_equal_source()
    finally:
        bw.close()


def _purge_binlogs(bw: BinlogWorld) -> None:
    """Rotate and purge every older binlog. MariaDB keeps a file until InnoDB's checkpoint of
    it is written (asynchronously): PURGE is repeated until the file is gone, 30 s at most."""
    import time

    with bw.source.cursor() as cur:
        cur.execute("FLUSH BINARY LOGS")
        cur.execute("SHOW MASTER STATUS")
        current = cur.fetchone()[0]
        deadline = time.monotonic() + 30
        while True:
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            if cur.fetchone()[0] == current:
                cur.fetchall()
                return
            cur.fetchall()
            assert time.monotonic() < deadline, "MariaDB kept the old binlog for 30 s"
            time.sleep(0.1)


def test_a_large_batch_is_read_whole_in_one_run(bw):
    """Hundreds of kilobytes of row events in one non-blocking read: none lost at its end."""
    bw.capture()
    with bw.source.cursor() as cur:
        for start in range(0, 20_000, 2_000):
            cur.executemany(
                f"INSERT INTO `{bw.db}`.order_lines VALUES (%s, %s, %s, %s)",
                [(n // 10, n % 10, f"sku-{n}", Decimal(n) / 4) for n in range(start, start + 2_000)],
            )
    report = bw.capture()
    assert report.written == 20_000 and not report.budget_spent
    bw.load(bigquery=False)
    bw.assert_views_equal_source(["order_lines"])


def test_a_purged_binlog_stops_the_run_and_a_resnapshot_recovers(bw):
    _seed(bw)
    bw.capture()
    bw.load(bigquery=False)
    bw.sql(f"UPDATE `{bw.db}`.customers SET qty = 0 WHERE id = 1", f"DELETE FROM `{bw.db}`.customers WHERE id = 2")
    _purge_binlogs(bw)
    with pytest.raises(LostHistoryError, match="purged.*resnapshot"):
        bw.capture()
    report = bw.capture(resnapshot=["*"])
    assert len(report.snapshot_tables) == 3
    assert not any(k.rsplit("/", 1)[1].startswith("LOAD") for k in report.keys)  # inserts after every change
    bw.load(bigquery=False)
    customers = bw.expected("customers")
    assert bw.aurora_rows("customers") == customers | {(2,): bw.aurora_rows("customers")[(2,)]}
    assert bw.aurora_rows("customers")[(1,)]["qty"] == 0
    bw.sql(f"UPDATE `{bw.db}`.customers SET qty = 5 WHERE id = 1")
    bw.capture()
    bw.load(bigquery=False)
    assert bw.aurora_rows("customers")[(1,)]["qty"] == 5


def test_resnapshot_of_one_table_under_concurrent_writes_keeps_every_change(bw):
    _seed(bw)
    bw.capture()
    bw.load(bigquery=False)
    bw.sql(f"UPDATE `{bw.db}`.customers SET qty = 100 WHERE id = 1")  # before the re-snapshot: in it
    bw.sql(f"UPDATE `{bw.db}`.kinds SET small = 1 WHERE id = 1")  # another table: streamed
    report = bw.capture(resnapshot=[f"{bw.db}.customers"])
    assert report.snapshot_tables == [f"{bw.db}.customers"] and report.written == 1
    bw.sql(f"UPDATE `{bw.db}`.customers SET qty = 101 WHERE id = 1")  # after: streamed, wins
    bw.capture()
    bw.load(bigquery=False)
    bw.assert_views_equal_source()


def test_events_without_row_metadata_are_refused_by_name(bw):
    _seed(bw)
    bw.capture()
    bw.sql("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
    try:
        with pytest.raises(Exception, match="binlog_row_metadata is MINIMAL: set binlog_row_metadata=FULL"):
            bw.capture()
        fresh = bw.server.mariadb.connect()  # the setting applies to sessions opened after it
        with fresh.cursor() as cur:
            cur.execute(f"UPDATE `{bw.db}`.customers SET qty = 7 WHERE id = 1")
        fresh.close()
    finally:
        bw.sql("SET GLOBAL binlog_row_metadata = 'FULL'")
    with pytest.raises(RowMetadataMissing, match="binlog_row_metadata=FULL"):
        bw.capture()
    bw.capture(resnapshot=["*"])  # the remedy the message names
    bw.load(bigquery=False)
    bw.assert_views_equal_source()


def test_the_first_snapshot_under_concurrent_writes_hands_over_to_the_stream(
    stack, binlog_server, unique_name, tmp_path
):
    import random
    import threading

    bw = BinlogWorld(stack, binlog_server, unique_name, tmp_path, snapshot_chunk_rows=500)
    try:
        with bw.source.cursor() as cur:
            cur.executemany(
                f"INSERT INTO `{bw.db}`.order_lines VALUES (%s, %s, %s, %s)",
                [(n // 10, n % 10, f"sku-{n}", Decimal(n) / 4) for n in range(4000)],
            )
        stop, ops = threading.Event(), []

        def write() -> None:
            conn = binlog_server.mariadb.connect(bw.db)
            rng = random.Random(7)
            with conn.cursor() as cur:
                while not stop.is_set():
                    n = rng.randrange(4500)
                    choice = rng.random()
                    if choice < 0.5:
                        cur.execute("UPDATE order_lines SET price = price + 1 WHERE order_id = %s", (n // 10,))
                    elif choice < 0.75:
                        cur.execute("DELETE FROM order_lines WHERE order_id = %s AND line_no = %s", (n // 10, n % 10))
                    else:
                        cur.execute(
                            "INSERT INTO order_lines VALUES (%s, %s, 'new', 1) ON DUPLICATE KEY UPDATE sku = 'again'",
                            (n // 10, n % 10),
                        )
                    ops.append(n)
            conn.close()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while not ops:  # the writer is running before the snapshot starts
                threading.Event().wait(0.01)
            before = len(ops)
            first = bw.capture()
            during = len(ops) - before
        finally:
            stop.set()
            writer.join()
        assert f"{bw.db}.order_lines" in first.snapshot_tables and first.snapshot_rows > 3000 and during > 0
        bw.capture()
        bw.load(bigquery=False)
        bw.assert_views_equal_source(["order_lines"])
    finally:
        bw.close()


@pytest.mark.airflow
def test_the_dag_captures_then_loads_both_targets_and_reconciles_in_sync(
    stack, airflow_db, binlog_server, unique_name, tmp_path, monkeypatch
):
    from tests.integration.harness import pipeline_dag

    w = BinlogWorld(stack, binlog_server, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        monkeypatch.setenv("AIRFLOW_CONN_BINLOG_SOURCE", binlog_server.mariadb.airflow_conn(w.db))
        w.write_config(reconcile={"source_conn_id": "binlog_source", "schedule": None})
        _seed(w)
        w.capture()  # the snapshot; the DAG run below captures the changes and loads both
        _changes(w)
        dag = w.world.dag()
        assert dag.get_task("capture_binlog").downstream_task_ids == {"wait_for_new_files"}
        run = dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert states["capture_binlog"] == "success"
        w.assert_views_equal_source()
        reconcile = pipeline_dag(w.world.config_path, w.world.pipeline.reconcile_dag_id).test()
        assert str(reconcile.state) == "success", {ti.task_id: str(ti.state) for ti in reconcile.get_task_instances()}
    finally:
        w.close()


def test_the_seed_kinesis_stream_gets_every_change_once_despite_refused_records(
    stack, binlog_server, unique_name, tmp_path
):
    import json

    from cdc_sync.sources.binlog.kinesis import KinesisSink

    stream = f"seed-{unique_name}"
    bw = BinlogWorld(stack, binlog_server, unique_name, tmp_path, kinesis_stream=stream)
    kinesis = stack.boto3_client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=1)

    class RefusingSomeRecords:
        """Kinesis whose first PutRecords call refuses every second record, as a shard over
        its throughput does (FailedRecordCount, an ErrorCode per refused record)."""

        def __init__(self, client):
            self.client, self.calls = client, 0

        def put_records(self, Records, **target):
            self.calls += 1
            if self.calls > 1:
                return self.client.put_records(Records=Records, **target)
            kept = [r for n, r in enumerate(Records) if n % 2 == 0]
            self.client.put_records(Records=kept, **target)
            results = [
                {"ErrorCode": "ProvisionedThroughputExceededException"} if n % 2 else {"SequenceNumber": "1"}
                for n in range(len(Records))
            ]
            return {"FailedRecordCount": len(Records) - len(kept), "Records": results}

    try:
        _seed(bw)
        bw.capture()
        _changes(bw)
        sink = KinesisSink(RefusingSomeRecords(kinesis), stream, sleep=lambda seconds: None)
        report = bw.capture(kinesis=sink)
        assert report.published == report.written == 13 and sink.retried == 1  # the first update of key 2
        shard = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        records = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
        events = [json.loads(r["Data"]) for r in records]
        assert len(events) == 13  # each change once: the refused ones were sent again, the rest not
        updates = [e for e in events if e["table"] == "customers" and e["type"] == "UpdateRowsEvent"]
        assert [e["row"]["after_values"]["qty"] for e in updates] == [1, 2, 3]  # one key's changes in order
        assert {e["schema"] for e in events} == {bw.db}
        assert next(r["PartitionKey"] for r in records if json.loads(r["Data"]) == updates[0]) == f"{bw.db}.customers:2"
        bw.load(bigquery=False)
        bw.assert_views_equal_source()
    finally:
        bw.close()
