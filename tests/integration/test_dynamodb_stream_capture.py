"""DynamoDB Streams capture against moto's DynamoDB and DynamoDB Streams servers: the seed's
web-analytics table with every attribute type, inserts/modifies/removes of the same item in
one run and across runs, applied to the Aurora stand-in (merge) and BigQuery (changelog +
view) through the DMS loaders. The views must equal the DynamoDB table's items (a Scan),
with every value as put; re-runs add nothing."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pymysql
import pytest
import yaml
from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from cdc_sync.sources.dynamodb_stream.capture import LostHistoryError, capture, pipeline_capture
from tests.integration.harness import World

pytestmark = pytest.mark.services

COLUMNS = [
    "event_id varchar(64)",
    "user_id bigint",
    "page varchar(200)",
    "big decimal(29,0)",
    "huge varchar(40)",
    "ratio decimal(10,4)",
    "payload blob",
    "is_bot tinyint(1)",
    "referrer varchar(200)",
    "tags json",
    "scores json",
    "blobs json",
    "path json",
    "props json",
]
BIG = Decimal("12345678901234567890123456789012345678")  # 38 digits: a float would lose them
# The emulator's BIGNUMERIC holds fewer integer digits than BigQuery's (38), so the DECIMAL column
# is NUMERIC-sized (29 digits) here and the 38-digit numbers go to a text column and a map.
SEED_FILTER = {
    "Filters": [
        {
            "Pattern": json.dumps(
                {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"page": {"S": [{"exists": True}]}}}}
            )
        }
    ]
}


def click(n: int, **overrides) -> dict:
    """An item with an attribute of every DynamoDB type (as boto3's resource layer takes it)."""
    item = {
        "event_id": f"e{n}",
        "user_id": Decimal(n * 1000),
        "page": f"/page/{n}",
        "big": Decimal(f"1234567890123456789012345678{n}"),
        "huge": Decimal(f"1234567890123456789012345678901234567{n}"),
        "ratio": Decimal("0.1250") + n,
        "payload": Binary(bytes([0, 255, n])),
        "is_bot": n % 2 == 0,
        "referrer": None,
        "tags": {"b", "a", f"t{n}"},
        "scores": {Decimal("9.5"), Decimal(-n), Decimal(10)},
        "blobs": {Binary(b"\x01"), Binary(bytes([n]))},
        "path": ["x", Decimal("1.10"), False, None],
        "props": {"z": BIG, "a": "ü", "nested": {"k": [Decimal(n)]}},
        "campaign": f"winter-{n}",  # not a declared column: the extra column keeps it
    }
    item.update(overrides)
    return item


def _order(value) -> tuple:
    return (0, Decimal(value), "") if isinstance(value, (int, Decimal)) else (1, 0, str(value))


def _json(value) -> object:
    """The JSON the views must hold for a set, list or map, built from the Python value alone."""
    if isinstance(value, set):
        return sorted((_json(v) for v in value), key=_order)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode()
    return value


def expected_row(item: dict) -> dict:
    """What the Aurora and BigQuery views must hold for an item, computed from the item alone."""
    row = {
        "event_id": item["event_id"],
        "user_id": int(item["user_id"]),
        "page": item.get("page"),
        "big": item["big"],
        "huge": format(item["huge"], "f"),
        "ratio": item["ratio"],
        "payload": item["payload"].value,
        "is_bot": int(item["is_bot"]),
        "referrer": item["referrer"],
    }
    for name in ("tags", "scores", "blobs", "path", "props"):
        row[name] = _json(item[name])
    row["extra"] = {"campaign": item["campaign"]}
    return row


def _normalise(row: dict) -> dict:
    out = {k: v for k, v in row.items() if not k.startswith("_cdc_") and k != "cdc_commit_ts"}
    for name in ("tags", "scores", "blobs", "path", "props", "extra"):
        out[name] = json.loads(out[name], parse_float=Decimal) if out.get(name) is not None else None
    for name in ("scores",):
        if out[name] is not None:
            out[name] = sorted(out[name], key=_order)
    return out


class DdbWorld:
    """A DynamoDB table with a stream in moto, and a dynamodb_stream pipeline into MariaDB and
    the BigQuery emulator, run with the harness's World plumbing."""

    def __init__(self, stack, uid, tmp_path, *, view_type="NEW_AND_OLD_IMAGES", filter_criteria=None, reconcile=None):
        self.world = World(stack, uid, tmp_path, aurora=True)
        self.ddb = stack.boto3_client("dynamodb")
        self.streams = stack.boto3_client("dynamodbstreams")
        self.s3 = self.world.s3
        self.table = f"webAnalytics{uid}"
        self.ddb.create_table(
            TableName=self.table,
            KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view_type},
        )
        settings = {"stream": self.table, "extra_attributes_column": "extra"}
        if filter_criteria:
            settings["filter_criteria"] = filter_criteria
        document = {
            "pipelines": [
                {
                    "name": f"p_{uid}",
                    "schedule": None,
                    "source": {
                        "kind": "dynamodb_stream",
                        "bucket": self.world.bucket,
                        "prefix": "ddb",
                        "dynamodb": settings,
                    },
                    "tables": [
                        {"schema": self.world.db, "name": "clicks", "primary_key": ["event_id"], "columns": COLUMNS}
                    ],
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

    def put(self, item: dict) -> None:
        serializer = TypeSerializer()
        self.ddb.put_item(TableName=self.table, Item={k: serializer.serialize(v) for k, v in item.items()})

    def delete(self, event_id: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key={"event_id": {"S": event_id}})

    def capture(self):
        return capture(pipeline_capture(self.world.pipeline), self.streams, self.ddb, self.s3)

    def load(self):
        """Plan and load into both targets as the DAG's tasks do."""
        aurora_reports = self.world.run_aurora()
        bigquery_reports = [self.world.load_bigquery(batch) for batch in self.world.plan()]
        self.world.advance(bigquery_reports)
        return aurora_reports, bigquery_reports

    def scan(self) -> dict:
        deserializer = TypeDeserializer()
        items = self.ddb.scan(TableName=self.table)["Items"]
        return {i["event_id"]["S"]: {k: deserializer.deserialize(v) for k, v in i.items()} for i in items}

    def aurora_rows(self) -> dict:
        conn = self.world.stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{self.world.target_db}`.`{self.world.db}_clicks`")
                return {r["event_id"]: _normalise(r) for r in cur.fetchall()}
        finally:
            conn.close()

    def bigquery_rows(self) -> dict:
        view = f"local.{self.world.dataset}.{self.world.db}_clicks"
        return {r["event_id"]: _normalise(dict(r)) for r in self.world.bq.query(f"SELECT * FROM `{view}`").result()}

    def changelog_count(self) -> int:
        return self.world.changelog_count("clicks")


@pytest.fixture
def ddb(stack, unique_name, tmp_path):
    w = DdbWorld(stack, unique_name, tmp_path)
    yield w
    w.world.close()


def test_every_type_and_every_op_reach_both_views_equal_to_the_table(ddb):
    items = {n: click(n) for n in range(1, 5)}
    for item in items.values():
        ddb.put(item)
    items[1] = click(1, page="/changed", user_id=Decimal(7), referrer="https://example.org")
    ddb.put(items[1])  # MODIFY in the same run as its INSERT
    ddb.delete("e2")  # REMOVE in the same run
    del items[2]
    items[3] = click(3, ratio=Decimal("99.0001"))
    ddb.put(items[3])
    first = ddb.capture()
    assert (first.records, first.written, first.filtered_out) == (7, 7, 0)
    ddb.load()

    # a second run: the same items change again, one comes back after its delete
    items[1] = click(1, tags={"only"}, props={"m": {"deep": [Decimal("1E+5")]}})
    ddb.put(items[1])
    ddb.delete("e4")
    del items[4]
    items[2] = click(2, page="/again")
    ddb.put(items[2])
    second = ddb.capture()
    assert second.written == 3 and second.key > first.key
    ddb.load()

    scanned = ddb.scan()
    assert scanned == {f"e{n}": item for n, item in items.items()}  # the table holds what we put
    expected = {f"e{n}": expected_row(item) for n, item in items.items()}
    aurora = ddb.aurora_rows()
    for key, row in expected.items():
        for column, value in row.items():
            assert aurora[key][column] == value, (key, column, aurora[key][column])
    assert aurora == expected
    assert ddb.bigquery_rows() == expected
    rows = ddb.changelog_count()
    assert rows == 10

    # re-runs: nothing new in the stream, nothing landed, nothing applied twice
    third = ddb.capture()
    assert (third.records, third.key) == (0, None)
    ddb.load()
    assert ddb.changelog_count() == rows
    assert ddb.aurora_rows() == expected


def test_the_seed_filter_writes_only_inserts_with_a_page_and_counts_the_rest(stack, unique_name, tmp_path):
    w = DdbWorld(stack, unique_name, tmp_path, filter_criteria=SEED_FILTER)
    try:
        w.put(click(1))
        w.put(click(2, page=None))  # NULL page: `S` does not exist
        without_page = click(3)
        del without_page["page"]
        w.put(without_page)
        w.put(click(1, user_id=Decimal(5)))  # MODIFY: not an INSERT
        w.delete("e1")  # REMOVE: not an INSERT
        report = w.capture()
        assert (report.records, report.written, report.filtered_out) == (5, 1, 4)
        w.load()
        assert w.aurora_rows() == {"e1": expected_row(click(1))}
        assert w.bigquery_rows() == {"e1": expected_row(click(1))}
    finally:
        w.world.close()


def test_a_keys_only_stream_is_a_clear_config_error(stack, unique_name, tmp_path):
    w = DdbWorld(stack, unique_name, tmp_path, view_type="KEYS_ONLY")
    try:
        w.put(click(1))
        with pytest.raises(Exception, match="StreamViewType KEYS_ONLY.*NEW_AND_OLD_IMAGES"):
            w.capture()
        assert not w.s3.list_objects_v2(Bucket=w.world.bucket, Prefix="ddb/").get("Contents")
    finally:
        w.world.close()


def test_a_checkpoint_on_a_shard_the_stream_no_longer_has_stops_the_run(ddb):
    ddb.put(click(1))
    ddb.capture()
    spec = pipeline_capture(ddb.world.pipeline)
    checkpoint = json.loads(ddb.s3.get_object(Bucket=spec.bucket, Key=spec.checkpoint_key)["Body"].read())
    checkpoint["positions"]["shardId-00000001000000000000-trimmed"] = "100"  # read once, trimmed since
    ddb.s3.put_object(Bucket=spec.bucket, Key=spec.checkpoint_key, Body=json.dumps(checkpoint).encode())
    ddb.put(click(2))
    with pytest.raises(
        LostHistoryError, match=r"shardId-00000001000000000000-trimmed .*no longer in the stream.*Re-snapshot"
    ):
        ddb.capture()


def test_an_interrupted_run_whose_file_landed_is_not_read_twice(ddb):
    ddb.put(click(1))
    spec = pipeline_capture(ddb.world.pipeline)

    class FailingCheckpointWrite:
        """S3 whose second checkpoint write fails: after the file is put, before its positions commit."""

        def __init__(self, s3):
            self.s3, self.writes = s3, 0

        def __getattr__(self, name):
            return getattr(self.s3, name)

        def put_object(self, **kwargs):
            if kwargs["Key"] == spec.checkpoint_key:
                self.writes += 1
                if self.writes == 2:
                    raise ConnectionError("lost connection after the change file was put")
            return self.s3.put_object(**kwargs)

    with pytest.raises(ConnectionError):
        capture(spec, ddb.streams, ddb.ddb, FailingCheckpointWrite(ddb.s3))
    rerun = ddb.capture()
    assert rerun.records == 0 and rerun.key is None  # the landed file's positions were taken
    ddb.load()
    assert ddb.changelog_count() == 1
    assert ddb.aurora_rows() == {"e1": expected_row(click(1))}


@pytest.mark.airflow
def test_the_dag_captures_then_loads_both_targets(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    w = DdbWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        items = {n: click(n) for n in range(1, 4)}
        for item in items.values():
            w.put(item)
        items[1] = click(1, page="/modified")
        w.put(items[1])
        w.delete("e3")
        del items[3]
        dag = w.world.dag()
        assert "capture_stream" in dag.task_ids
        run = dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert states["capture_stream"] == "success"
        expected = {f"e{n}": expected_row(item) for n, item in items.items()}
        assert w.aurora_rows() == expected
        assert w.bigquery_rows() == expected
        assert expected.keys() == w.scan().keys()
    finally:
        w.world.close()


@pytest.mark.airflow
def test_a_capture_that_fails_fails_the_run_and_loads_nothing(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    w = DdbWorld(stack, unique_name, tmp_path, view_type="KEYS_ONLY")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        w.put(click(1))
        run = w.world.dag().test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "failed", states
        assert states["capture_stream"] == "failed"
        assert not w.s3.list_objects_v2(Bucket=w.world.bucket, Prefix="ddb/").get("Contents")
    finally:
        w.world.close()


def test_reconciliation_against_a_scan_of_the_table_is_in_sync_and_names_drift(ddb):
    from cdc_sync.sources.dynamodb_stream.scan import reconcile_with_scan

    for n in range(1, 6):
        ddb.put(click(n))
    ddb.put(click(2, page="/changed", tags={"x"}))
    ddb.delete("e3")
    ddb.capture()
    ddb.load()
    world = ddb.world

    def reconcile():
        return {
            c.target: c
            for c in reconcile_with_scan(
                world.pipeline,
                ddb.ddb,
                lambda: world.stack.mariadb.connect(),
                world.db,
                bigquery_client=world.bq,
                aurora_connect=world.aurora_connection,
            )
        }

    results = reconcile()
    assert {t: (c.status, c.source_rows) for t, c in results.items()} == {
        "aurora": ("in_sync", 4),
        "bigquery": ("in_sync", 4),
    }, {t: c.summary() for t, c in results.items()}

    # drift: an item changes in DynamoDB and is not captured yet; both targets name its key and column
    ddb.put(click(4, user_id=Decimal(44)))
    drifted = reconcile()
    for comparison in drifted.values():
        assert comparison.status != "in_sync"
        assert [(d.key, d.kind) for d in comparison.differences] == [({"event_id": "e4"}, "changed")]


def test_after_lost_history_a_resnapshot_lands_the_table_tied_to_the_stream_position(ddb):
    from cdc_sync.sources.dynamodb_stream.scan import reconcile_with_scan, resnapshot

    items = {n: click(n) for n in range(1, 4)}
    for item in items.values():
        ddb.put(item)
    ddb.capture()
    ddb.load()
    spec = pipeline_capture(ddb.world.pipeline)
    checkpoint = json.loads(ddb.s3.get_object(Bucket=spec.bucket, Key=spec.checkpoint_key)["Body"].read())
    checkpoint["positions"]["shardId-00000001000000000000-trimmed"] = "100"
    ddb.s3.put_object(Bucket=spec.bucket, Key=spec.checkpoint_key, Body=json.dumps(checkpoint).encode())
    items[1] = click(1, page="/while-lost")
    ddb.put(items[1])
    items[4] = click(4)
    ddb.put(items[4])
    with pytest.raises(LostHistoryError, match=r"""--conf '\{"resnapshot": true\}'"""):
        ddb.capture()

    report = resnapshot(ddb.world.pipeline, ddb.streams, ddb.ddb, ddb.s3)
    assert (report.records, report.written) == (4, 4)
    ddb.load()
    expected = {f"e{n}": expected_row(item) for n, item in items.items()}
    assert ddb.aurora_rows() == expected and ddb.bigquery_rows() == expected

    # the checkpoint now sits at the stream's end: the next capture reads only what follows
    items[2] = click(2, page="/after")
    ddb.put(items[2])
    after = ddb.capture()
    assert (after.records, after.written) == (1, 1) and after.key > report.key
    ddb.load()
    expected = {f"e{n}": expected_row(item) for n, item in items.items()}
    assert ddb.aurora_rows() == expected and ddb.bigquery_rows() == expected
    assert expected.keys() == ddb.scan().keys()
    comparisons = reconcile_with_scan(
        ddb.world.pipeline,
        ddb.ddb,
        lambda: ddb.world.stack.mariadb.connect(),
        ddb.world.db,
        bigquery_client=ddb.world.bq,
        aurora_connect=ddb.world.aurora_connection,
    )
    assert [c.status for c in comparisons] == ["in_sync", "in_sync"]


@pytest.mark.airflow
def test_the_resnapshot_param_lands_the_whole_table_through_the_dag(
    stack, airflow_db, unique_name, tmp_path, monkeypatch
):
    w = DdbWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        items = {n: click(n) for n in range(1, 4)}
        for item in items.values():
            w.put(item)
        w.delete("e2")
        del items[2]
        run = w.world.dag().test(run_conf={"resnapshot": True})
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert w.changelog_count() == 2  # the Scan's two items, not the stream's four records
        expected = {f"e{n}": expected_row(item) for n, item in items.items()}
        assert w.aurora_rows() == expected and w.bigquery_rows() == expected
        assert w.capture().records == 0  # tied to the stream's end: nothing read twice
    finally:
        w.world.close()


@pytest.mark.airflow
def test_an_idle_stream_ends_the_run_at_once_instead_of_waiting(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    import time

    w = DdbWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        began = time.monotonic()
        run = w.world.dag().test()  # the pipeline's wait_timeout_minutes is the default 50
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert states["capture_stream"] == "success" and states["wait_for_new_files"] == "skipped"
        assert time.monotonic() - began < 120
    finally:
        w.world.close()


@pytest.mark.airflow
def test_the_reconcile_dag_compares_both_views_with_a_scan(stack, airflow_db, unique_name, tmp_path, monkeypatch):
    from tests.integration.harness import pipeline_dag

    w = DdbWorld(stack, unique_name, tmp_path, reconcile={"source_conn_id": "mysql_scan", "recheck_seconds": 0})
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.world.target_db))
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_SCAN", stack.mariadb.airflow_conn(w.world.db))
        for n in range(1, 4):
            w.put(click(n))
        w.capture()
        w.load()
        dag = pipeline_dag(w.world.config_path, w.world.pipeline.reconcile_dag_id)
        run = dag.test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "success", states
        assert states["all_in_sync"] == "success"

        w.delete("e2")  # not captured: both views still have it
        run = pipeline_dag(w.world.config_path, w.world.pipeline.reconcile_dag_id).test()
        states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert str(run.state) == "failed" and states["reconcile_table"] == "failed", states
    finally:
        w.world.close()
