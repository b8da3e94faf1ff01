"""Deferrable event trigger: reads the audit-log Kinesis stream and fires when tables were written.

Usable in an ``AssetWatcher`` (see `table_asset`): every poll reads every shard from its
checkpoint (TRIM_HORIZON the first time), decodes the batch, and yields ONE event naming the
written tables (only the watched ones when `tables` is given) — many writes in a second are
one event, not one DAG run each. Shard positions are saved after the event is handed over,
so a restart re-reads at most the last batch: a sync may be triggered twice, never missed,
and the loads themselves are exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from cdc_sync.sources.audit_log.batch import AuditBatch, KinesisRecord, decode_batch

log = logging.getLogger(__name__)


class Checkpoints(Protocol):
    """Where the trigger keeps the last sequence number read per shard."""

    async def load(self) -> dict[str, str]: ...

    async def save(self, positions: dict[str, str]) -> None: ...


class VariableCheckpoints:
    """Shard positions in one Airflow Variable (JSON), read and written through the Task SDK."""

    def __init__(self, key: str):
        self.key = key

    async def load(self) -> dict[str, str]:
        from airflow.sdk import Variable
        from asgiref.sync import sync_to_async

        value = await sync_to_async(Variable.get)(self.key, default=None, deserialize_json=True)
        return dict(value or {})

    async def save(self, positions: dict[str, str]) -> None:
        from airflow.sdk import Variable
        from asgiref.sync import sync_to_async

        await sync_to_async(Variable.set)(self.key, positions, serialize_json=True)


def checkpoint_key(stream_name: str, tables: list[str] | None) -> str:
    """One Variable per (stream, watched tables): each watcher keeps its own positions."""
    watched = ",".join(sorted(tables)) if tables else "*"
    digest = hashlib.sha256(watched.encode()).hexdigest()[:12]
    return f"cdc_sync.audit_log.{stream_name}.{digest}.positions"


class AuditLogTrigger(BaseEventTrigger):
    """Yields ``{"tables": [...], ...}`` once per batch of audit records that wrote watched tables."""

    checkpoint_store = VariableCheckpoints

    def __init__(
        self,
        *,
        stream_name: str,
        aws_conn_id: str | None = "aws_default",
        tables: list[str] | None = None,
        poll_interval: float = 5.0,
        max_records_per_call: int = 10_000,
    ):
        super().__init__()
        self.stream_name = stream_name
        self.aws_conn_id = aws_conn_id
        self.tables = sorted(tables) if tables else None
        self.poll_interval = poll_interval
        self.max_records_per_call = max_records_per_call

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "stream_name": self.stream_name,
                "aws_conn_id": self.aws_conn_id,
                "tables": self.tables,
                "poll_interval": self.poll_interval,
                "max_records_per_call": self.max_records_per_call,
            },
        )

    def checkpoints(self) -> Checkpoints:
        return self.checkpoint_store(checkpoint_key(self.stream_name, self.tables))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        store = self.checkpoints()
        positions = await store.load()
        hook = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="kinesis")
        async with await hook.get_async_conn() as client:
            reader = _StreamReader(client, self.stream_name, positions, self.max_records_per_call)
            while True:
                records = await reader.read_all_shards()
                if records:
                    batch = decode_batch(records)
                    event = self.event_for(batch)
                    if event is not None:
                        yield TriggerEvent(event)
                    await store.save(reader.positions)
                await asyncio.sleep(self.poll_interval)

    def event_for(self, batch: AuditBatch) -> dict | None:
        """The event payload for a batch, or None when it wrote none of the watched tables."""
        summary = batch.summary()
        for kind in ("bad_records", "unparsed", "unmapped"):
            if summary[kind]:
                log.warning(
                    "%s: %d %s in this batch (first: %s)", self.stream_name, len(summary[kind]), kind, summary[kind][0]
                )
        writes = batch.writes
        if self.tables is not None:
            watched = set(self.tables)
            writes = [w for w in writes if any(str(t) in watched for t in w.tables)]
        if not writes:
            return None
        written = sorted({str(t) for w in writes for t in w.tables if self.tables is None or str(t) in self.tables})
        times = [w.event.timestamp for w in writes]
        return {
            "stream": self.stream_name,
            "tables": written,
            "records": summary["records"],
            "lines": summary["lines"],
            "writes": len(writes),
            "first_write": min(times).isoformat(),
            "last_write": max(times).isoformat(),
            "unparsed": len(summary["unparsed"]) + len(summary["bad_records"]),
            "unmapped": summary["unmapped"][:20],
        }


class _StreamReader:
    """Reads every shard of a stream from saved positions; remembers the iterators between polls."""

    def __init__(self, client: Any, stream_name: str, positions: dict[str, str], limit: int):
        self.client = client
        self.stream_name = stream_name
        self.positions = dict(positions)
        self.limit = limit
        self.iterators: dict[str, str | None] = {}

    async def _shards(self) -> list[str]:
        shards: list[str] = []
        token = None
        while True:
            kwargs = {"NextToken": token} if token else {"StreamName": self.stream_name}
            page = await self.client.list_shards(**kwargs)
            shards.extend(s["ShardId"] for s in page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return shards

    async def _iterator(self, shard_id: str) -> str:
        seq = self.positions.get(shard_id)
        kwargs: dict[str, Any] = {"StreamName": self.stream_name, "ShardId": shard_id}
        if seq:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seq)
        else:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        return (await self.client.get_shard_iterator(**kwargs))["ShardIterator"]

    async def read_all_shards(self) -> list[KinesisRecord]:
        records: list[KinesisRecord] = []
        for shard_id in await self._shards():
            if shard_id in self.iterators and self.iterators[shard_id] is None:
                continue  # a closed shard read to its end
            records.extend(await self._read_shard(shard_id))
        return records

    async def _read_shard(self, shard_id: str) -> list[KinesisRecord]:
        records: list[KinesisRecord] = []
        iterator = self.iterators.get(shard_id) or await self._iterator(shard_id)
        while iterator:
            try:
                page = await self.client.get_records(ShardIterator=iterator, Limit=self.limit)
            except self.client.exceptions.ExpiredIteratorException:
                iterator = await self._iterator(shard_id)
                continue
            for item in page.get("Records", []):
                records.append(KinesisRecord(self.stream_name, shard_id, item["SequenceNumber"], item["Data"]))
                self.positions[shard_id] = item["SequenceNumber"]
            iterator = page.get("NextShardIterator")
            if not page.get("Records") or not page.get("MillisBehindLatest"):
                break
        self.iterators[shard_id] = iterator
        return records
