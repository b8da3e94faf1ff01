"""Read every shard of a Kinesis stream from saved positions, and stop loudly on lost history.

Shared by the trigger (positions in an Airflow Variable) and the audit-trail capture
(positions in an S3 checkpoint). Per shard the position holds the last sequence number read,
the time through which the shard is known to be read (`read_through`: the last record's
ApproximateArrivalTimestamp, or the time of a GetRecords call that answered
MillisBehindLatest 0), and whether a closed shard was read to its end.

Kinesis deletes records older than the stream's retention period (RetentionPeriodHours, 24 by
default) without telling the reader: an iterator AFTER a trimmed sequence number just starts
at the oldest record kept. So the gap is found by time instead: records that arrived after
`read_through` are all still there only while ``now - retention < read_through``. Lost history
is raised (never skipped) when

* a shard's `read_through` is older than the retention period (the reader was stopped longer
  than that: records after the position may have been trimmed);
* a shard in the positions, not read to its end, is no longer listed (a closed shard expires
  one retention period after it closed), or ResourceNotFoundException names it;
* a listed shard descends from shards neither listed nor in the positions, once the positions
  are not empty (its ancestors expired unread);
* GetShardIterator refuses the saved sequence number (InvalidArgumentException: it is not a
  sequence number of that shard — the stream was deleted and created again).

An expired iterator (ExpiredIteratorException, 5 minutes) is renewed from the position, after
the same time check. Positions never read before start at TRIM_HORIZON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from cdc_sync.errors import SetupError
from cdc_sync.sources.audit_log.batch import KinesisRecord

log = logging.getLogger(__name__)


MAX_EMPTY_PAGES = 10  # empty GetRecords pages in a row, still behind: the shard waits for the next poll


class LostHistoryError(SetupError):
    """Stream records were (or may have been) trimmed before they were read; the message says what to do."""


@dataclass
class ShardPosition:
    """Where reading a shard stands: last sequence number, read-through time (ms), finished."""

    sequence: str | None = None
    read_through: int | None = None
    finished: bool = False

    @classmethod
    def from_saved(cls, value: Any) -> ShardPosition:
        if isinstance(value, str) or value is None:  # a bare sequence number: read-through time not known
            return cls(sequence=value)
        return cls(value.get("sequence"), value.get("read_through"), bool(value.get("finished", False)))

    def to_saved(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "read_through": self.read_through, "finished": self.finished}


def load_positions(saved: dict[str, Any] | None) -> dict[str, ShardPosition]:
    return {shard: ShardPosition.from_saved(value) for shard, value in (saved or {}).items()}


def save_positions(positions: dict[str, ShardPosition]) -> dict[str, dict[str, Any]]:
    return {shard: position.to_saved() for shard, position in sorted(positions.items())}


def _code(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


def _ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, (int, float)):
        return int(value * 1000)
    return None


def _when(ms: int | None) -> str:
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


class StreamReader:
    """Reads every shard of `stream_name` (an aiobotocore Kinesis client) from `positions`.

    `checkpoint` names where the positions are kept and `remedy` what a person should do
    about lost history; both go into every LostHistoryError message."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        positions: dict[str, ShardPosition],
        *,
        checkpoint: str,
        remedy: str,
        limit: int = 10_000,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.stream_name = stream_name
        self.positions = positions
        self.checkpoint = checkpoint
        self.remedy = remedy
        self.limit = limit
        self.clock = clock
        self.iterators: dict[str, str] = {}
        self.retention_ms: int | None = None

    def _lost(self, shard_id: str, what: str) -> LostHistoryError:
        return LostHistoryError(
            f"kinesis stream {self.stream_name} shard {shard_id}: {what}. The audit events in the gap are "
            f"lost (positions: {self.checkpoint}). {self.remedy}"
        )

    async def _retention_ms(self) -> int:
        if self.retention_ms is None:
            summary = await self.client.describe_stream_summary(StreamName=self.stream_name)
            hours = summary["StreamDescriptionSummary"]["RetentionPeriodHours"]
            self.retention_ms = int(hours) * 3_600_000
        return self.retention_ms

    async def _shards(self) -> list[dict]:
        shards: list[dict] = []
        token = None
        while True:
            kwargs = {"NextToken": token} if token else {"StreamName": self.stream_name}
            page = await self.client.list_shards(**kwargs)
            shards.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards

    def _check_lineage(self, shards: list[dict]) -> None:
        listed = {s["ShardId"] for s in shards}
        for shard_id, position in sorted(self.positions.items()):
            if shard_id not in listed and not position.finished:
                raise self._lost(
                    shard_id,
                    f"in the positions (last read {_when(position.read_through)}) but no longer in the stream: "
                    "the shard was closed and expired before it was read to its end",
                )
        if not self.positions:
            return  # the first read starts at the oldest record kept: no history of ours to miss
        known = listed | set(self.positions)
        for shard in shards:
            parents = [str(shard[k]) for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)]
            if shard["ShardId"] not in self.positions and parents and not set(parents) & known:
                raise self._lost(
                    shard["ShardId"],
                    f"descends from {', '.join(parents)}, which were never read and are no longer in the stream "
                    "(their records expired unread)",
                )
        for shard_id in [s for s, p in self.positions.items() if p.finished and s not in listed]:
            del self.positions[shard_id]  # expired after it was read to its end: nothing to keep

    async def _check_time(self, shard_id: str, position: ShardPosition) -> None:
        if position.read_through is None:
            return
        retention = await self._retention_ms()
        horizon = int(self.clock() * 1000) - retention
        if position.read_through < horizon:
            raise self._lost(
                shard_id,
                f"read through {_when(position.read_through)} only, longer ago than the stream's retention "
                f"period ({retention // 3_600_000} h): records after sequence number {position.sequence} "
                "may have been trimmed unread",
            )

    async def _new_iterator(self, shard_id: str) -> str:
        position = self.positions.setdefault(shard_id, ShardPosition())
        await self._check_time(shard_id, position)
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if position.sequence:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=position.sequence)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        try:
            return (await self.client.get_shard_iterator(**kwargs))["ShardIterator"]
        except ClientError as error:
            code = _code(error)
            if code == "InvalidArgumentException" and position.sequence:
                raise self._lost(
                    shard_id,
                    f"GetShardIterator refuses the saved sequence number {position.sequence} "
                    f"({error.response.get('Error', {}).get('Message', '')}): the positions are not this "
                    "stream's (was it deleted and created again?)",
                ) from error
            if code == "ResourceNotFoundException":
                raise self._lost(shard_id, "the shard no longer exists (it expired)") from error
            raise

    @staticmethod
    def _reading_order(shards: list[dict]) -> list[dict]:
        """Parents before children (a child's records come after its parents')."""
        by_id = {s["ShardId"]: s for s in shards}
        order: list[dict] = []
        placed: set[str] = set()

        def place(shard: dict) -> None:
            if shard["ShardId"] in placed:
                return
            placed.add(shard["ShardId"])
            for key in ("ParentShardId", "AdjacentParentShardId"):
                if shard.get(key) in by_id:
                    place(by_id[shard[key]])
            order.append(shard)

        for shard in sorted(shards, key=lambda s: s["ShardId"]):
            place(shard)
        return order

    async def read_all_shards(self) -> list[KinesisRecord]:
        """Every record after the positions, on every shard; the positions move past them."""
        shards = await self._shards()
        self._check_lineage(shards)
        records: list[KinesisRecord] = []
        for shard in self._reading_order(shards):
            shard_id = shard["ShardId"]
            if self.positions.get(shard_id, ShardPosition()).finished:
                continue
            parents = [shard.get(k) for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)]
            if any(p in self.positions and not self.positions[p].finished for p in parents):
                continue  # a parent still has records to read: the child's come after them
            records.extend(await self._read_shard(shard_id))
        return records

    async def _read_shard(self, shard_id: str) -> list[KinesisRecord]:
        records: list[KinesisRecord] = []
        iterator: str | None = self.iterators.get(shard_id) or await self._new_iterator(shard_id)
        position = self.positions[shard_id]
        empty_pages = 0
        while iterator:
            asked_at = int(self.clock() * 1000)
            try:
                page = await self.client.get_records(ShardIterator=iterator, Limit=self.limit)
            except ClientError as error:
                if _code(error) == "ExpiredIteratorException":
                    log.info("%s: iterator of shard %s expired; renewed", self.stream_name, shard_id)
                    iterator = await self._new_iterator(shard_id)
                    continue
                if _code(error) == "ResourceNotFoundException":
                    raise self._lost(shard_id, "the shard no longer exists (it expired)") from error
                raise
            items = page.get("Records", [])
            for item in items:
                records.append(KinesisRecord(self.stream_name, shard_id, item["SequenceNumber"], item["Data"]))
            if items:
                position.sequence = items[-1]["SequenceNumber"]
                arrived = _ms(items[-1].get("ApproximateArrivalTimestamp"))
                if arrived is not None:
                    position.read_through = max(position.read_through or 0, arrived)
            iterator = page.get("NextShardIterator")
            behind = page.get("MillisBehindLatest")
            if iterator is None:
                position.finished = True  # a closed shard read to its end
                position.read_through = max(position.read_through or 0, asked_at)
                break
            if behind == 0:
                position.read_through = max(position.read_through or 0, asked_at)
                break
            empty_pages = 0 if items else empty_pages + 1
            if not items and (behind is None or empty_pages >= MAX_EMPTY_PAGES):
                break  # the rest on the next poll (GetRecords allows 5 calls a second per shard)
            if len(records) >= self.limit:
                break
        if iterator:
            self.iterators[shard_id] = iterator
        else:
            self.iterators.pop(shard_id, None)
        return records
