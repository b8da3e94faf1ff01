"""One capture run: read every shard of a DynamoDB stream from its checkpoint and land the
changes as one DMS-format CDC file under the table's prefix.

Shards follow DynamoDB Streams' rules: DescribeStream is paged (ExclusiveStartShardId, at most
10 calls a second), a child shard is read only after its parent is finished, a shard never
read starts at TRIM_HORIZON and one with a checkpoint AFTER_SEQUENCE_NUMBER; GetRecords pages
(up to 1,000 records) are followed until the shard is finished (closed: no
NextShardIterator), caught up (open: an empty page) or the run's budget is spent; an expired
iterator (15 minutes) is renewed after the last record read.

Exactly once: the checkpoint (an S3 object) first records the file about to be written and
the positions it covers; the file is put; then the checkpoint takes those positions. A run
that finds a pending file already on S3 commits its positions without reading again, and
one that does not find it reads again from the old positions.

Lost history stops the run: a checkpointed shard that DescribeStream no longer lists, or a
TrimmedDataAccessException, means records were trimmed (24 hours) before they were read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from cdc_sync.errors import SetupError
from cdc_sync.sources.dms.writer import Change, cdc_file_name, write_change_file
from cdc_sync.sources.dynamodb_stream.filters import FilterCriteria
from cdc_sync.sources.dynamodb_stream.images import ItemColumns
from cdc_sync.sources.s3_objects import object_exists, read_json, write_json

log = logging.getLogger(__name__)

DESCRIBE_CALLS_PER_SECOND = 10
GET_RECORDS_LIMIT = 1000


RESNAPSHOT = (
    "Re-snapshot the table: trigger the pipeline's DAG with --conf '{\"resnapshot\": true}' (a Scan of "
    "the table tied to the stream's current end; it replaces the checkpoint)"
)


class LostHistoryError(SetupError):
    """Stream records were trimmed before they were read; the message says what to do."""


@dataclass
class Budget:
    """How much one run reads before it lands what it has."""

    max_records: int = 100_000
    max_seconds: float = 300.0


@dataclass
class CaptureReport:
    """What a run did, for the task log and the tests."""

    key: str | None = None
    records: int = 0
    written: int = 0
    filtered_out: int = 0
    shards_read: int = 0
    shards_finished: list[str] = field(default_factory=list)
    shards_dropped: list[str] = field(default_factory=list)
    budget_spent: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StreamCapture:
    """Everything one run needs: the stream, the table's columns, filters, where files go."""

    stream: str  # table name or stream ARN
    columns: ItemColumns
    bucket: str
    table_prefix: str  # `<prefix>/<schema>/<table>/`
    checkpoint_key: str
    commit_timestamp_column: str
    filters: FilterCriteria = field(default_factory=FilterCriteria)
    budget: Budget = field(default_factory=Budget)


class _RateLimit:
    """At most `per_second` calls a second (DescribeStream's limit is 10)."""

    def __init__(self, per_second: int, clock: Callable[[], float], sleep: Callable[[float], None]):
        self.interval, self.clock, self.sleep = 1.0 / per_second, clock, sleep
        self.last: float | None = None

    def wait(self) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            self.sleep(self.interval - (now - self.last))
        self.last = self.clock()


def stream_arn(streams, dynamodb, stream: str) -> str:
    """The stream ARN for a table name (its latest stream) or an ARN as given."""
    if stream.startswith("arn:"):
        return stream
    table = dynamodb.describe_table(TableName=stream)["Table"]
    arn = table.get("LatestStreamArn")
    if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled", True):
        raise SetupError(f"DynamoDB table {stream} has no stream enabled (StreamSpecification)")
    return arn


def describe_shards(streams, arn: str, limit: _RateLimit | None = None) -> tuple[str, list[dict]]:
    """(StreamViewType, every shard) from DescribeStream, following LastEvaluatedShardId."""
    limit = limit or _RateLimit(DESCRIBE_CALLS_PER_SECOND, time.monotonic, time.sleep)
    shards: list[dict] = []
    start: str | None = None
    while True:
        limit.wait()
        kwargs = {"StreamArn": arn, **({"ExclusiveStartShardId": start} if start else {})}
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        shards += description.get("Shards", [])
        start = description.get("LastEvaluatedShardId")
        if not start:
            return description["StreamViewType"], shards


def reading_order(shards: list[dict], finished: set[str]) -> list[dict]:
    """Shards that may be read now, parents before children: a shard whose parent is listed
    and not finished waits (unless the parent is read earlier in this same order)."""
    by_id = {s["ShardId"]: s for s in shards}
    order: list[dict] = []
    placed: set[str] = set()

    def place(shard: dict, path: tuple[str, ...]) -> None:
        shard_id = shard["ShardId"]
        if shard_id in placed or shard_id in finished or shard_id in path:
            return
        parent = shard.get("ParentShardId")
        if parent in by_id and parent not in finished:
            place(by_id[parent], (*path, shard_id))
        placed.add(shard_id)
        order.append(shard)

    for shard in sorted(shards, key=lambda s: s["ShardId"]):
        place(shard, ())
    return order


