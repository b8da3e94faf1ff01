"""One binlog capture run: read ROW events from the checkpoint and land them as DMS-format
change files under each table's prefix, so that both loaders apply them as DMS files.

The checkpoint (an S3 object, one per pipeline) holds where the next run starts: the start of
the first transaction not wholly landed (its GTID state — MariaDB's domain-server-seq list or
MySQL's GTID set — and its file:position) and how many of that transaction's row changes are
already landed (a transaction larger than a run's budget is split across runs). A run that
starts with no checkpoint first takes a consistent snapshot of every table as full-load files,
tied to the binlog position the snapshot saw (sources/binlog/snapshot.py).

Exactly once: the checkpoint first records the files about to be written and the state they
lead to (`pending`); the files are put; then the checkpoint takes that state. A run that finds
every pending file on S3 takes the state without reading again; one that does not reads again
from the old state, and its files repeat changes under later names: equal data at later
positions, so the latest state is the same (a replay is harmless).

Order: binlog timestamps have whole seconds. A change's commit time is its event's timestamp,
but never earlier than the change before it (a transaction that waited on a lock can carry a
timestamp before its predecessor's), so commit times follow the binlog. Within one commit time
the position orders by file name, which strictly increases run after run (and within a run, file
after file), then by row, which is binlog order within a file; the binlog coordinates of each
file's first and last change are in its Parquet metadata. So positions sort exactly as the binlog.

DDL: each row event is read with the columns its table map names (binlog_row_metadata=FULL); a
table whose columns change starts a new file, and the loaders widen the targets as for DMS.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.errors import SetupError, TransientError
from cdc_sync.sources.binlog.columns import arrow_columns, converters
from cdc_sync.sources.binlog.server import (
    RESNAPSHOT,
    LostHistoryError,
    Position,
    ServerInfo,
    check_history,
    check_server,
    mariadb_gtid_state,
)
from cdc_sync.sources.dms.writer import Change, ChangeFileWriter, cdc_file_name
from cdc_sync.sources.s3_objects import object_exists, read_json, write_json

log = logging.getLogger(__name__)

ROW_GROUP = 20_000  # changes buffered per table before they go to its file
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236


@dataclass(frozen=True)
class Budget:
    """How much one run reads before it lands what it has."""

    max_events: int = 200_000
    max_seconds: float = 300.0


@dataclass(frozen=True)
class BinlogCapture:
    """Everything one run needs: the tables, where their files and the checkpoint go, the budget."""

    pipeline: str
    tables: tuple[TableSpec, ...]
    bucket: str
    table_prefixes: dict[str, str]  # qualified name → `<prefix>/<schema>/<table>/`
    checkpoint_key: str
    replica_id: int
    budget: Budget = field(default_factory=Budget)
    chunk_rows: int = 50_000

    def table(self, schema: str, name: str) -> TableSpec | None:
        for table in self.tables:
            if table.schema == schema and table.name == name:
                return table
        return None


@dataclass
class CaptureReport:
    """What a run did, for the task log and the tests."""

    keys: list[str] = field(default_factory=list)
    events: int = 0  # row changes read
    written: int = 0  # row changes landed (after the replayed part of a split transaction)
    snapshot_rows: int = 0
    snapshot_tables: list[str] = field(default_factory=list)
    published: int = 0  # row changes put on the Kinesis stream
    budget_spent: bool = False
    checkpoint: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Checkpoint:
    """Where the next run starts, and what an interrupted run was landing."""

    def __init__(self, data: dict | None = None):
        data = data or {}
        self.position: Position | None = Position.from_dict(data["position"]) if data.get("position") else None
        self.txn_rows: int = int(data.get("txn_rows", 0))
        self.last_commit_ts: str | None = data.get("last_commit_ts")
        self.last_file: str | None = data.get("last_file")
        self.server: dict = dict(data.get("server") or {})
        # tables re-snapshotted while the stream went on: their events up to here are in the snapshot
        self.snapshots: dict[str, dict] = dict(data.get("snapshots") or {})
        self.pending: dict | None = data.get("pending")

    def to_dict(self) -> dict:
        return {
            "position": self.position.to_dict() if self.position else None,
            "txn_rows": self.txn_rows,
            "last_commit_ts": self.last_commit_ts,
            "last_file": self.last_file,
            "server": self.server,
            "snapshots": self.snapshots,
            "pending": self.pending,
        }

    def state(self) -> dict:
        data = self.to_dict()
        data.pop("pending")
        return data

    def floor(self) -> datetime | None:
        return datetime.fromisoformat(self.last_commit_ts) if self.last_commit_ts else None


def read_checkpoint(s3, bucket: str, key: str) -> Checkpoint:
    document = read_json(s3, bucket, key)
    return Checkpoint() if document is None else Checkpoint(document)


def write_checkpoint(s3, bucket: str, key: str, checkpoint: Checkpoint) -> None:
    write_json(s3, bucket, key, checkpoint.to_dict())


class Landing:
    """The files of one run, written to a scratch folder as the changes come, put at the end.

    Each file gets the next CDC name after the checkpoint's last one (or a LOAD name)."""

    def __init__(self, spec: BinlogCapture, checkpoint: Checkpoint, now: datetime, workdir: str):
        self.spec, self.workdir = spec, workdir
        base = now
        while checkpoint.last_file is not None and cdc_file_name(base) <= checkpoint.last_file:
            base += timedelta(milliseconds=1)
        self.base, self.count = base, 0
        self.files: list[tuple[str, str]] = []  # (key, local path), in the order they were started
        self.last_name: str | None = checkpoint.last_file
        self._open: dict[str, list] = {}  # table → [columns, writer, buffered changes, first, last]

    def _next_cdc_name(self) -> str:
        name = cdc_file_name(self.base + timedelta(milliseconds=self.count))
        self.count += 1
        self.last_name = name
        return name

    def new_file(self, table: TableSpec, columns, *, name: str | None = None, include_op: bool = True):
        """A writer for a new file of `table` (a CDC name unless `name` is given)."""
        name = name or self._next_cdc_name()
        key = self.spec.table_prefixes[table.qualified_name] + name
        path = os.path.join(self.workdir, f"{len(self.files):06d}.parquet")
        self.files.append((key, path))
        writer = ChangeFileWriter(path, columns, timestamp_column=table.commit_timestamp_column, include_op=include_op)
        return key, writer

    def add(self, table: TableSpec, columns: list[tuple[str, pa.DataType]], change: Change, where: tuple) -> None:
        """Append a change of `table` read with `columns` (a new file when they changed);
        `where` is its binlog coordinates (file, position, row of the transaction, GTID)."""
        current = self._open.get(table.qualified_name)
        if current is None or (current[0] is not columns and current[0] != columns):
            if current is not None:
                self._close(table.qualified_name)
            _key, writer = self.new_file(table, columns)
            current = [columns, writer, [], where, where]
            self._open[table.qualified_name] = current
        buffer = current[2]
        buffer.append(change)
        current[4] = where
        if len(buffer) >= ROW_GROUP:
            current[1].write(buffer)
            buffer.clear()

    def _close(self, qualified: str) -> None:
        _columns, writer, buffer, first, last = self._open.pop(qualified)
        writer.write(buffer)
        names = ("file", "pos", "row", "gtid")
        writer.close(
            {
                "cdc_sync.binlog.first": json.dumps(dict(zip(names, first, strict=True))),
                "cdc_sync.binlog.last": json.dumps(dict(zip(names, last, strict=True))),
            }
        )

    def close(self) -> None:
        for qualified in list(self._open):
            self._close(qualified)

    def written(self) -> list[tuple[str, str]]:
        return [(key, path) for key, path in self.files if os.path.exists(path)]


