"""What the capture asks the source server: its flavour, its settings, where its binlog
starts and ends, and a binlog position tied to a consistent read.

Every setting the capture needs is checked before a byte is read, each with one message
naming the setting and how to fix it; a checkpoint the server no longer has (purged, or a
server whose binlog numbering restarted) is lost history and stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cdc_sync.errors import SetupError

log = logging.getLogger(__name__)

Connect = Callable[[], object]


class LostHistoryError(SetupError):
    """The binlog the checkpoint points into is gone; the message says what to do."""


RESNAPSHOT = (
    'Re-snapshot: trigger the pipeline\'s DAG with --conf \'{"resnapshot": ["*"]}\' (every table read again, '
    "tied to the binlog's current position; the checkpoint is replaced). Keep binlogs longer than the schedule "
    "(binlog_expire_logs_seconds / expire_logs_days; Aurora: CALL mysql.rds_set_configuration('binlog retention "
    "hours', N))"
)


@dataclass(frozen=True)
class Position:
    """A point in the binlog: after every transaction of `gtid` (MariaDB: a domain-server-seq
    list; MySQL: a GTID set; None without GTIDs), at `file`:`pos`."""

    file: str
    pos: int
    gtid: str | None = None

    def to_dict(self) -> dict:
        return {"file": self.file, "pos": self.pos, "gtid": self.gtid}

    @classmethod
    def from_dict(cls, data: dict) -> "Position":
        return cls(file=data["file"], pos=int(data["pos"]), gtid=data.get("gtid"))


@dataclass(frozen=True)
class ServerInfo:
    flavor: str  # "mariadb" or "mysql"
    server_id: int
    server_uuid: str | None
    gtid_mode: bool  # MariaDB always has GTIDs; MySQL when gtid_mode=ON

    @property
    def is_mariadb(self) -> bool:
        return self.flavor == "mariadb"


def _variables(cur, names: list[str]) -> dict[str, str]:
    cur.execute("SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ",".join(["%s"] * len(names)) + ")", names)
    return {str(name).lower(): str(value) for name, value in cur.fetchall()}


def check_server(connect: Connect, where: str, replica_id: int) -> ServerInfo:
    """The server's flavour, with every setting the capture needs checked (SetupError otherwise)."""
    conn = connect()
    try:
        with conn.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
            flavor = "mariadb" if "mariadb" in version.lower() else "mysql"
            wanted = [
                "log_bin",
                "binlog_format",
                "binlog_row_image",
                "binlog_row_metadata",
                "server_id",
                "server_uuid",
                "gtid_mode",
                "binlog_transaction_compression",
            ]
            values = _variables(cur, wanted)
            problems = _setting_problems(values, flavor)
            if problems:
                raise SetupError(f"{where}: the source server cannot be captured: " + "; ".join(problems))
            _check_grants(cur, where)
            _check_replica_id(cur, where, replica_id, flavor)
    finally:
        conn.close()  # type: ignore[attr-defined]
    return ServerInfo(
        flavor=flavor,
        server_id=int(values.get("server_id", 0)),
        server_uuid=values.get("server_uuid"),
        gtid_mode=flavor == "mariadb" or values.get("gtid_mode", "OFF").upper() == "ON",
    )


def _setting_problems(values: dict[str, str], flavor: str) -> list[str]:
    fix = "(my.cnf, SET GLOBAL, or on Aurora/RDS the DB cluster parameter group)"
    problems = []
    if values.get("log_bin", "OFF").upper() not in ("ON", "1"):
        problems.append(f"log_bin is OFF: turn the binlog on {fix}; on Aurora set binlog_format in the cluster group")
    for name, want in (("binlog_format", "ROW"), ("binlog_row_image", "FULL"), ("binlog_row_metadata", "FULL")):
        value = values.get(name)
        if value is None:
            problems.append(
                f"{name} is not a variable of this server: it needs {name}={want} (MySQL 8.0.14+, MariaDB 10.5+)"
            )
        elif value.upper() != want:
            problems.append(f"{name} is {value}: set {name}={want} {fix}")
    if flavor == "mysql" and values.get("binlog_transaction_compression", "OFF").upper() in ("ON", "1"):
        problems.append(
            "binlog_transaction_compression is ON: compressed transactions cannot be decoded; set it OFF " + fix
        )
    return problems


def _check_grants(cur, where: str) -> None:
    cur.execute("SHOW GRANTS")
    grants = " ".join(str(row[0]).upper() for row in cur.fetchall())
    if "ALL PRIVILEGES ON *.*" in grants:
        return
    missing = [
        name
        for name, spellings in (
            ("REPLICATION SLAVE", ("REPLICATION SLAVE", "REPLICATION REPLICA")),
            ("REPLICATION CLIENT", ("REPLICATION CLIENT", "BINLOG MONITOR")),
        )
        if not any(s in grants for s in spellings)
    ]
    if missing:
        raise SetupError(
            f"{where}: the capture's user lacks {', '.join(missing)}: GRANT REPLICATION SLAVE, REPLICATION CLIENT "
            "ON *.* TO '<user>'@'%'; (and SELECT on the captured tables)"
        )


