"""`source.kind: binlog`: its configuration, the DMS types of binlog columns, the server
settings it refuses by name, and how binlog positions compare (no server needed)."""

from __future__ import annotations

import copy
from datetime import timedelta
from types import SimpleNamespace

import pyarrow as pa
import pytest

from cdc_sync.config import ConfigError, parse_pipelines
from cdc_sync.errors import BadInput
from cdc_sync.sources.binlog.capture import Checkpoint, _Transaction, covers, pipeline_capture
from cdc_sync.sources.binlog.columns import (
    RowMetadataMissing,
    arrow_columns,
    binlog_value,
    dms_value,
    mysql_type_of,
)
from cdc_sync.sources.binlog.server import Position, ServerInfo, _setting_problems, mariadb_gtid_state
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql

BINLOG = {
    "pipelines": [
        {
            "name": "shop",
            "source": {
                "kind": "binlog",
                "bucket": "shop-landing",
                "prefix": "binlog",
                "binlog": {"conn_id": "shop_source", "max_events_per_run": 1000},
            },
            "tables": [
                {"schema": "shop", "name": "orders", "primary_key": ["id"]},
                {"schema": "shop", "name": "order_lines", "primary_key": ["order_id", "line_no"]},
            ],
            "targets": {"aurora": {"database": "analytics"}, "bigquery": {"project": "local", "dataset": "shop"}},
        }
    ]
}
MARIADB = ServerInfo("mariadb", 7, None, True)
MYSQL_FILE_POS = ServerInfo("mysql", 7, "uuid", False)


def _with(change) -> dict:
    document = copy.deepcopy(BINLOG)
    change(document["pipelines"][0])
    return document


def test_a_binlog_pipeline_reads_its_settings():
    (pipeline,) = parse_pipelines(BINLOG)
    spec = pipeline_capture(pipeline)
    assert pipeline.source.binlog.conn_id == "shop_source"
    assert spec.checkpoint_key == "cdc-sync/checkpoints/shop/binlog.json"
    assert spec.table_prefixes == {"shop.orders": "binlog/shop/orders/", "shop.order_lines": "binlog/shop/order_lines/"}
    assert spec.budget.max_events == 1000 and spec.replica_id == 4_194_001
    assert all(t.commit_timestamp_column == "cdc_commit_ts" for t in pipeline.tables)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["source"].pop("binlog"), "field source.binlog: required for kind binlog"),
        (lambda p: p["tables"][0].pop("primary_key"), "field tables[0]: 'primary_key' is required for a binlog"),
        (lambda p: p["tables"][0].update(columns=["id bigint"]), "takes its columns from the binlog's row metadata"),
        (lambda p: p["targets"]["aurora"].update(mode="append"), "a binlog source is applied with mode merge"),
        (lambda p: p["source"]["binlog"].update(server_id=0), "field source.binlog.server_id"),
    ],
)
def test_binlog_config_mistakes_are_named_by_field(change, message):
    with pytest.raises(ConfigError, match="pipeline 'shop'") as error:
        parse_pipelines(_with(change), "pipelines.yaml")
    assert message in str(error.value)


def test_the_dag_captures_before_it_waits_and_takes_a_resnapshot_list():
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    (pipeline,) = parse_pipelines(BINLOG)
    dag = build_pipeline_dag(pipeline)
    assert dag.get_task("capture_binlog").downstream_task_ids == {"wait_for_new_files"}
    assert dag.params["resnapshot"] == []


def _column(code, name="c", **kwargs):
    return SimpleNamespace(**{"type": code, "name": name, "unsigned": False, "character_set_name": None, **kwargs})


def test_binlog_columns_get_the_types_dms_gives_them():
    assert mysql_type_of(_column(246, precision=18, decimals=4)) == "decimal(18,4)"
    assert mysql_type_of(_column(252, character_set_name="binary")) == "blob"
    assert mysql_type_of(_column(252, character_set_name="utf8mb4")) == "text"
    assert mysql_type_of(_column(254, character_set_name="binary")) == "binary"
    assert mysql_type_of(SimpleNamespace(type=8, name="b", unsigned=True)) == "bigint unsigned"
    assert arrow_type_for_mysql("bigint unsigned") == pa.decimal128(20, 0)
    assert arrow_type_for_mysql("tinyint(3) unsigned") == pa.int16()  # 255 does not fit int8
    assert arrow_type_for_mysql("tinyint(1)") == pa.int8()
    columns = arrow_columns("shop", "orders", [_column(8, "id"), _column(18, "at")])
    assert columns == [("id", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))]