def land(spec: BinlogCapture, s3, checkpoint: Checkpoint, new_state: Checkpoint, landing: Landing, report) -> None:
    """Put the run's files, then move the checkpoint to `new_state` (pending first)."""
    landing.close()
    files = landing.written()
    new_state.last_file = landing.last_name if files else checkpoint.last_file
    if files:
        checkpoint.pending = {"files": [key for key, _ in files], "state": new_state.state()}
        write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
        for key, path in files:
            s3.upload_file(path, spec.bucket, key)
            report.keys.append(key)
    new_state.pending = None
    write_checkpoint(s3, spec.bucket, spec.checkpoint_key, new_state)
    report.checkpoint = new_state.state()


def recover_pending(spec: BinlogCapture, s3, checkpoint: Checkpoint) -> Checkpoint:
    """An interrupted run's files: all on S3 → take their state; else read again from the old one."""
    if not checkpoint.pending:
        return checkpoint
    pending = checkpoint.pending
    if all(object_exists(s3, spec.bucket, key) for key in pending["files"]):
        log.info(
            "%s: the %d file(s) of an interrupted run are on S3; their state is taken",
            spec.pipeline,
            len(pending["files"]),
        )
        checkpoint = Checkpoint(pending["state"])
    else:
        log.warning(
            "%s: an interrupted run landed only some of its files; reading again from the checkpoint "
            "(the repeated changes have later positions and the same values)",
            spec.pipeline,
        )
        checkpoint.pending = None
    write_checkpoint(s3, spec.bucket, spec.checkpoint_key, checkpoint)
    return checkpoint