def _check_replica_id(cur, where: str, replica_id: int, flavor: str) -> None:
    """No other replica of the server may use the capture's server id (it would be disconnected)."""
    try:
        cur.execute("SHOW SLAVE HOSTS")
    except Exception:  # noqa: BLE001 - MySQL 8.4 only knows SHOW REPLICAS
        cur.execute("SHOW REPLICAS")
    for row in cur.fetchall():
        if int(row[0]) == replica_id:
            raise SetupError(
                f"{where}: server id {replica_id} is already used by a replica of the source ({row[1] or row[0]}); "
                "set source.binlog.server_id to an id no replica uses"
            )


def binary_logs(cur) -> list[tuple[str, int]]:
    """(file, size) of every binlog file the server still has, oldest first."""
    cur.execute("SHOW BINARY LOGS")
    return [(str(row[0]), int(row[1])) for row in cur.fetchall()]


def current_position(cur, info: ServerInfo) -> Position:
    """Where the binlog ends now (SHOW BINARY LOG STATUS on MySQL 8.4, SHOW MASTER STATUS before)."""
    try:
        cur.execute("SHOW MASTER STATUS")
    except Exception:  # noqa: BLE001 - removed in MySQL 8.4
        cur.execute("SHOW BINARY LOG STATUS")
    row = cur.fetchone()
    if row is None:
        raise SetupError("the source server reports no binlog position (SHOW MASTER STATUS is empty): is log_bin on?")
    file, pos = str(row[0]), int(row[1])
    if info.is_mariadb:
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        return Position(file, pos, str(cur.fetchone()[0] or ""))
    return Position(file, pos, str(row[4]).replace("\n", "") if info.gtid_mode and len(row) > 4 else None)


def snapshot_position(cur, info: ServerInfo) -> Position:
    """Open a consistent-snapshot transaction on `cur` and return the binlog position it sees.

    MariaDB reports that position itself (binlog_snapshot_file/position, no lock). MySQL
    needs a moment of FLUSH TABLES WITH READ LOCK (RELOAD privilege) around START
    TRANSACTION WITH CONSISTENT SNAPSHOT and SHOW MASTER STATUS."""
    cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    if info.is_mariadb:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cur.execute("SHOW STATUS WHERE Variable_name IN ('binlog_snapshot_file', 'binlog_snapshot_position')")
        status = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        file, pos = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        return Position(file, pos, str(cur.fetchone()[0] or ""))
    cur.execute("FLUSH TABLES WITH READ LOCK")
    try:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        position = current_position(cur, info)
    finally:
        cur.execute("UNLOCK TABLES")
    return position


def mariadb_gtid_state(text: str | None) -> dict[int, int]:
    """'0-7-12,1-9-3' → {domain: sequence number}."""
    out: dict[int, int] = {}
    for part in (text or "").replace(" ", "").split(","):
        if part:
            domain, _server, seq = part.split("-")
            out[int(domain)] = int(seq)
    return out


def check_history(cur, info: ServerInfo, checkpoint: Position, where: str) -> None:
    """Fail (LostHistoryError) when the server no longer has the binlog from `checkpoint` on."""
    logs = binary_logs(cur)
    oldest = logs[0][0] if logs else "(none)"
    names = dict(logs)
    head = f"{where}: the checkpoint is at {checkpoint.file}:{checkpoint.pos}" + (
        f" (GTID {checkpoint.gtid})" if checkpoint.gtid else ""
    )
    if info.is_mariadb:
        cur.execute("SELECT @@gtid_binlog_pos")
        now = mariadb_gtid_state(str(cur.fetchone()[0] or ""))
        first: dict[int, int] = {}
        if logs:
            cur.execute("SELECT BINLOG_GTID_POS(%s, 4)", (logs[0][0],))
            first = mariadb_gtid_state(str(cur.fetchone()[0] or ""))
        seen = mariadb_gtid_state(checkpoint.gtid)
        for domain, seq in seen.items():
            if now.get(domain, 0) < seq:
                raise LostHistoryError(
                    f"{head}, but the server's binlog ends at GTID {now.get(domain, 0)} in domain {domain}: it is not "
                    f"the server (or the history) the checkpoint was taken on (replaced, or its binlog reset); the "
                    f"oldest binlog it has is {oldest}. " + RESNAPSHOT
                )
        for domain, seq in first.items():
            if seq > seen.get(domain, 0):
                raise LostHistoryError(
                    f"{head}, but the oldest binlog the server still has ({oldest}) starts after GTID "
                    f"{domain}-…-{seq}: the transactions in between were purged before they were read. " + RESNAPSHOT
                )
        return
    if info.gtid_mode and checkpoint.gtid is not None:
        cur.execute("SELECT GTID_SUBSET(@@gtid_purged, %s)", (checkpoint.gtid,))
        if not cur.fetchone()[0]:
            raise LostHistoryError(
                f"{head}, but the server purged transactions it had not read (@@gtid_purged is not within the "
                f"checkpoint's set); the oldest binlog it has is {oldest}. " + RESNAPSHOT
            )
        return
    if checkpoint.file not in names or names[checkpoint.file] < checkpoint.pos:
        state = f"has that file only up to {names[checkpoint.file]}" if checkpoint.file in names else "no longer has it"
        raise LostHistoryError(
            f"{head}, but the server {state}; the oldest binlog it has is {oldest} (purged, or a replaced server "
            "that numbers its binlogs anew). " + RESNAPSHOT
        )
