"""The seed's Kinesis stream: each binlog row change as JSON `{"schema", "table", "type", "row"}`.

`type` is the row event's class name (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent) and
`row` the row as python-mysql-replication gives it (`values`, or `before_values` and
`after_values`), as the seed's publisher wrote them; values that JSON has no type for are
written as text (DECIMAL digit for digit, DATETIME ISO 8601, TIME as the server prints it)
and bytes as base64. The partition key is the table and the primary key, so the changes of
one row stay in order on one shard.

PutRecords takes up to 500 records (5 MiB) a call and may refuse some of them
(`FailedRecordCount`, an `ErrorCode` per refused record, e.g. throughput exceeded): those, and
only those, are sent again, with backoff. A call never holds two changes of one row: the
second would be accepted while the first waits for its retry, and the row's changes would
reach the stream out of order; so a row's next change starts a new call. The capture saves its checkpoint only
after `flush` returned, so a crash before it publishes the same changes again (at least once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal

from cdc_sync.errors import TransientError
from cdc_sync.sources.dms.writer import mysql_time_text

log = logging.getLogger(__name__)

MAX_RECORDS = 500
MAX_BYTES = 5 * 1024 * 1024
MAX_ATTEMPTS = 8


def _json_value(value):
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return mysql_time_text(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def partition_key(schema: str, table: str, key: tuple) -> str:
    """`<schema>.<table>:<key values>`; hashed when longer than Kinesis's 256 characters."""
    text = f"{schema}.{table}:" + "|".join(str(v) for v in key)
    return text if len(text) <= 256 else hashlib.sha256(text.encode()).hexdigest()


class KinesisSink:
    """Buffers row changes and puts them on a Kinesis stream, retrying refused records."""

    def __init__(self, client, stream: str, *, sleep: Callable[[float], None] = time.sleep):
        self.client, self.sleep = client, sleep
        self.target = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        self.stream = stream
        self.buffer: list[dict] = []
        self.keys: set[str] = set()  # the partition keys in `buffer`
        self.bytes = 0
        self.published = 0
        self.retried = 0

    def add(self, schema: str, table: str, event_type: str, row: dict, key: tuple) -> None:
        data = json.dumps(
            {"schema": schema, "table": table, "type": event_type, "row": row}, default=_json_value
        ).encode("utf-8")
        partition = partition_key(schema, table, key)
        size = len(data) + len(partition)
        if len(self.buffer) >= MAX_RECORDS or self.bytes + size > MAX_BYTES or partition in self.keys:
            self.flush()
        self.buffer.append({"Data": data, "PartitionKey": partition})
        self.keys.add(partition)
        self.bytes += size

    def flush(self) -> None:
        """Put every buffered record; only refused ones are sent again (TransientError if they
        are still refused after MAX_ATTEMPTS calls)."""
        pending, attempt = self.buffer, 0
        self.buffer, self.bytes, self.keys = [], 0, set()
        while pending:
            attempt += 1
            response = self.client.put_records(Records=pending, **self.target)
            if not response.get("FailedRecordCount"):
                self.published += len(pending)
                return
            results = response["Records"]
            refused = [record for record, result in zip(pending, results, strict=True) if result.get("ErrorCode")]
            self.published += len(pending) - len(refused)
            codes = sorted({r["ErrorCode"] for r in results if r.get("ErrorCode")})
            if attempt >= MAX_ATTEMPTS:
                raise TransientError(
                    f"Kinesis stream {self.stream}: {len(refused)} record(s) still refused after {attempt} PutRecords "
                    f"calls ({', '.join(codes)}); the run is retried and the checkpoint stays where it was"
                )
            log.info(
                "Kinesis stream %s refused %d record(s) (%s); sending them again",
                self.stream,
                len(refused),
                ", ".join(codes),
            )
            self.retried += len(refused)
            self.sleep(min(0.1 * 2 ** (attempt - 1), 5.0))
            pending = refused
