"""The audit trail end to end: audit lines put to moto's CloudWatch Logs reach a two-shard
Kinesis stream through the subscription filter (see test_audit_log_trigger.py for how), a
`kind: audit_log` pipeline's capture lands them as a trail file, and the DMS loaders apply it
to the Aurora stand-in (merge) and the BigQuery emulator (changelog + view). Both views must
equal the rows built from the lines alone; re-runs, and a run interrupted after its file was
put, add nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymysql
import pytest
import yaml

from cdc_sync.sources.audit_log.trail import capture_trail, pipeline_trail
from tests.integration.harness import World
from tests.integration.test_audit_log_trigger import AuditPipe
from tools.audit_standin import audit_line

pytestmark = pytest.mark.services

EPOCH = datetime(2025, 12, 6, tzinfo=UTC)  # 1764979200 s


def line(query_id: int, statement: str, **kw) -> tuple[str, dict]:
    """An audit line with its own query id, and the trail row it must become (from the inputs)."""
    fields = {
        "user": kw.pop("user", "app"),
        "host": "10.0.0.7",
        "connection_id": 41,
        "query_id": query_id,
        "operation": kw.pop("operation", "QUERY"),
        "database": "shop",
        "retcode": kw.pop("retcode", 0),
    }
    text = audit_line(statement, timestamp=str(1764979200_000000 + query_id * 1_000_001), **fields)
    row = {
        "event_time": EPOCH + timedelta(microseconds=query_id * 1_000_001),
        "server_host": "shop-instance-1",
        "user_name": fields["user"],
        "client_host": "10.0.0.7",
        "connection_id": 41,
        "query_id": query_id,
        "operation": fields["operation"],
        "database_name": "shop",
        "tables_written": kw.pop("tables"),
        "statement": statement,
        "retcode": fields["retcode"],
    }
    return text, row


FIRST = [
    line(1, "INSERT INTO customers (id, name) VALUES (1, 'O\\'Brien, 配送 🚚')", tables="shop.customers"),
    line(
        2, "update orders o join customers c on o.cid = c.id set o.note = 'x,\ny' where c.id = 1", tables="shop.orders"
    ),
    line(3, "INSERT INTO crm.leads SELECT * FROM shop.customers", tables="crm.leads"),
    line(4, "DELETE FROM refunds WHERE id = 1", retcode=1451, tables=""),  # failed: wrote nothing
    line(5, "SELECT * FROM payments", tables="", user="analyst"),
    line(6, "UPDATE a JOIN b SET x = 1", tables=None),  # a write whose table cannot be named
    line(7, "", operation="CONNECT", tables=""),
]
SECOND = [line(8, "TRUNCATE TABLE payments", tables="shop.payments")]


class TrailWorld:
    def __init__(self, stack, uid, tmp_path):
        self.world = World(stack, uid, tmp_path, aurora=True)
        self.pipe = AuditPipe(stack, uid)
        document = {
            "pipelines": [
                {
                    "name": f"trail_{uid}",
                    "schedule": None,
                    "source": {
                        "kind": "audit_log",
                        "bucket": self.world.bucket,
                        "prefix": "audit",
                        "audit_log": {"stream": self.pipe.audit},
                    },
                    "tables": [{"schema": self.world.db, "name": "trail"}],
                    "targets": {
                        "bigquery": {"project": "local", "dataset": self.world.dataset},
                        "aurora": {"database": self.world.target_db, "mysql_conn_id": "mysql_target"},
                    },
                    "options": {"retries": 0},
                }
            ]
        }
        self.world.config_path.write_text(yaml.safe_dump(document))

    def capture(self, s3=None):
        return capture_trail(pipeline_trail(self.world.pipeline), s3 or self.world.s3)

    def load(self) -> None:
        self.world.run_aurora()
        self.world.advance([self.world.load_bigquery(batch) for batch in self.world.plan()])

    def _by_query(self, rows) -> dict:
        out = {}
        for row in rows:
            row = {k: v for k, v in dict(row).items() if not k.startswith("_cdc_") and k != "cdc_commit_ts"}
            assert row.pop("log_group") == self.pipe.group and row.pop("log_stream") == "shop-instance-1"
            assert row.pop("event_id")
            when = row["event_time"]
            row["event_time"] = when if when.tzinfo else when.replace(tzinfo=UTC)
            out[row["query_id"]] = row
        return out

    def aurora_rows(self) -> dict:
        conn = self.world.stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{self.world.target_db}`.`{self.world.db}_trail`")
                return self._by_query(cur.fetchall())
        finally:
            conn.close()

    def bigquery_rows(self) -> dict:
        view = f"local.{self.world.dataset}.{self.world.db}_trail"
        return self._by_query(self.world.bq.query(f"SELECT * FROM `{view}`").result())

    def event_ids(self) -> list[str]:
        view = f"local.{self.world.dataset}.{self.world.db}_trail"
        return [r["event_id"] for r in self.world.bq.query(f"SELECT event_id FROM `{view}`").result()]


class FailAfterFilePut:
    """S3 whose next checkpoint write after the trail file fails: a run killed between the two."""

    def __init__(self, s3):
        self.s3, self.file_put = s3, False

    def __getattr__(self, name):
        return getattr(self.s3, name)

    def put_object(self, **kwargs):
        if self.file_put and kwargs["Key"].endswith("audit_log.json"):
            raise RuntimeError("worker lost")
        self.s3.put_object(**kwargs)
        self.file_put = self.file_put or kwargs["Key"].endswith(".parquet")


def test_the_trail_holds_every_audit_event_once_in_both_targets(stack, unique_name, tmp_path):
    w = TrailWorld(stack, unique_name, tmp_path)
    try:
        w.pipe.write([text for text, _ in FIRST] + ["this is not an audit line"])
        first = w.capture()
        assert (first.lines, first.written, first.unparsed, first.unmapped) == (8, 7, 1, 1)
        assert first.problems_key, "the line that does not parse is kept with where it was read"
        problems = w.world.s3.get_object(Bucket=w.world.bucket, Key=first.problems_key)["Body"].read().decode()
        assert "this is not an audit line" in problems and "UPDATE a JOIN b" in problems
        w.load()
        expected = {row["query_id"]: row for _, row in FIRST}
        assert w.aurora_rows() == expected
        assert w.bigquery_rows() == expected

        # a run killed after its file was put and before its checkpoint moved: the next run
        # takes that file's positions instead of reading (and landing) the same events again
        w.pipe.write([text for text, _ in SECOND])
        with pytest.raises(RuntimeError, match="worker lost"):
            w.capture(FailAfterFilePut(w.world.s3))
        resumed = w.capture()
        assert resumed.resumed_pending and resumed.key is None and resumed.records == 0
        w.load()
        expected.update({row["query_id"]: row for _, row in SECOND})
        assert w.aurora_rows() == expected
        assert w.bigquery_rows() == expected
        ids = w.event_ids()
        assert len(ids) == len(set(ids)) == 8

        # nothing new: nothing landed, nothing loaded twice
        again = w.capture()
        assert (again.records, again.key) == (0, None)
        w.load()
        assert w.aurora_rows() == expected and w.bigquery_rows() == expected
        assert w.world.changelog_count("trail") == 8
    finally:
        w.world.close()


@pytest.mark.airflow
def test_the_trail_dag_captures_then_loads_both_targets(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    w = TrailWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        w.pipe.write([text for text, _ in FIRST])
        dag = w.world.dag()
        run = dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert states["capture_audit_trail"] == "success"
        expected = {row["query_id"]: row for _, row in FIRST}
        assert w.aurora_rows() == expected
        assert w.bigquery_rows() == expected
    finally:
        w.world.close()
