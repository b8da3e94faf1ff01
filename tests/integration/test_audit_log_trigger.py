"""Audit lines put to CloudWatch Logs (moto server) reach the Kinesis stream through a
subscription filter; the AuditLogTrigger reads every shard and fires one event per batch
naming the tables written, resuming from its checkpoint after a restart.

moto writes the subscription payload as base64 text of the gzip bytes into the record; the
Kinesis API itself carries record data base64-encoded, so what a client reads back is the
gzip bytes themselves — what the real service delivers. The test checks that (gzip magic)
and feeds the records on to a two-shard stream unchanged, the way the real service spreads
them over shards.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from cdc_sync.sources.audit_log.kinesis import LostHistoryError
from cdc_sync.sources.audit_log.trigger import AuditLogTrigger
from tools.audit_standin import audit_line

pytestmark = [pytest.mark.services, pytest.mark.airflow]  # Airflow trigger code: run on 3.0 too

GROUP = "/aws/rds/cluster/shop/audit"


class MemoryCheckpoints:
    """Shard positions kept across trigger instances of one test (Airflow Variables need the triggerer)."""

    saved: dict[str, dict] = {}

    def __init__(self, key: str):
        self.key = key

    async def load(self) -> dict:
        return dict(self.saved.get(self.key, {}))

    async def save(self, positions: dict) -> None:
        self.saved[self.key] = dict(positions)


class TestTrigger(AuditLogTrigger):
    __test__ = False
    checkpoint_store = MemoryCheckpoints  # type: ignore[assignment]


class AuditPipe:
    """Log group → subscription filter → stream `relay`; records moved on to stream `audit` (2 shards)."""

    def __init__(self, stack, name: str):
        self.kinesis, self.logs = stack.boto3_client("kinesis"), stack.boto3_client("logs")
        self.relay, self.audit = f"relay-{name}", f"audit-{name}"
        self.kinesis.create_stream(StreamName=self.relay, ShardCount=1)
        self.kinesis.create_stream(StreamName=self.audit, ShardCount=2)
        arn = self.kinesis.describe_stream(StreamName=self.relay)["StreamDescription"]["StreamARN"]
        self.group = f"{GROUP}-{name}"
        self.logs.create_log_group(logGroupName=self.group)
        self.logs.create_log_stream(logGroupName=self.group, logStreamName="shop-instance-1")
        self.logs.put_subscription_filter(
            logGroupName=self.group,
            filterName="audit-to-kinesis",
            filterPattern="",
            destinationArn=arn,
            roleArn="arn:aws:iam::123456789012:role/CWLtoKinesisRole",
        )
        shard = self.kinesis.list_shards(StreamName=self.relay)["Shards"][0]["ShardId"]
        self.relay_iterator = self.kinesis.get_shard_iterator(
            StreamName=self.relay, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.sent = 0
        self.shards_used: set[str] = set()

    def write(self, lines: list[str]) -> None:
        now = int(time.time() * 1000)
        for start in range(0, len(lines), 100):  # CloudWatch batches: several events per record
            chunk = lines[start : start + 100]
            self.logs.put_log_events(
                logGroupName=self.group,
                logStreamName="shop-instance-1",
                logEvents=[{"timestamp": now, "message": line} for line in chunk],
            )
        page = self.kinesis.get_records(ShardIterator=self.relay_iterator)
        self.relay_iterator = page["NextShardIterator"]
        assert page["Records"], "the subscription filter delivered nothing"
        for record in page["Records"]:
            assert record["Data"][:2] == b"\x1f\x8b", "subscription records are gzip bytes"
            put = self.kinesis.put_record(StreamName=self.audit, Data=record["Data"], PartitionKey=f"k{self.sent}")
            self.shards_used.add(put["ShardId"])
            self.sent += 1


async def next_event(events, timeout: float = 60) -> dict:
    return (await asyncio.wait_for(anext(events), timeout)).payload


def test_trigger_fires_once_per_batch_with_the_written_tables(stack, unique_name):
    pipe = AuditPipe(stack, unique_name)
    first = [audit_line(f"INSERT INTO customers (id, name) VALUES ({i}, 'O\\'Brien, {i}')") for i in range(300)]
    first += [
        audit_line("update orders o join customers c on o.cid = c.id set o.note = '配送済み 🚚, ok' where c.id = 1"),
        audit_line("INSERT INTO crm.leads SELECT * FROM shop.customers WHERE id < 10"),
        audit_line("DELETE FROM refunds WHERE id = 1", retcode=1451),  # failed: no write
        audit_line("SELECT * FROM payments"),
        "this is not an audit line",
    ]
    pipe.write(first)

    async def scenario():
        trigger = TestTrigger(stream_name=pipe.audit, aws_conn_id="aws_default", poll_interval=0.2)
        events = trigger.run()
        one = await next_event(events)
        pipe.write([audit_line("DELETE FROM refunds WHERE id = 2"), audit_line("delete from `shop`.`refunds`")])
        two = await next_event(events)  # resuming saves the first batch's positions
        await events.aclose()  # "restart" before the second batch's positions are saved

        restarted = TestTrigger(stream_name=pipe.audit, aws_conn_id="aws_default", poll_interval=0.2)
        pipe.write([audit_line("TRUNCATE TABLE payments")])
        again = restarted.run()
        three = await next_event(again)
        await again.aclose()

        watching = TestTrigger(stream_name=pipe.audit, tables=["shop.payments"], poll_interval=0.2)
        only = watching.run()
        four = await next_event(only)
        await only.aclose()
        return one, two, three, four

    one, two, three, four = asyncio.run(scenario())
    assert len(pipe.shards_used) == 2, "the records were spread over both shards"
    assert one["tables"] == ["crm.leads", "shop.customers", "shop.orders"]
    assert (one["writes"], one["lines"], one["unparsed"]) == (302, 305, 1)
    assert two["tables"] == ["shop.refunds"] and two["writes"] == 2
    # after the restart the unsaved second batch is read again with the third: triggered twice, never missed
    assert three["tables"] == ["shop.payments", "shop.refunds"] and three["writes"] == 3
    # a watcher of one table (own checkpoint) reads from TRIM_HORIZON and fires for that table only
    assert four["tables"] == ["shop.payments"] and four["writes"] == 1


def test_positions_naming_a_shard_the_stream_does_not_have_stop_the_trigger(stack, unique_name):
    """Positions from before the stream was resharded and its old shards expired (moto's server
    lists only the stream's real shards): the trigger fails naming the stream, the shard and
    the Variable to delete after reconciling."""
    kinesis = stack.boto3_client("kinesis")
    stream = f"audit-gone-{unique_name}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    trigger = TestTrigger(stream_name=stream, poll_interval=0.1)
    key = trigger.checkpoints().key
    MemoryCheckpoints.saved[key] = {"shardId-000000000007": {"sequence": "1", "read_through": int(time.time() * 1000)}}

    async def scenario():
        events = trigger.run()
        try:
            await asyncio.wait_for(anext(events), 30)
        finally:
            await events.aclose()

    with pytest.raises(LostHistoryError) as caught:
        asyncio.run(scenario())
    message = str(caught.value)
    assert f"kinesis stream {stream} shard shardId-000000000007" in message
    assert "no longer in the stream" in message and f"delete the Airflow Variable {key}" in message