def _file_sequence(name: str) -> int:
    return int(name.rsplit(".", 1)[-1]) if name.rsplit(".", 1)[-1].isdigit() else 0


class _Transaction:
    """The transaction being read: where it starts and the rows of it seen so far."""

    def __init__(self, start: Position, gtid: str | None, in_txn: bool):
        self.start, self.gtid, self.in_txn = start, gtid, in_txn
        self.rows = 0


class _GtidState:
    """The GTIDs of every transaction read to its end (MariaDB per domain, MySQL a set)."""

    def __init__(self, info: ServerInfo, text: str | None):
        self.info = info
        if info.is_mariadb:
            self.domains = {d: part for part in (text or "").split(",") if part for d in [int(part.split("-")[0])]}
        else:
            from pymysqlreplication.gtid import GtidSet

            self.set = GtidSet(text or "") if info.gtid_mode else None

    def add(self, gtid: str | None) -> None:
        if gtid is None:
            return
        if self.info.is_mariadb:
            self.domains[int(gtid.split("-")[0])] = gtid
        elif self.set is not None:
            from pymysqlreplication.gtid import Gtid

            self.set = self.set + Gtid(gtid)

    def text(self) -> str | None:
        if self.info.is_mariadb:
            return ",".join(self.domains[d] for d in sorted(self.domains))
        return str(self.set) if self.set is not None else None


def covers(snapshot: dict, txn: _Transaction, info: ServerInfo) -> bool:
    """Whether a table's snapshot at `snapshot` already holds the effect of transaction `txn`."""
    position = Position.from_dict(snapshot)
    if info.is_mariadb and txn.gtid:
        domain, _server, seq = txn.gtid.split("-")
        return int(seq) <= mariadb_gtid_state(position.gtid).get(int(domain), -1)
    if info.gtid_mode and txn.gtid and position.gtid is not None:
        from pymysqlreplication.gtid import Gtid, GtidSet

        return Gtid(txn.gtid) in GtidSet(position.gtid)
    return (_file_sequence(txn.start.file), txn.start.pos) < (_file_sequence(position.file), position.pos)


