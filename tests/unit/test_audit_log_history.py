"""Kinesis lost history in the audit-log reader: trimmed positions, expired shards, orphans,
refused sequence numbers, expired iterators and resharding.

moto keeps every record and moves a split shard's records into its children, so these cases
are driven by answers in the Kinesis API's documented shapes (ListShards with
ParentShardId/AdjacentParentShardId, DescribeStreamSummary's RetentionPeriodHours, GetRecords
with MillisBehindLatest, no NextShardIterator at the end of a closed shard, ClientError codes).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from cdc_sync.sources.audit_log.kinesis import LostHistoryError, ShardPosition, StreamReader, load_positions

NOW = 1_765_000_000.0  # the reader's clock (seconds)
HOUR_MS = 3_600_000


def rec(seq: int, arrived_ms: int) -> dict:
    return {
        "SequenceNumber": f"4960{seq:040d}",
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(arrived_ms / 1000, UTC),
        "Data": f"d{seq}".encode(),
        "PartitionKey": "k",
    }


class RecordedKinesis:
    """Kinesis answers per shard in the documented shapes; the calls made are kept."""

    def __init__(self, shards: list[dict], records: dict[str, list[dict]], closed=(), errors=None, retention_h=24):
        self.shards, self.records, self.closed = shards, records, set(closed)
        self.errors = dict(errors or {})  # (operation, shard) -> code, raised once
        self.retention_h = retention_h
        self.calls: list[tuple] = []

    def _raise(self, operation: str, shard: str) -> None:
        code = self.errors.pop((operation, shard), None)
        if code:
            raise ClientError({"Error": {"Code": code, "Message": "recorded"}}, operation)

    async def describe_stream_summary(self, StreamName):
        self.calls.append(("DescribeStreamSummary",))
        return {"StreamDescriptionSummary": {"StreamName": StreamName, "RetentionPeriodHours": self.retention_h}}

    async def list_shards(self, StreamName=None, NextToken=None):
        self.calls.append(("ListShards", NextToken))
        if NextToken is None and len(self.shards) > 1:  # two pages
            return {"Shards": self.shards[:1], "NextToken": "page-2"}
        return {"Shards": self.shards[1:] if NextToken else self.shards}

    async def get_shard_iterator(self, StreamName, ShardId, ShardIteratorType, StartingSequenceNumber=None):
        self.calls.append(("GetShardIterator", ShardId, ShardIteratorType, StartingSequenceNumber))
        self._raise("GetShardIterator", ShardId)
        start = 0
        if StartingSequenceNumber is not None:  # AFTER a trimmed number: the oldest record kept
            start = sum(1 for r in self.records.get(ShardId, []) if r["SequenceNumber"] <= StartingSequenceNumber)
        return {"ShardIterator": f"{ShardId}|{start}"}

    async def get_records(self, ShardIterator, Limit):
        shard_id, start = ShardIterator.split("|")
        self._raise("GetRecords", shard_id)
        kept = self.records.get(shard_id, [])
        page = kept[int(start) : int(start) + 2]  # small pages
        end = int(start) + len(page)
        self.calls.append(("GetRecords", shard_id, len(page)))
        behind = 0 if end >= len(kept) else 1000
        if shard_id in self.closed and end >= len(kept):
            return {"Records": page, "MillisBehindLatest": 0}  # closed and read to its end
        return {"Records": page, "NextShardIterator": f"{shard_id}|{end}", "MillisBehindLatest": behind}


def reader(client, positions: dict) -> StreamReader:
    return StreamReader(
        client,
        "shop-audit",
        load_positions(positions),
        checkpoint="Airflow Variable cdc_sync.audit_log.shop-audit.x.positions",
        remedy="Run the reconcile DAG.",
        clock=lambda: NOW,
    )


def read(r: StreamReader) -> list[str]:
    return [record.sequence_number for record in asyncio.run(r.read_all_shards())]


def shard(shard_id: str, parent: str | None = None, adjacent: str | None = None) -> dict:
    out = {"ShardId": shard_id, "HashKeyRange": {}, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
    if parent:
        out["ParentShardId"] = parent
    if adjacent:
        out["AdjacentParentShardId"] = adjacent
    return out


NOW_MS = int(NOW * 1000)


def test_a_position_read_through_longer_ago_than_the_retention_stops_the_reader():
    kept = [rec(9, NOW_MS - 2 * HOUR_MS)]  # the records after seq 1 up to 9 were trimmed
    client = RecordedKinesis([shard("shardId-0")], {"shardId-0": kept})
    stale = {"shardId-0": {"sequence": rec(1, 0)["SequenceNumber"], "read_through": NOW_MS - 25 * HOUR_MS}}
    with pytest.raises(LostHistoryError) as caught:
        read(reader(client, stale))
    message = str(caught.value)
    assert "kinesis stream shop-audit shard shardId-0" in message
    assert "retention period (24 h)" in message and "may have been trimmed" in message
    assert "Airflow Variable cdc_sync.audit_log.shop-audit.x.positions" in message
    assert message.endswith("Run the reconcile DAG.")
    assert not [c for c in client.calls if c[0] == "GetShardIterator"], "no record is read past the gap"


def test_a_trimmed_last_record_is_no_gap_while_the_shard_was_read_within_the_retention():
    kept = [rec(9, NOW_MS - HOUR_MS), rec(10, NOW_MS - HOUR_MS + 5)]
    client = RecordedKinesis([shard("shardId-0")], {"shardId-0": kept}, retention_h=48)
    # its own record is gone (read 30 h ago), but the shard was read through 47 h ago: all after it is kept
    positions = {"shardId-0": {"sequence": rec(1, 0)["SequenceNumber"], "read_through": NOW_MS - 47 * HOUR_MS}}
    r = reader(client, positions)
    assert read(r) == [kept[0]["SequenceNumber"], kept[1]["SequenceNumber"]]
    assert r.positions["shardId-0"] == ShardPosition(kept[1]["SequenceNumber"], NOW_MS, False)


def test_a_shard_in_the_positions_that_expired_unread_stops_the_reader():
    client = RecordedKinesis([shard("shardId-2", parent="shardId-0")], {"shardId-2": [rec(5, NOW_MS)]})
    positions = {"shardId-0": {"sequence": rec(1, 0)["SequenceNumber"], "read_through": NOW_MS - HOUR_MS}}
    with pytest.raises(LostHistoryError, match="shard shardId-0: in the positions .* no longer in the stream"):
        read(reader(client, positions))


def test_a_finished_shard_that_expired_is_forgotten_and_its_children_read():
    kept = [rec(5, NOW_MS)]
    client = RecordedKinesis([shard("shardId-2", parent="shardId-0")], {"shardId-2": kept})
    done = {"sequence": rec(1, 0)["SequenceNumber"], "read_through": NOW_MS - 30 * HOUR_MS, "finished": True}
    r = reader(client, {"shardId-0": done})
    assert read(r) == [kept[0]["SequenceNumber"]]
    assert set(r.positions) == {"shardId-2"}


def test_children_of_shards_never_read_and_gone_are_lost_history():
    client = RecordedKinesis(
        [shard("shardId-1"), shard("shardId-5", parent="shardId-3", adjacent="shardId-4")],
        {"shardId-1": [], "shardId-5": [rec(7, NOW_MS)]},
    )
    positions = {"shardId-1": {"sequence": None, "read_through": NOW_MS - HOUR_MS}}
    with pytest.raises(LostHistoryError, match="shard shardId-5: descends from shardId-3, shardId-4"):
        read(reader(client, positions))


def test_a_refused_sequence_number_means_the_positions_belong_to_another_stream():
    client = RecordedKinesis(
        [shard("shardId-0")],
        {"shardId-0": [rec(1, NOW_MS)]},
        errors={("GetShardIterator", "shardId-0"): "InvalidArgumentException"},
    )
    positions = {"shardId-0": {"sequence": "49600000", "read_through": NOW_MS - HOUR_MS}}
    with pytest.raises(LostHistoryError, match="refuses the saved sequence number 49600000"):
        read(reader(client, positions))


def test_a_shard_gone_between_listing_and_reading_is_lost_history():
    client = RecordedKinesis(
        [shard("shardId-0")],
        {"shardId-0": [rec(1, NOW_MS)]},
        errors={("GetShardIterator", "shardId-0"): "ResourceNotFoundException"},
    )
    with pytest.raises(LostHistoryError, match="no longer exists"):
        read(reader(client, {"shardId-0": {"sequence": None, "read_through": NOW_MS - HOUR_MS}}))


def test_an_expired_iterator_is_renewed_after_the_last_record_read():
    kept = [rec(i, NOW_MS - 10 + i) for i in range(1, 6)]
    client = RecordedKinesis(
        [shard("shardId-0")], {"shardId-0": kept}, errors={("GetRecords", "shardId-0"): "ExpiredIteratorException"}
    )
    r = reader(client, {})
    assert read(r) == [k["SequenceNumber"] for k in kept]
    renewals = [c for c in client.calls if c[0] == "GetShardIterator"]
    assert [c[2] for c in renewals] == ["TRIM_HORIZON", "TRIM_HORIZON"]  # nothing read yet when it expired


def test_resharding_reads_parents_to_their_end_before_their_children():
    parent, left, right = [rec(1, NOW_MS - 50), rec(2, NOW_MS - 40), rec(3, NOW_MS - 30)], [rec(4, NOW_MS)], []
    client = RecordedKinesis(
        [shard("shardId-0"), shard("shardId-1", parent="shardId-0"), shard("shardId-2", parent="shardId-0")],
        {"shardId-0": parent, "shardId-1": left, "shardId-2": right},
        closed={"shardId-0"},
    )
    positions = {"shardId-0": {"sequence": parent[0]["SequenceNumber"], "read_through": NOW_MS - HOUR_MS}}
    r = reader(client, positions)
    assert read(r) == [parent[1]["SequenceNumber"], parent[2]["SequenceNumber"], left[0]["SequenceNumber"]]
    assert r.positions["shardId-0"].finished and not r.positions["shardId-1"].finished
    order = [c[1] for c in client.calls if c[0] == "GetShardIterator"]
    assert order == ["shardId-0", "shardId-1", "shardId-2"]
    assert read(r) == [], "a finished parent is not read again"


def test_a_bare_sequence_number_from_older_positions_is_read_after():
    kept = [rec(1, NOW_MS - 5), rec(2, NOW_MS)]
    client = RecordedKinesis([shard("shardId-0")], {"shardId-0": kept})
    r = reader(client, {"shardId-0": kept[0]["SequenceNumber"]})
    assert read(r) == [kept[1]["SequenceNumber"]]


def test_empty_pages_behind_the_tip_are_followed_a_few_times_per_poll_not_forever():
    class EmptyBehind(RecordedKinesis):
        async def get_records(self, ShardIterator, Limit):
            self.calls.append(("GetRecords",))
            return {"Records": [], "NextShardIterator": ShardIterator, "MillisBehindLatest": 5000}

    client = EmptyBehind([shard("shardId-0")], {})
    r = reader(client, {})
    assert read(r) == []
    assert len([c for c in client.calls if c[0] == "GetRecords"]) == 10
    assert r.positions["shardId-0"].read_through is None, "not caught up: no read-through time"
