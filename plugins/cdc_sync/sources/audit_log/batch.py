"""Turn a batch of Kinesis records into audit events and the tables they wrote.

A record that does not decode, or an audit line that does not parse, is counted and kept
with its position (stream, shard, sequence number, log event) and never stops the rest; a
write whose tables cannot be named is kept with its statement. Failed statements
(retcode ≠ 0) and statements that write nothing are not writes.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_sync.errors import BadInput
from cdc_sync.sources.audit_log.columns import events_of, parse_messages
from cdc_sync.sources.audit_log.lines import AuditEvent
from cdc_sync.sources.audit_log.records import SubscriptionRecord, decode_record
from cdc_sync.sources.audit_log.written import TableRef, Unmapped, written_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KinesisRecord:
    """One record read from the stream: its position and its data (base64 already removed)."""

    stream: str
    shard_id: str
    sequence_number: str
    data: bytes

    @property
    def where(self) -> str:
        return f"kinesis stream {self.stream} shard {self.shard_id} record {self.sequence_number}"


@dataclass(frozen=True)
class Problem:
    """A record, line or statement that was not understood: where, what, and why."""

    where: str
    text: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "text": self.text[:1000], "reason": self.reason}


@dataclass(frozen=True)
class WriteEvent:
    """An audit event whose statement wrote tables (retcode 0)."""

    event: AuditEvent
    tables: tuple[TableRef, ...]
    log_group: str
    log_stream: str
    event_id: str


@dataclass(frozen=True)
class TrailEvent:
    """Any parsed audit event, for the audit trail: the tables it wrote, None when unmapped."""

    event: AuditEvent
    tables: tuple[TableRef, ...] | None
    log_group: str
    log_stream: str
    event_id: str


@dataclass
class AuditBatch:
    """What one batch of records said: the writes, the tables written, and what was not understood."""

    records: int = 0
    control_messages: int = 0
    lines: int = 0
    writes: list[WriteEvent] = field(default_factory=list)
    events: list[TrailEvent] = field(default_factory=list)  # every parsed event, with keep_events
    bad_records: list[Problem] = field(default_factory=list)
    unparsed: list[Problem] = field(default_factory=list)
    unmapped: list[Problem] = field(default_factory=list)
    # every parsed event: columns.EVENT_SCHEMA, log_group, log_stream, event_id, record, log_event
    table: pa.Table | None = None

    @property
    def tables(self) -> tuple[TableRef, ...]:
        return tuple(sorted({t for w in self.writes for t in w.tables}))

    def summary(self) -> dict:
        """A JSON-able summary for a trigger event or a log line."""
        return {
            "tables": [str(t) for t in self.tables],
            "records": self.records,
            "lines": self.lines,
            "writes": len(self.writes),
            "bad_records": [p.to_dict() for p in self.bad_records],
            "unparsed": [p.to_dict() for p in self.unparsed],
            "unmapped": [p.to_dict() for p in self.unmapped],
        }


def _where(record: KinesisRecord, decoded: SubscriptionRecord, index: int) -> str:
    event_id = decoded.events[index].id
    return f"{record.where} logEvents[{index}] (log stream {decoded.log_stream}, event {event_id})"


def is_query(operation: str) -> bool:
    """QUERY, and Aurora's QUERY_DML / QUERY_DDL / … when it names the class."""
    return operation.upper().startswith("QUERY")


# A superset of written._MAY_WRITE's matches, in RE2: after ASCII white space, a character
# that is not ASCII (Unicode white space, or a letter Python's case folding may take for
# one of the keywords' letters) passes too; written_tables decides.
_MAY_WRITE_RE2 = (
    r"^[\t\n\x0b\f\r\x1c-\x1f ]*(?:[^\x00-\x7f]|(?i:[a-z]*[^\x00-\x7f]"
    r"|insert|update|delete|replace|load|truncate|alter|drop|rename|with)|\(|/\*|--|#)"
)


def may_write(table: pa.Table) -> pa.Array:
    """Rows that may have written a table: retcode 0, a QUERY operation (is_query, once per
    distinct operation) and a statement that may start like a write. Never fewer rows than
    written_tables would find tables in; it says which did."""
    operations = pc.unique(table["operation"]).to_pylist()
    queries = pa.array([op for op in operations if is_query(op)], pa.string())
    return pc.and_(
        pc.and_(pc.equal(table["retcode"], 0), pc.is_in(table["operation"], value_set=queries)),
        pc.match_substring_regex(table["statement"], _MAY_WRITE_RE2),
    )