class Checkpoint:
    """Per shard: the last sequence number landed, and the closed shards already finished."""

    def __init__(self, data: dict | None = None):
        data = data or {}
        self.stream_arn: str | None = data.get("stream_arn")
        self.positions: dict[str, str | None] = dict(data.get("positions", {}))
        self.finished: list[str] = list(data.get("finished", []))
        self.last_file: str | None = data.get("last_file")
        self.pending: dict | None = data.get("pending")

    def to_dict(self) -> dict:
        return {
            "stream_arn": self.stream_arn,
            "positions": self.positions,
            "finished": self.finished,
            "last_file": self.last_file,
            "pending": self.pending,
        }


def read_checkpoint(s3, bucket: str, key: str) -> Checkpoint:
    document = read_json(s3, bucket, key)
    return Checkpoint() if document is None else Checkpoint(document)


def write_checkpoint(s3, bucket: str, key: str, checkpoint: Checkpoint) -> None:
    write_json(s3, bucket, key, checkpoint.to_dict())


def _commit_pending(checkpoint: Checkpoint) -> None:
    pending = checkpoint.pending or {}
    checkpoint.positions = dict(pending["positions"])
    checkpoint.finished = list(pending["finished"])
    checkpoint.last_file = pending["file"]
    checkpoint.pending = None


def capture(
    spec: StreamCapture,
    streams,
    dynamodb,
    s3,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> CaptureReport:
    """Read the stream from the checkpoint, land one change file, advance the checkpoint."""
    report = CaptureReport()
    checkpoint = read_checkpoint(s3, spec.bucket, spec.checkpoint_key)
    if checkpoint.pending:
        key = spec.table_prefix + checkpoint.pending["file"]
        if object_exists(s3, spec.bucket, key):
            log.info("%s: %s was written by an interrupted run; its positions are taken", spec.stream, key)
            _commit_pending(checkpoint)
        else:
            checkpoint.pending = None
        write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)

    arn = stream_arn(streams, dynamodb, spec.stream)
    if checkpoint.stream_arn and checkpoint.stream_arn != arn:
        raise LostHistoryError(
            f"{spec.columns.table}: the checkpoint {spec.checkpoint_key} belongs to stream {checkpoint.stream_arn}, "
            f"but {spec.stream} now has stream {arn} (the stream was disabled and enabled again): its records "
            "before the new stream are gone. " + RESNAPSHOT
        )
    view_type, shards = describe_shards(streams, arn)
    spec.columns.check_view_type(view_type, arn)
    listed = {s["ShardId"] for s in shards}
    lost = sorted(set(checkpoint.positions) - set(checkpoint.finished) - listed)
    if lost:
        raise LostHistoryError(
            f"{spec.columns.table}: shard(s) {', '.join(lost)} of stream {arn} are in the checkpoint "
            f"{spec.checkpoint_key} but no longer in the stream: records older than 24 hours were trimmed "
            "before they were read, so changes are missing. " + RESNAPSHOT
        )
    known = set(checkpoint.positions) | set(checkpoint.finished)
    orphans = sorted(
        s["ShardId"]
        for s in shards
        if checkpoint.stream_arn
        and s["ShardId"] not in known
        and s.get("ParentShardId")
        and s["ParentShardId"] not in listed | known
    )
    if orphans:
        raise LostHistoryError(
            f"{spec.columns.table}: shard(s) {', '.join(orphans)} of stream {arn} descend from shards this "
            f"capture never read and the stream no longer lists (checkpoint {spec.checkpoint_key}): their "
            "records were trimmed unread. " + RESNAPSHOT
        )
    finished = set(checkpoint.finished)
    dropped = sorted(finished - listed)
    positions = {k: v for k, v in checkpoint.positions.items() if k in listed}
    finished &= listed
    report.shards_dropped = dropped

    changes: list[Change] = []
    started = clock()
    for shard in reading_order(shards, finished):
        if report.records >= spec.budget.max_records or clock() - started >= spec.budget.max_seconds:
            report.budget_spent = True
            break
        parent = shard.get("ParentShardId")
        if parent in listed and parent not in finished:
            continue  # its parent stopped short of the end in this run
        done = _read_shard(spec, streams, arn, shard, positions, changes, report, started, clock)
        report.shards_read += 1
        if done:
            finished.add(shard["ShardId"])
            report.shards_finished.append(shard["ShardId"])

    return land(spec, s3, checkpoint, arn, positions, sorted(finished), changes, report, now)


