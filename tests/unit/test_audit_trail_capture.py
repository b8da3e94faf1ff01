"""The audit-trail capture without servers: which events become rows (`events: all|writes`), the
rows' values, and a gap in the stream's history stopping the run before anything moves.

Kinesis answers come from test_audit_log_history.RecordedKinesis (the API's documented shapes);
S3 is a dict (moto is used in tests/integration/test_audit_trail.py)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from cdc_sync.sources.audit_log.kinesis import LostHistoryError
from cdc_sync.sources.audit_log.trail import TrailCapture, capture_trail
from tests.unit.test_audit_log_history import HOUR_MS, NOW, NOW_MS, RecordedKinesis, rec, shard
from tools.audit_standin import audit_line, control_record, subscription_record


class MemoryS3:
    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def get_object(self, Bucket, Key):
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, Bucket, Key, Body):
        self.objects[Key] = Body

    def head_object(self, Bucket, Key):
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")


class Client:
    """RecordedKinesis as an async context manager, the way the hook hands out a client."""

    def __init__(self, kinesis):
        self.kinesis = kinesis

    async def __aenter__(self):
        return self.kinesis

    async def __aexit__(self, *exc):
        return False


def spec(events: str = "all") -> TrailCapture:
    return TrailCapture(
        pipeline="trail",
        stream="shop-audit",
        aws_conn_id=None,
        bucket="landing",
        table_prefix="audit/ops/trail/",
        checkpoint_key="cdc-sync/checkpoints/trail/audit_log.json",
        problems_prefix="cdc-sync/checkpoints/trail/problems/",
        events=events,
    )


LINES = [
    audit_line("INSERT INTO customers VALUES (1, 'a,b')", query_id=1, timestamp="1764979200000001"),
    audit_line("SELECT * FROM customers", query_id=2, user="analyst"),
    audit_line("UPDATE orders SET x = 1", query_id=3, retcode=1205),
    audit_line("UPDATE a JOIN b ON a.id = b.id SET x = 1", query_id=4),
    audit_line("", query_id=5, operation="CONNECT"),
]


def kinesis_with(records: list[bytes]) -> RecordedKinesis:
    items = [dict(rec(n + 1, NOW_MS - 1000 + n), Data=data) for n, data in enumerate(records)]
    return RecordedKinesis([shard("shardId-0")], {"shardId-0": items})


def run(events: str, s3: MemoryS3, kinesis: RecordedKinesis):
    async def factory():
        return Client(kinesis)

    return capture_trail(
        spec(events), s3, client_factory=factory, clock=lambda: NOW, now=lambda: datetime(2026, 12, 6, tzinfo=UTC)
    )


def rows(s3: MemoryS3, key: str) -> dict[int, dict]:
    table = pq.read_table(io.BytesIO(s3.objects[key])).to_pylist()
    return {row["query_id"]: row for row in table}


@pytest.mark.parametrize(("events", "kept"), [("all", {1, 2, 3, 4, 5}), ("writes", {1, 4})])
def test_the_trail_keeps_every_event_or_only_the_writes(events, kept):
    s3 = MemoryS3()
    report = run(events, s3, kinesis_with([control_record(), subscription_record(LINES, first_id=100)]))
    assert report.key == "audit/ops/trail/20261206-000000000.parquet"
    assert (report.records, report.lines, report.written, report.unmapped) == (2, 5, len(kept), 1)
    written = rows(s3, report.key)
    assert set(written) == kept
    first = written[1]
    assert first["Op"] == "I" and first["cdc_commit_ts"] == "2025-12-06 00:00:00.000001"
    assert first["event_time"] == datetime(2025, 12, 6, 0, 0, 0, 1, tzinfo=UTC)
    assert (first["event_id"], first["tables_written"], first["statement"]) == (
        "100",
        "shop.customers",
        "INSERT INTO customers VALUES (1, 'a,b')",
    )
    assert written[4]["tables_written"] is None, "a write whose tables are not known is NULL, not guessed"
    if events == "all":
        assert (written[2]["tables_written"], written[2]["user_name"]) == ("", "analyst")
        assert (written[3]["tables_written"], written[3]["retcode"]) == ("", 1205)
        assert written[5]["operation"] == "CONNECT"
    checkpoint = json.loads(s3.objects["cdc-sync/checkpoints/trail/audit_log.json"])
    assert checkpoint["pending"] is None and checkpoint["last_file"] == "20261206-000000000.parquet"
    assert checkpoint["positions"]["shardId-0"]["sequence"] == rec(2, 0)["SequenceNumber"]
    problems = json.loads(s3.objects[report.problems_key])
    assert [p["text"] for p in problems["unmapped"]] == ["UPDATE a JOIN b ON a.id = b.id SET x = 1"]


def test_a_gap_in_the_stream_stops_the_run_before_anything_is_landed_or_moved():
    s3 = MemoryS3()
    key = "cdc-sync/checkpoints/trail/audit_log.json"
    stale = {"shardId-0": {"sequence": rec(1, 0)["SequenceNumber"], "read_through": NOW_MS - 30 * HOUR_MS}}
    s3.objects[key] = json.dumps({"positions": stale, "last_file": None, "pending": None}).encode()
    before = dict(s3.objects)
    with pytest.raises(LostHistoryError) as caught:
        run("all", s3, kinesis_with([subscription_record(LINES)]))
    message = str(caught.value)
    assert f"positions: s3://landing/{key}" in message and f"delete s3://landing/{key}" in message
    assert "The trail cannot get those events back" in message
    assert s3.objects == before