@dataclass(frozen=True)
class _Source:
    """A data record of the batch and where its lines start among the batch's lines."""

    record: KinesisRecord
    decoded: SubscriptionRecord
    first_line: int
    position: int  # among the batch's records


def _event_ids(sources: list[_Source]) -> pa.Array:
    ids = [event.id for source in sources for event in source.decoded.events]
    try:
        return pa.array(ids, pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids as JSON numbers, which msgspec allows
        return pa.array([str(event_id) for event_id in ids], pa.string())


def _with_positions(table: pa.Table, sources: list[_Source]) -> pa.Table:
    """The table with where each event was read: log group and stream, event id, the
    record's position in the batch and the event's in the record."""
    lines = table["line"].to_numpy()
    counts = np.array([len(source.decoded.events) for source in sources], dtype=np.int64)
    source_of = np.repeat(np.arange(len(sources), dtype=np.int32), counts)[lines]
    starts = np.array([source.first_line for source in sources], dtype=np.int64)
    positions = np.array([source.position for source in sources], dtype=np.int32)
    indices = pa.array(source_of)
    columns = {
        "log_group": pa.DictionaryArray.from_arrays(indices, pa.array([s.decoded.log_group for s in sources])),
        "log_stream": pa.DictionaryArray.from_arrays(indices, pa.array([s.decoded.log_stream for s in sources])),
        "event_id": _event_ids(sources).take(pa.array(lines)),
        "record": pa.array(positions[source_of] if len(sources) else np.zeros(0, np.int32)),
        "log_event": pa.array((lines - starts[source_of]).astype(np.int32) if len(sources) else np.zeros(0, np.int32)),
    }
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def decode_batch(
    records: Iterable[KinesisRecord], *, find_tables: bool = True, keep_events: bool = False
) -> AuditBatch:
    """Decode every record, parse every audit line, and (unless told not to) find written tables;
    with `keep_events`, every parsed event is kept too (the audit trail).

    The lines of all records are parsed at once (columns.parse_messages, into batch.table);
    Python objects are made only for the rows that may have written a table, or for every
    row with `keep_events`."""
    batch = AuditBatch()
    sources: list[_Source] = []
    messages: list[str] = []
    for record in records:
        batch.records += 1
        try:
            decoded = decode_record(record.data, record.where)
        except BadInput as exc:
            log.warning("%s", exc)
            batch.bad_records.append(Problem(record.where, "", str(exc)))
            continue
        if decoded.is_control:
            batch.control_messages += 1
            continue
        sources.append(_Source(record, decoded, len(messages), batch.records - 1))
        messages.extend([event.message for event in decoded.events])
    batch.lines = len(messages)
    table, refused = parse_messages(pa.array(messages, pa.string()))
    starts = [source.first_line for source in sources]

    def where(line: int) -> str:
        source = sources[bisect.bisect_right(starts, line) - 1]
        return _where(source.record, source.decoded, line - source.first_line)

    for line, reason in refused:
        text = messages[line]
        log.warning("%s: audit line does not parse: %s: %.300r", where(line), reason, text)
        batch.unparsed.append(Problem(where(line), text, reason))
    batch.table = table = _with_positions(table, sources)
    if not keep_events and not find_tables:
        return batch
    rows = table if keep_events else table.filter(may_write(table))
    lines = rows["line"].to_pylist()
    candidates = may_write(rows).to_numpy(zero_copy_only=False) if find_tables else np.zeros(len(lines), bool)
    for line, event, candidate in zip(lines, events_of(rows), candidates, strict=True):
        source = sources[bisect.bisect_right(starts, line) - 1]
        index = line - source.first_line
        tables: tuple[TableRef, ...] | None = ()
        if candidate:
            try:
                tables = written_tables(event.statement, event.database)
            except Unmapped as exc:
                log.warning("%s: written tables not known (%s): %.300r", where(line), exc, event.statement)
                batch.unmapped.append(Problem(where(line), event.statement, str(exc)))
                tables = None
        decoded = source.decoded
        event_id = str(decoded.events[index].id)
        if tables:
            batch.writes.append(WriteEvent(event, tables, decoded.log_group, decoded.log_stream, event_id))
        if keep_events:
            batch.events.append(TrailEvent(event, tables, decoded.log_group, decoded.log_stream, event_id))
    return batch
