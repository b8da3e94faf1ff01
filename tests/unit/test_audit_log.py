"""Audit-log trigger, pure parts: CloudWatch Logs records, audit lines, written tables."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime

import pytest

from cdc_sync.errors import BadInput
from cdc_sync.sources.audit_log.batch import KinesisRecord, decode_batch
from cdc_sync.sources.audit_log.lines import parse_audit_line, parse_line
from cdc_sync.sources.audit_log.records import decode_record
from cdc_sync.sources.audit_log.written import (
    TableRef,
    Unmapped,
    parsed_tables,
    single_table_write,
    written_tables,
)
from tools.audit_standin import audit_line, control_record, subscription_record

HOSTILE = [
    "INSERT INTO customers (id, name) VALUES (1, 'O\\'Brien, Pat')",
    "insert into customers values (2, 'it''s', 'a\\\\b')",
    "UPDATE customers SET note = 'line one\nline two,\r\n''quoted'' \\' done' WHERE id = 3",
    "INSERT INTO customers (id, name) VALUES (4, '山田太郎 — 東京都, 渋谷区 🎉🍣')",
    "/* app: checkout */ insert into `shop`.`orders` (`id`) values (5) -- trailing, comment",
    "SELECT 'a,b,''c'' \\\\', 0",
    "",
]


def kinesis(data: bytes, seq: int = 1) -> KinesisRecord:
    # Kinesis carries the data base64-encoded on the wire; the client hands back the bytes.
    wire = base64.b64encode(data)
    return KinesisRecord("audit", "shardId-000000000000", f"4959{seq:020d}", base64.b64decode(wire))


@pytest.mark.parametrize("statement", HOSTILE)
def test_audit_line_round_trips_hostile_statements(statement):
    for escape_newlines in (False, True):
        line = audit_line(statement, database="shop", retcode=0, escape_newlines=escape_newlines)
        event = parse_line(line)
        assert event.statement == statement
        assert (event.user, event.host, event.connection_id, event.query_id) == ("app", "10.0.0.7", 41, 1001)
        assert (event.operation, event.database, event.retcode) == ("QUERY", "shop", 0)
        assert event.timestamp == datetime(2025, 12, 6, 0, 0, 0, 123456, tzinfo=UTC)


def test_audit_line_timestamps_and_extra_fields():
    line = audit_line("DELETE FROM t", timestamp="20261206 11:02:03", retcode=1146) + ",TCP/IP"
    event = parse_line(line)
    assert event.timestamp == datetime(2026, 12, 6, 11, 2, 3, tzinfo=UTC)
    assert event.retcode == 1146
    assert event.extra == ("TCP/IP",)
    last = parse_line(audit_line("DELETE FROM t", timestamp="253402300799999999"))  # the last µs of year 9999
    assert last.timestamp == datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop", "fields before the object"),
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop,INSERT,0", "does not start with a single quote"),
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop,'it's',0", "quote inside the object is not escaped"),
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop,'x',zero", "retcode 'zero'"),
        ("yesterday,host,app,10.0.0.7,41,1001,QUERY,shop,'x',0", "timestamp 'yesterday'"),
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop,'x\\',0", "ends inside an escape"),
        # values that would fail later (event.timestamp, the trail table's bigint/int columns)
        ("253402300800000000,host,app,10.0.0.7,41,1001,QUERY,shop,'x',0", "timestamp '253402300800000000'"),
        ("\u00b2,host,app,10.0.0.7,41,1001,QUERY,shop,'x',0", "timestamp '\u00b2'"),
        ("1764979200,host,app,10.0.0.7,9223372036854775808,1,QUERY,shop,'x',0", "out of the 64-bit range"),
        ("1764979200,host,app,10.0.0.7,41,1001,QUERY,shop,'x',2147483648", "retcode '2147483648' is out of range"),
    ],
)
def test_bad_audit_lines_are_refused_with_what_and_where(line, reason):
    with pytest.raises(BadInput) as caught:
        parse_audit_line(line, "kinesis stream audit shard s-0 record 7 logEvents[2]")
    assert "record 7 logEvents[2]" in str(caught.value)
    assert reason in str(caught.value)


def test_decode_record_reads_the_gzip_envelope_and_control_messages():
    data = subscription_record([audit_line("INSERT INTO t VALUES (1)"), audit_line("SELECT 1")], first_id=100)
    record = decode_record(data, "here")
    assert (record.message_type, record.log_group) == ("DATA_MESSAGE", "/aws/rds/cluster/shop/audit")
    assert [e.id for e in record.events] == ["100", "101"]
    assert record.events[0].message == audit_line("INSERT INTO t VALUES (1)")
    control = decode_record(control_record(), "here")
    assert control.is_control and control.events == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"plain text", "gzip data expected"),
        (gzip.compress(b"\xff\xfe not utf-8"), "not UTF-8 JSON"),
        (gzip.compress(b"[1, 2]"), "not a CloudWatch Logs subscription envelope: Expected `object`"),
        (gzip.compress(b'{"messageType": "OTHER"}'), "messageType 'OTHER'"),
        (
            gzip.compress(b'{"messageType": "DATA_MESSAGE", "logEvents": [{"id": "1"}]}'),
            "missing required field `message` - at `$.logEvents[0]`",
        ),
        (subscription_record(["x"])[:-8], "gzip data expected"),  # truncated
    ],
)
def test_decode_record_refuses_what_is_not_a_subscription_record(data, reason):
    with pytest.raises(BadInput) as caught:
        decode_record(data, "kinesis stream audit shard s-0 record 9")
    assert "record 9" in str(caught.value) and reason in str(caught.value)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("INSERT INTO customers VALUES (1)", ["shop.customers"]),
        ("insert into `crm`.`Leads` (a) select a from shop.customers join shop.orders using (id)", ["crm.Leads"]),
        ("REPLACE INTO `order items` (id) VALUES (1)", ["shop.order items"]),
        ("replace low_priority into crm.accounts set id = 1", ["crm.accounts"]),
        ("UPDATE customers SET name = 'a, b' WHERE id = 1", ["shop.customers"]),
        ("update low_priority ignore customers set a = 1", ["shop.customers"]),
        ("DELETE LOW_PRIORITY QUICK IGNORE FROM orders", ["shop.orders"]),
        ("insert into `low_priority` values (1)", ["shop.low_priority"]),
        (
            "update orders o join crm.accounts a on o.account = a.id set a.total = a.total + o.amount, a.n = a.n + 1",
            ["crm.accounts"],
        ),
        ("UPDATE orders, customers SET orders.status = 'x', customers.seen = 1", ["shop.customers", "shop.orders"]),
        ("DELETE FROM orders WHERE id IN (SELECT id FROM stale)", ["shop.orders"]),
        ("delete o from orders o join customers c on o.cid = c.id where c.gone", ["shop.orders"]),
        ("DELETE FROM orders, items USING orders JOIN items JOIN customers", ["shop.items", "shop.orders"]),
        ("LOAD DATA LOCAL INFILE '/tmp/a.csv' INTO TABLE staging FIELDS TERMINATED BY ','", ["shop.staging"]),
        ("LOAD DATA FROM S3 's3://bucket/key' REPLACE INTO TABLE crm.leads", ["crm.leads"]),
        ("TRUNCATE TABLE crm.leads", ["crm.leads"]),
        ("truncate orders", ["shop.orders"]),
        ("ALTER TABLE customers ADD COLUMN note TEXT", ["shop.customers"]),
        ("DROP TABLE IF EXISTS old_a, crm.old_b", ["crm.old_b", "shop.old_a"]),
        (
            "RENAME TABLE customers TO customers_old, customers_new TO customers",
            ["shop.customers", "shop.customers_new", "shop.customers_old"],
        ),
        ("-- nightly\n/* job 7 */ INSERT INTO t VALUES ('日本語', '🎉')", ["shop.t"]),
        ("INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE n = n + 1", ["shop.t"]),
        ("SELECT * FROM customers", []),
        ("select * from customers for update", []),
        ("SET autocommit = 0", []),
        ("COMMIT", []),
        ("DROP VIEW v", []),
        ("RENAME USER a TO b", []),
        ("CREATE INDEX i ON customers (name)", []),
    ],
)
def test_written_tables(statement, expected):
    assert [str(t) for t in written_tables(statement, "shop")] == expected
    assert [str(t) for t in parsed_tables(statement, "shop")] == expected  # the shortcut agrees


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO customers (id) VALUES (1)",
        "insert into crm.leads select * from x",
        "insert low_priority ignore into t set a = 1",
        "insert into t partition (p1) values (1)",
        "UPDATE orders SET a = 'x'",
        "update orders o set o.a = 1",
        "UPDATE t AS x SET a = 1",
        "DELETE FROM sessions WHERE id = 5",
        "DELETE FROM t",
        "delete quick from t order by id limit 5",
        "INSERT INTO Shop.Customers(id) VALUES (1)",
    ],
)
def test_the_single_table_shortcut_takes_the_common_writes_and_agrees_with_the_parser(statement):
    shortcut = single_table_write(statement, "shop")
    assert shortcut is not None and shortcut == parsed_tables(statement, "shop")


@pytest.mark.parametrize(
    "statement",
    [
        "update a join b on a.id = b.id set a.x = 1",
        "UPDATE a, b SET a.x = 1",
        "DELETE t1 FROM t1 JOIN t2",
        "delete from t using t join u",
        "update `a` set x = 1",
        "/* it's */ INSERT INTO t VALUES (1)",
        "INSERT INTO `a(b` VALUES (1)",
        "insert into a.b.c values (1)",
    ],
)
def test_the_single_table_shortcut_leaves_everything_else_to_the_parser(statement):
    assert single_table_write(statement, "shop") is None


@pytest.mark.parametrize(
    ("statement", "database", "reason"),
    [
        (
            "UPDATE orders JOIN customers ON orders.cid = customers.id SET status = 'x'",
            "shop",
            "without naming its table",
        ),
        ("INSERT INTO customers VALUES (1)", "", "no schema"),
        ("insert into a.b.c values (1)", "shop", "more than two parts"),
        ("INSERT INTO", "shop", "does not parse"),
    ],
)
def test_writes_that_cannot_be_mapped_are_refused_not_guessed(statement, database, reason):
    with pytest.raises(Unmapped) as caught:
        written_tables(statement, database)
    assert reason in str(caught.value)


def test_decode_batch_counts_and_positions_what_it_cannot_use():
    good = subscription_record(
        [
            audit_line("INSERT INTO customers VALUES (1, 'a,b')"),
            audit_line("insert into crm.leads select * from customers", database="shop"),
            audit_line("UPDATE customers SET x = 1", retcode=1205),  # failed: not a write
            "not an audit line",
            audit_line("SELECT 1"),
            audit_line("UPDATE a JOIN b ON a.id = b.id SET x = 1"),
            audit_line("", operation="CONNECT"),
            audit_line("DELETE FROM orders", operation="QUERY_DML"),
        ]
    )
    batch = decode_batch([kinesis(control_record(), 1), kinesis(good, 2), kinesis(b"garbage", 3)])
    assert (batch.records, batch.control_messages, batch.lines) == (3, 1, 8)
    assert [str(t) for t in batch.tables] == ["crm.leads", "shop.customers", "shop.orders"]
    assert [w.event.query_id for w in batch.writes] == [1001, 1001, 1001]
    assert len(batch.unparsed) == 1 and "record 495900000000000000000002 logEvents[3]" in batch.unparsed[0].where
    assert batch.unparsed[0].text == "not an audit line"
    assert len(batch.unmapped) == 1 and batch.unmapped[0].text == "UPDATE a JOIN b ON a.id = b.id SET x = 1"
    assert len(batch.bad_records) == 1 and "record 495900000000000000000003" in batch.bad_records[0].where
    assert batch.summary()["tables"] == ["crm.leads", "shop.customers", "shop.orders"]
    assert TableRef("shop", "orders") in batch.tables


def test_table_asset_is_watched_by_a_trigger_for_that_table_only():
    from airflow.sdk import DAG

    from cdc_sync.sources.audit_log.assets import table_asset
    from cdc_sync.sources.audit_log.trigger import AuditLogTrigger
    from cdc_sync.sql import UnsafeIdentifier

    asset = table_asset("shop_source", "shop.customers", stream_name="aurora-audit", poll_interval=2)
    assert asset.uri == "mysql://shop_source/shop/customers"
    (watcher,) = asset.watchers
    path, kwargs = watcher.trigger.serialize()
    assert path == "cdc_sync.sources.audit_log.trigger.AuditLogTrigger"
    assert kwargs["tables"] == ["shop.customers"] and kwargs["stream_name"] == "aurora-audit"
    with DAG("sync_customers_on_write", schedule=[asset]) as dag:
        pass
    assert list(dag.timetable.asset_condition.objects) == [asset]
    with pytest.raises(UnsafeIdentifier, match="'order items'"):
        table_asset("shop_source", "shop.order items", stream_name="aurora-audit")

    trigger = AuditLogTrigger(stream_name="aurora-audit", tables=["shop.customers"])
    lines = [audit_line("INSERT INTO orders VALUES (1)"), audit_line("UPDATE customers SET a = 1")]
    event = trigger.event_for(decode_batch([kinesis(subscription_record(lines))]))
    assert event is not None and event["tables"] == ["shop.customers"] and event["writes"] == 1
    assert trigger.event_for(decode_batch([kinesis(subscription_record(lines[:1]))])) is None


def test_statements_of_one_shape_share_their_written_tables_and_their_refusals():
    from cdc_sync.sources.audit_log.written import find_written_tables, statement_shape

    one = "INSERT INTO t1 (id, note) VALUES (12, 'O\\'Brien, it''s 1'), (-3.5e2, 0x1F)"
    two = "INSERT INTO t1 (id, note) VALUES (7, 'x'), (-4, 0x1F)"
    assert statement_shape(one) == statement_shape(two) == "INSERT INTO t1 (id, note) VALUES (?, ?), (-?, 0x1F)"
    assert statement_shape("UPDATE `t2` SET a = 1") == "UPDATE `t2` SET a = 1"  # backquotes: the text itself
    for statement in (one, two, "insert into db9.t3 select * from t4 where a > 1.5"):
        assert written_tables(statement, "shop") == find_written_tables(statement, "shop")
    for value in (1, 2):  # a refusal is remembered by shape too, and raised again
        with pytest.raises(Unmapped, match="without naming its table"):
            written_tables(f"UPDATE a JOIN b ON a.id = b.id SET x = {value}", "shop")
    assert written_tables("  select * from t where a = 'insert into x'", "shop") == ()


def test_a_record_of_several_gzip_members_is_read_whole():
    from cdc_sync.sources.audit_log.records import gunzip

    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd")) == b"abcd"
    with pytest.raises(EOFError):
        gunzip(gzip.compress(b"abcdef")[:-4])


def test_an_unterminated_string_costs_a_scan_not_a_backtracking_search():
    from cdc_sync.sources.audit_log.written import statement_shape

    cut = "INSERT INTO t VALUES ('" + "a b, " * 20_000 + " 12"  # cut at the plugin's query log limit
    assert statement_shape(cut).endswith(" ?")