def reader_class():
    """BinLogStreamReader with its MariaDB dump request fixed.

    python-mysql-replication 1.0.17 declares COM_BINLOG_DUMP's MariaDB packet one byte
    shorter than it sends; the server leaves that byte unread, so when it ends a non-blocking
    dump it resets the connection, and the events still in the worker's receive buffer are
    lost (the library then reconnects from the start: an endless loop on a busy binlog)."""
    import struct

    from pymysqlreplication import BinLogStreamReader

    class Reader(BinLogStreamReader):
        def _BinLogStreamReader__set_mariadb_settings(self):  # the library's private request builder
            prelude = BinLogStreamReader._BinLogStreamReader__set_mariadb_settings(self)  # type: ignore[attr-defined]
            return struct.pack("<i", len(prelude) - 4) + prelude[4:]

    return Reader


def stream_reader(settings: dict, spec: BinlogCapture, info: ServerInfo, position: Position):
    """A non-blocking BinLogStreamReader from `position` (GTIDs where the server has them)."""
    from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent
    from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

    kwargs: dict = {}
    if info.is_mariadb:
        kwargs.update(is_mariadb=True, auto_position=position.gtid or "")
    elif info.gtid_mode and position.gtid is not None:
        kwargs.update(auto_position=position.gtid)
    else:
        kwargs.update(log_file=position.file, log_pos=position.pos, resume_stream=True)
    return reader_class()(
        connection_settings=dict(settings),
        server_id=spec.replica_id,
        blocking=False,
        only_events=[
            GtidEvent,
            MariadbGtidEvent,
            QueryEvent,
            XidEvent,
            WriteRowsEvent,
            UpdateRowsEvent,
            DeleteRowsEvent,
        ],
        only_schemas=sorted({t.schema for t in spec.tables}),
        enable_logging=False,
        **kwargs,
    )


def capture(
    spec: BinlogCapture,
    settings: dict,
    connect: Callable,
    s3,
    *,
    resnapshot: list[str] | None = None,
    kinesis=None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
) -> CaptureReport:
    """Read the binlog from the checkpoint (a snapshot first when there is none, or for the
    tables in `resnapshot`, `*` for all), land the changes, advance the checkpoint. With
    `kinesis` (a KinesisSink) each row change read is also published there, all of them
    before the checkpoint moves."""
    from cdc_sync.sources.binlog import snapshot

    where = f"pipeline {spec.pipeline}"
    info = check_server(connect, where, spec.replica_id)
    checkpoint = recover_pending(spec, s3, read_checkpoint(s3, spec.bucket, spec.checkpoint_key))
    report = CaptureReport()
    wanted = _resnapshot_tables(spec, resnapshot or [])
    with tempfile.TemporaryDirectory(prefix="cdc-sync-binlog-") as workdir:
        landing = Landing(spec, checkpoint, now(), workdir)
        state = Checkpoint(checkpoint.state())
        if checkpoint.position is None or len(wanted) == len(spec.tables):
            first = checkpoint.position is None
            if not first:
                log.info("%s: re-snapshot of every table; the stream restarts at the snapshot's position", where)
            position, began = snapshot.take(
                spec, connect, info, spec.tables, landing, report, full_load=first, floor=checkpoint.floor()
            )
            state.position, state.txn_rows, state.snapshots = position, 0, {}
            state.last_commit_ts = max(began, checkpoint.floor() or began).isoformat()
        else:
            _check_same_server(checkpoint, info, where)
            conn = connect()
            try:
                with conn.cursor() as cur:
                    check_history(cur, info, checkpoint.position, where)
            finally:
                conn.close()
            if wanted:
                position, began = snapshot.take(
                    spec, connect, info, wanted, landing, report, full_load=False, floor=checkpoint.floor()
                )
                for table in wanted:
                    state.snapshots[table.qualified_name] = position.to_dict()
                state.last_commit_ts = max(began, checkpoint.floor() or began).isoformat()
        state.server = {"flavor": info.flavor, "server_id": info.server_id, "server_uuid": info.server_uuid}
        _read_stream(spec, settings, info, state, landing, report, clock, kinesis)
        if kinesis is not None:
            kinesis.flush()  # both sinks have every change before the checkpoint moves
            report.published = kinesis.published
        land(spec, s3, checkpoint, state, landing, report)
    log.info(
        "%s: %d row change(s) read, %d landed in %d file(s)%s; checkpoint %s",
        where,
        report.events,
        report.written,
        len(report.keys),
        f", snapshot of {', '.join(report.snapshot_tables)} ({report.snapshot_rows} rows)"
        if report.snapshot_tables
        else "",
        report.checkpoint.get("position"),
    )
    return report