def land(spec, s3, checkpoint: Checkpoint, arn: str, positions, finished, changes, report, now) -> CaptureReport:
    """Write `changes` as one file, then move the checkpoint to `positions` (pending first)."""
    if not changes:
        checkpoint.stream_arn, checkpoint.positions, checkpoint.finished = arn, positions, finished
        write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
        return report
    name = _next_file_name(now(), checkpoint.last_file)
    checkpoint.stream_arn = arn
    checkpoint.pending = {"file": name, "positions": positions, "finished": finished}
    write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    body = write_change_file(
        spec.columns.arrow_columns, changes, timestamp_column=spec.commit_timestamp_column, include_op=True
    )
    report.key = spec.table_prefix + name
    s3.put_object(Bucket=spec.bucket, Key=report.key, Body=body)
    _commit_pending(checkpoint)
    write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    report.written = len(changes)
    log.info(
        "%s: %d record(s) read from %d shard(s), %d written to s3://%s/%s, %d filtered out",
        arn,
        report.records,
        report.shards_read,
        report.written,
        spec.bucket,
        report.key,
        report.filtered_out,
    )
    return report


def _next_file_name(when: datetime, last: str | None) -> str:
    """A CDC file name after every earlier one of this capture (names order the changes)."""
    name = cdc_file_name(when)
    while last is not None and name <= last:
        when += timedelta(milliseconds=1)
        name = cdc_file_name(when)
    return name


def _iterator(streams, arn: str, shard_id: str, after: str | None, table: str) -> str:
    kwargs = {"StreamArn": arn, "ShardId": shard_id}
    if after is None:
        kwargs["ShardIteratorType"] = "TRIM_HORIZON"
    else:
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
    try:
        return streams.get_shard_iterator(**kwargs)["ShardIterator"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "TrimmedDataAccessException":
            raise LostHistoryError(
                f"{table}: shard {shard_id} of stream {arn}: the checkpoint's sequence number {after} is "
                "older than the stream's trim horizon (records are kept 24 hours): changes are missing. " + RESNAPSHOT
            ) from error
        if code == "ResourceNotFoundException":
            raise LostHistoryError(
                f"{table}: shard {shard_id} of stream {arn} no longer exists: its records were trimmed "
                "before they were read. " + RESNAPSHOT
            ) from error
        raise


def read_shard_to_end(streams, arn: str, shard_id: str, positions: dict, table: str) -> bool:
    """Move `positions[shard_id]` to the shard's last record without keeping any; True when a
    closed shard ended (re-snapshot: the position the Scan is tied to)."""
    positions.setdefault(shard_id, None)
    iterator = _iterator(streams, arn, shard_id, None, table)
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        records = page.get("Records", [])
        if records:
            positions[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        iterator = page.get("NextShardIterator")
        if iterator is None:
            return True
        if not records:
            return False


def _read_shard(spec, streams, arn, shard, positions, changes, report, started, clock) -> bool:
    """Read one shard into `changes`; True when a closed shard was read to its end."""
    shard_id = shard["ShardId"]
    table = spec.columns.table
    positions.setdefault(shard_id, None)  # known: a child is no orphan once its parent is dropped
    iterator = _iterator(streams, arn, shard_id, positions.get(shard_id), table)
    while True:
        try:
            page = streams.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code == "ExpiredIteratorException":
                log.info("%s: iterator of shard %s expired; renewed", arn, shard_id)
                iterator = _iterator(streams, arn, shard_id, positions.get(shard_id), table)
                continue
            if code == "TrimmedDataAccessException":
                raise LostHistoryError(
                    f"{table}: shard {shard_id} of stream {arn}: records after sequence number "
                    f"{positions.get(shard_id)} were trimmed before they were read. " + RESNAPSHOT
                ) from error
            raise
        records = page.get("Records", [])
        for record in records:
            sequence = record["dynamodb"]["SequenceNumber"]
            report.records += 1
            if spec.filters.matches(record):
                changes.append(spec.columns.change(record, f"{shard_id}/{sequence}"))
            else:
                report.filtered_out += 1
            positions[shard_id] = sequence
        iterator = page.get("NextShardIterator")
        if iterator is None:
            return True  # a closed shard, read to its end
        if not records:
            return False  # an open shard, caught up
        if report.records >= spec.budget.max_records or clock() - started >= spec.budget.max_seconds:
            report.budget_spent = True
            return False


def pipeline_capture(pipeline, table=None) -> StreamCapture:
    """The StreamCapture a `kind: dynamodb_stream` pipeline describes (its one table)."""
    source = pipeline.source
    settings = source.dynamodb
    if source.kind != "dynamodb_stream" or settings is None:
        raise SetupError(f"pipeline {pipeline.name!r}: source kind {source.kind!r} has no DynamoDB stream to capture")
    table = table or pipeline.tables[0]
    columns = ItemColumns(
        table=table.qualified_name,
        columns=tuple((name, kind or "") for name, kind in table.column_types),
        key=table.primary_key,
        extra_column=settings.extra_attributes_column,
    )
    return StreamCapture(
        stream=settings.stream,
        columns=columns,
        bucket=source.bucket,
        table_prefix=source.table_prefix(table),
        checkpoint_key=settings.checkpoint_key(pipeline.name, table),
        commit_timestamp_column=table.commit_timestamp_column or "cdc_commit_ts",
        filters=FilterCriteria.parse(settings.filter_criteria),
        budget=Budget(max_records=settings.max_records_per_run, max_seconds=settings.max_seconds_per_run),
    )
