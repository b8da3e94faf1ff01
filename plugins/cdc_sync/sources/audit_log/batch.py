"""Turn a batch of Kinesis records into audit events and the tables they wrote.

A record that does not decode, or an audit line that does not parse, is counted and kept
with its position (stream, shard, sequence number, log event) and never stops the rest; a
write whose tables cannot be named is kept with its statement. Failed statements
(retcode ≠ 0) and statements that write nothing are not writes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from cdc_sync.errors import BadInput
from cdc_sync.sources.audit_log.lines import AuditEvent, parse_line
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


def decode_batch(
    records: Iterable[KinesisRecord], *, find_tables: bool = True, keep_events: bool = False
) -> AuditBatch:
    """Decode every record, parse every audit line, and (unless told not to) find written tables;
    with `keep_events`, every parsed event is kept too (the audit trail)."""
    batch = AuditBatch()
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
        batch.lines += len(decoded.events)
        for index, log_event in enumerate(decoded.events):
            try:
                event = parse_line(log_event.message)
            except ValueError as exc:
                where = _where(record, decoded, index)
                log.warning("%s: audit line does not parse: %s: %.300r", where, exc, log_event.message)
                batch.unparsed.append(Problem(where, log_event.message, str(exc)))
                continue
            tables: tuple[TableRef, ...] | None = ()
            if find_tables and event.retcode == 0 and is_query(event.operation):
                try:
                    tables = written_tables(event.statement, event.database)
                except Unmapped as exc:
                    where = _where(record, decoded, index)
                    log.warning("%s: written tables not known (%s): %.300r", where, exc, event.statement)
                    batch.unmapped.append(Problem(where, event.statement, str(exc)))
                    tables = None
            if tables:
                batch.writes.append(WriteEvent(event, tables, decoded.log_group, decoded.log_stream, str(log_event.id)))
            if keep_events:
                batch.events.append(TrailEvent(event, tables, decoded.log_group, decoded.log_stream, str(log_event.id)))
    return batch