def _resnapshot_tables(spec: BinlogCapture, names: list[str]) -> list[TableSpec]:
    if "*" in names:
        return list(spec.tables)
    out = []
    for name in names:
        table = next((t for t in spec.tables if t.qualified_name == name), None)
        if table is None:
            raise SetupError(
                f"pipeline {spec.pipeline}: resnapshot names {name!r}, which is not one of its tables "
                f"({', '.join(t.qualified_name for t in spec.tables)}, or * for all)"
            )
        out.append(table)
    return out


def _check_same_server(checkpoint: Checkpoint, info: ServerInfo, where: str) -> None:
    """A checkpoint taken on another kind of server cannot be continued."""
    flavor = checkpoint.server.get("flavor")
    if flavor and flavor != info.flavor:
        raise LostHistoryError(
            f"{where}: the checkpoint was taken on a {flavor} server, the source is now {info.flavor}: its "
            "positions mean nothing there. " + RESNAPSHOT
        )


def _read_stream(spec, settings, info: ServerInfo, state: Checkpoint, landing: Landing, report, clock, kinesis) -> None:
    """Read row events from `state` into `landing` until the binlog's end or the budget; move
    `state` to the first transaction not wholly landed."""
    from pymysql.err import OperationalError
    from pymysqlreplication.event import GtidEvent, MariadbGtidEvent, QueryEvent, XidEvent

    assert state.position is not None
    start, skip = state.position, state.txn_rows
    gtids = _GtidState(info, start.gtid)
    committed = start
    floor = state.floor()
    txn: _Transaction | None = None
    first_txn = True
    started = clock()
    columns_of: dict[int, tuple] = {}
    last_end = (0, 0)
    stream = stream_reader(settings, spec, info, start)
    try:
        while True:
            # every event before the next one returned (the library skips some) lies before it
            before = Position(stream.log_file or committed.file, stream.log_pos or committed.pos, gtids.text())
            try:
                event = stream.fetchone()
            except OperationalError as error:
                if error.args and error.args[0] == ER_MASTER_FATAL_ERROR_READING_BINLOG:
                    raise LostHistoryError(
                        f"pipeline {spec.pipeline}: the server cannot send the binlog from the checkpoint "
                        f"{start.file}:{start.pos} (GTID {start.gtid}): {error.args[1]}. " + RESNAPSHOT
                    ) from error
                raise
            if event is None:
                break
            end = Position(stream.log_file, stream.log_pos, None)
            here = (_file_sequence(end.file), end.pos)
            if here < last_end:
                # the library reconnected after a lost connection and the server sends from the
                # start again: retry the run rather than read the same changes twice
                raise TransientError(
                    f"pipeline {spec.pipeline}: the binlog connection was lost and re-established at "
                    f"{end.file}:{end.pos}, before {last_end}; the run is retried from its checkpoint"
                )
            last_end = here
            if isinstance(event, (MariadbGtidEvent, GtidEvent)):
                begin = before
                standalone = isinstance(event, MariadbGtidEvent) and bool(event.flags & 1)
                txn = _Transaction(begin, event.gtid, in_txn=isinstance(event, MariadbGtidEvent) and not standalone)
                continue
            if isinstance(event, QueryEvent):
                query = event.query.strip().upper() if isinstance(event.query, str) else ""
                if query == "BEGIN":
                    if txn is None:  # no GTIDs: the transaction starts here
                        txn = _Transaction(before, None, True)
                    txn.in_txn = True
                    continue
                if txn is not None and txn.in_txn and query != "COMMIT":
                    continue  # a statement inside a transaction
            if isinstance(event, (XidEvent, QueryEvent)):
                # the end of a transaction (XID, COMMIT, or a statement on its own such as DDL)
                if txn is not None:
                    gtids.add(txn.gtid)
                    if first_txn:
                        first_txn, skip = False, 0
                committed = Position(end.file, end.pos, gtids.text())
                txn = None
                if report.written >= spec.budget.max_events or clock() - started >= spec.budget.max_seconds:
                    report.budget_spent = True
                    break
                continue
            # a row event
            if txn is None:
                txn = _Transaction(committed, None, True)
            table = spec.table(event.schema, event.table)
            rows = event.rows
            snapshot = state.snapshots.get(table.qualified_name) if table is not None else None
            if table is None or (snapshot is not None and covers(snapshot, txn, info)):
                txn.rows += len(rows)
                continue
            cached = columns_of.get(id(event.columns))
            if cached is None:
                if len(columns_of) > 1000:
                    columns_of.clear()
                # the cache holds the table map's column list, so its id cannot be reused meanwhile
                typed = arrow_columns(event.schema, event.table, event.columns)
                cached = columns_of[id(event.columns)] = (event.columns, typed, converters(table.qualified_name, typed))
            _, columns, convert = cached
            when = datetime.fromtimestamp(event.timestamp, UTC)
            if floor is not None and when < floor:
                when = floor
            floor = when
            kind = type(event).__name__
            for row in rows:
                index = txn.rows
                txn.rows += 1
                report.events += 1
                if first_txn and index < skip:
                    continue  # landed by an earlier run
                if kind == "UpdateRowsEvent":
                    op, values = "U", row["after_values"]
                else:
                    op, values = ("I" if kind == "WriteRowsEvent" else "D"), row["values"]
                if convert:
                    values = dict(values)
                    for name, function in convert:
                        values[name] = function(values.get(name))
                landing.add(
                    table, columns, Change(op=op, row=values, commit_ts=when), (end.file, end.pos, index, txn.gtid)
                )
                if kinesis is not None:
                    kinesis.add(event.schema, event.table, kind, row, tuple(values[k] for k in table.primary_key))
                report.written += 1
            if report.written >= spec.budget.max_events or clock() - started >= spec.budget.max_seconds:
                report.budget_spent = True
                break
    finally:
        stream.close()
    if txn is not None and txn.rows:
        # stopped inside a transaction: the next run starts at it and skips the rows seen of it
        state.position, state.txn_rows = txn.start, txn.rows
    else:
        state.position, state.txn_rows = committed, 0
    if floor is not None:
        state.last_commit_ts = floor.isoformat()


def pipeline_capture(pipeline: Pipeline) -> BinlogCapture:
    """The BinlogCapture a `kind: binlog` pipeline describes."""
    source = pipeline.source
    settings = source.binlog
    if source.kind != "binlog" or settings is None:
        raise SetupError(f"pipeline {pipeline.name!r}: source kind {source.kind!r} has no binlog to capture")
    return BinlogCapture(
        pipeline=pipeline.name,
        tables=pipeline.tables,
        bucket=source.bucket,
        table_prefixes={t.qualified_name: source.table_prefix(t) for t in pipeline.tables},
        checkpoint_key=settings.checkpoint_key(pipeline.name),
        replica_id=settings.server_id,
        budget=Budget(max_events=settings.max_events_per_run, max_seconds=settings.max_seconds_per_run),
        chunk_rows=settings.snapshot_chunk_rows,
    )
