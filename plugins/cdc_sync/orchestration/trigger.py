"""Trigger that waits, in the triggerer, until a table folder has a landed object past its watermark."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from cdc_sync.sources.listing import Cursor, any_new_file


class NewObjectsTrigger(BaseTrigger):
    """Polls the listing cursors of a pipeline's tables; one ListObjectsV2 call per cursor
    and poke when nothing is new. Fires `found` with the tables that have new files, or
    `timeout` at the deadline."""

    def __init__(
        self,
        *,
        aws_conn_id: str | None,
        bucket: str,
        file_format: str,
        cursors: list[dict],
        table_prefixes: dict[str, str],
        poke_interval: float,
        deadline: str,
    ):
        super().__init__()
        self.aws_conn_id = aws_conn_id
        self.bucket = bucket
        self.file_format = file_format
        self.cursors = cursors
        self.table_prefixes = table_prefixes
        self.poke_interval = poke_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "aws_conn_id": self.aws_conn_id,
                "bucket": self.bucket,
                "file_format": self.file_format,
                "cursors": self.cursors,
                "table_prefixes": self.table_prefixes,
                "poke_interval": self.poke_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        cursors = [Cursor(**c) for c in self.cursors]
        deadline = datetime.fromisoformat(self.deadline)
        hook = S3Hook(aws_conn_id=self.aws_conn_id)
        async with await hook.get_async_conn() as client:
            while True:
                tables = []
                for cursor in cursors:
                    if cursor.table in tables:
                        continue
                    found = await any_new_file(
                        client, self.bucket, cursor, self.table_prefixes[cursor.table], self.file_format
                    )
                    if found is not None:
                        self.log.info("new file for %s: s3://%s/%s", cursor.table, self.bucket, found.key)
                        tables.append(cursor.table)
                if tables:
                    yield TriggerEvent({"status": "found", "tables": tables})
                    return
                if datetime.now(UTC) >= deadline:
                    yield TriggerEvent({"status": "timeout"})
                    return
                await asyncio.sleep(self.poke_interval)
