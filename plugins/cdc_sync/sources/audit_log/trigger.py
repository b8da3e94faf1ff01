"""Deferrable event trigger: reads the audit-log Kinesis stream and fires when tables were written.

Usable in an ``AssetWatcher`` (see `table_asset`): every poll reads every shard from its
checkpoint (TRIM_HORIZON the first time), decodes the batch, and yields ONE event naming the
written tables (only the watched ones when `tables` is given) — many writes in a second are
one event, not one DAG run each. Shard positions are saved after the event is handed over,
so a restart re-reads at most the last batch: a sync may be triggered twice, never missed,
and the loads themselves are exactly once. Lost history (records trimmed before they were
read, see kinesis.StreamReader) fails the trigger with a message saying what to do.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from cdc_sync.sources.audit_log.batch import AuditBatch, decode_batch
from cdc_sync.sources.audit_log.kinesis import StreamReader, load_positions, save_positions

log = logging.getLogger(__name__)

SAVE_QUIET_POSITIONS_SECONDS = 600.0


class Checkpoints(Protocol):
    """Where the trigger keeps the last sequence number read per shard."""

    async def load(self) -> dict[str, Any]: ...

    async def save(self, positions: dict[str, Any]) -> None: ...


class VariableCheckpoints:
    """Shard positions in one Airflow Variable (JSON), read and written through the Task SDK."""

    def __init__(self, key: str):
        self.key = key

    async def load(self) -> dict[str, Any]:
        from airflow.sdk import Variable
        from asgiref.sync import sync_to_async

        value = await sync_to_async(Variable.get)(self.key, default=None, deserialize_json=True)
        return dict(value or {})

    async def save(self, positions: dict[str, Any]) -> None:
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

    def remedy(self) -> str:
        """What a person does about lost history: the syncs of those writes never ran."""
        key = checkpoint_key(self.stream_name, self.tables)
        return (
            "Writes in the gap triggered no sync: run the reconcile DAG (or re-snapshot) of the tables this "
            f"stream audits{' (' + ', '.join(self.tables) + ')' if self.tables else ''}, then delete the Airflow "
            f"Variable {key} to resume from the oldest record the stream keeps."
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        store = self.checkpoints()
        positions = load_positions(await store.load())
        hook = AwsBaseHook(aws_conn_id=self.aws_conn_id, client_type="kinesis")
        async with await hook.get_async_conn() as client:
            reader = StreamReader(
                client,
                self.stream_name,
                positions,
                checkpoint=f"Airflow Variable {checkpoint_key(self.stream_name, self.tables)}",
                remedy=self.remedy(),
                limit=self.max_records_per_call,
            )
            saved_at = time.monotonic()
            while True:
                records = await reader.read_all_shards()
                if records:
                    # CPU work of up to a second or so: off the triggerer's event loop
                    batch = await asyncio.to_thread(decode_batch, records)
                    event = self.event_for(batch)
                    if event is not None:
                        yield TriggerEvent(event)
                # the read-through times move on every poll; saving them now and then keeps a
                # quiet stream from looking unread for longer than its retention after a restart
                if records or time.monotonic() - saved_at >= SAVE_QUIET_POSITIONS_SECONDS:
                    await store.save(save_positions(reader.positions))
                    saved_at = time.monotonic()
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