def test_row_events_without_column_names_are_refused_naming_the_setting():
    with pytest.raises(RowMetadataMissing, match="binlog_row_metadata=FULL"):
        arrow_columns("shop", "orders", [_column(8, "UNKNOWN_COL0")])


def test_values_are_written_as_dms_writes_them():
    assert dms_value("101", pa.binary()) == b"\x05"  # BIT(3)
    assert dms_value({"b", "a"}, pa.string()) == "a,b"  # SET
    assert dms_value(18446744073709551615, pa.decimal128(20, 0)) == 18446744073709551615
    assert binlog_value(timedelta(seconds=-1), pa.string(), "shop.t", "took") == timedelta(seconds=-1)
    with pytest.raises(BadInput, match="shop.t: column took holds a negative TIME with fractional seconds"):
        binlog_value(timedelta(seconds=-1, microseconds=250_000), pa.string(), "shop.t", "took")


def test_each_wrong_server_setting_is_named_with_its_fix():
    problems = _setting_problems(
        {
            "log_bin": "ON",
            "binlog_format": "MIXED",
            "binlog_row_image": "MINIMAL",
            "binlog_row_metadata": "NO_LOG",
            "binlog_transaction_compression": "ON",
        },
        "mysql",
    )
    text = " | ".join(problems)
    for wanted in (
        "binlog_format is MIXED: set binlog_format=ROW",
        "binlog_row_image is MINIMAL: set binlog_row_image=FULL",
        "binlog_row_metadata is NO_LOG: set binlog_row_metadata=FULL",
        "binlog_transaction_compression is ON",
    ):
        assert wanted in text
    assert (
        _setting_problems(
            {"log_bin": "ON", "binlog_format": "ROW", "binlog_row_image": "FULL", "binlog_row_metadata": "FULL"},
            "mariadb",
        )
        == []
    )


def test_a_snapshot_covers_the_transactions_before_its_position():
    snapshot = Position("binlog.000003", 500, "0-7-10,1-9-4").to_dict()
    assert mariadb_gtid_state("0-7-10,1-9-4") == {0: 10, 1: 4}
    start = Position("binlog.000003", 400)
    assert covers(snapshot, _Transaction(start, "0-7-10", True), MARIADB)
    assert not covers(snapshot, _Transaction(start, "0-7-11", True), MARIADB)
    assert not covers(snapshot, _Transaction(start, "2-7-1", True), MARIADB)  # a domain it has not seen
    assert covers(snapshot, _Transaction(Position("binlog.000002", 9000), None, True), MYSQL_FILE_POS)
    assert not covers(snapshot, _Transaction(Position("binlog.000003", 500), None, True), MYSQL_FILE_POS)


def test_a_checkpoint_round_trips_with_its_pending_files():
    checkpoint = Checkpoint(
        {"position": {"file": "binlog.000001", "pos": 4, "gtid": "0-7-1"}, "txn_rows": 3, "pending": {"files": ["k"]}}
    )
    again = Checkpoint(checkpoint.to_dict())
    assert again.position == Position("binlog.000001", 4, "0-7-1") and again.txn_rows == 3
    assert again.pending == {"files": ["k"]} and "pending" not in again.state()


def test_kinesis_records_keep_one_row_per_call_and_give_up_loudly():
    from cdc_sync.errors import TransientError
    from cdc_sync.sources.binlog.kinesis import KinesisSink, partition_key

    class AlwaysRefusing:
        def __init__(self):
            self.calls = []

        def put_records(self, Records, StreamName):
            self.calls.append([r["PartitionKey"] for r in Records])
            return {"FailedRecordCount": len(Records), "Records": [{"ErrorCode": "InternalFailure"}] * len(Records)}

    assert partition_key("shop", "orders", (1, "a")) == "shop.orders:1|a"
    assert len(partition_key("shop", "orders", ("x" * 300,))) == 64  # hashed under Kinesis's 256
    client = AlwaysRefusing()
    sink = KinesisSink(client, "seed", sleep=lambda seconds: None)
    sink.add("shop", "orders", "WriteRowsEvent", {"values": {"id": 1}}, (1,))
    sink.add("shop", "orders", "WriteRowsEvent", {"values": {"id": 2}}, (2,))
    with pytest.raises(TransientError, match="2 record\\(s\\) still refused after 8 PutRecords calls"):
        sink.add("shop", "orders", "UpdateRowsEvent", {"after_values": {"id": 1}}, (1,))  # row 1 again: a new call
    assert client.calls[0] == ["shop.orders:1", "shop.orders:2"] and len(client.calls) == 8
