"""A MySQL/Aurora hook on pymysql (the mysql provider needs mysqlclient, a C build).

Same connection fields as the mysql provider (`conn_type: mysql`): host, port, login,
password, schema; extras `connect_timeout` and TLS (see `tls_arguments`).

LOCAL INFILE is off unless a caller asks for it. Every connection is a `LocalFileGuard`:
the server may read a worker file only while a `LOAD DATA LOCAL INFILE
'<path>'` statement is in flight, only that statement's path, and only once; any other
request (a compromised server, or anyone on the path when TLS is off, asking for Airflow's
config or another DAG's data) gets no byte of the file and the statement fails with
`LocalFileRefused`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pymysql
from airflow.providers.common.sql.hooks.sql import DbApiHook
from pymysql.connections import Connection, MySQLResult
from pymysql.protocol import LoadLocalPacketWrapper

from cdc_sync.errors import SetupError

log = logging.getLogger(__name__)
CR_LOAD_DATA_LOCAL_INFILE_REJECTED = 2068  # libmysqlclient's code for the same refusal
_HEAD_CHARS = 16384  # of a statement, searched for its LOCAL INFILE path

# The statement's own file: comments, then LOAD DATA [LOW_PRIORITY|CONCURRENT] LOCAL INFILE
# '<path>'. Only literals without quotes or backslashes are recognised (sql.mysql_string
# writes no others), so the path the server names back is compared to exactly this text.
_LOAD_LOCAL = re.compile(
    r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*"
    r"LOAD\s+DATA\s+(?:(?:LOW_PRIORITY|CONCURRENT)\s+)?LOCAL\s+INFILE\s+'([^'\\]*)'",
    re.IGNORECASE | re.DOTALL,
)


class LocalFileRefused(pymysql.err.OperationalError, SetupError):
    """The server asked for a local file that the statement in flight did not name."""


def local_file_of(statement: str) -> str | None:
    """The path a `LOAD DATA LOCAL INFILE` statement names, or None for any other statement."""
    match = _LOAD_LOCAL.match(statement)
    return match[1] if match else None


class _GuardedResult(MySQLResult):
    def _read_load_local_packet(self, first_packet) -> None:
        conn = self.connection
        assert isinstance(conn, LocalFileGuard)
        requested = LoadLocalPacketWrapper(first_packet).filename
        requested = requested.decode(conn.encoding, "replace") if isinstance(requested, bytes) else requested
        allowed, conn._local_file_in_flight = conn._local_file_in_flight, None  # one file, once
        if conn._local_infile and allowed is not None and requested == allowed:
            super()._read_load_local_packet(first_packet)
            return
        # Refused: send no byte of it, end the transfer (an empty packet) and read the
        # server's answer, so the connection stays in step; then fail the statement.
        conn.write_packet(b"")
        try:
            answer = conn._read_packet()  # the server's answer to an empty file: OK or an error
            if answer.is_ok_packet():
                self._read_ok_packet(answer)
        except pymysql.err.MySQLError:
            pass  # whatever it said, the statement fails for the request below
        named = f"'{allowed}'" if allowed is not None else "no file"
        log.error(
            "MySQL server %s asked for local file %r; the statement in flight named %s: refused, nothing sent",
            conn.host,
            requested,
            named,
        )
        raise LocalFileRefused(
            CR_LOAD_DATA_LOCAL_INFILE_REJECTED,
            f"server {conn.host}:{conn.port} asked for local file {requested!r}, but the statement in flight "
            f"named {named}: refused, no byte of it was sent",
        )


class LocalFileGuard(Connection):
    """A pymysql connection that answers a LOCAL INFILE request only with the file of the
    `LOAD DATA LOCAL INFILE` statement it just sent, during that statement."""

    _local_file_in_flight: str | None = None

    def query(self, sql, unbuffered: bool = False):
        head = sql[:_HEAD_CHARS]  # the path comes first, after any comments; a batch of rows may be megabytes
        text = bytes(head).decode(self.encoding, "replace") if isinstance(head, (bytes, bytearray)) else head
        self._local_file_in_flight = local_file_of(text)
        try:
            return super().query(sql, unbuffered=unbuffered)
        finally:
            self._local_file_in_flight = None

    def next_result(self, unbuffered: bool = False):
        self._local_file_in_flight = None  # a further result of a statement names no file
        return super().next_result(unbuffered=unbuffered)

    def _read_query_result(self, unbuffered: bool = False):
        # as pymysql's, with a result that checks what a LOCAL INFILE request names
        self._result = None
        result = _GuardedResult(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows


def connect(**kwargs: Any) -> LocalFileGuard:
    """pymysql.connect, as a LocalFileGuard (which, without `local_infile`, refuses every
    request and stays in step with the server)."""
    return LocalFileGuard(**kwargs)


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "required")


def tls_arguments(extra: dict) -> dict[str, Any]:
    """pymysql's TLS arguments from a connection's extras.

    `ssl_ca` (a CA bundle, e.g. RDS's global-bundle.pem) alone turns on TLS that is required
    and verified, certificate and host name (`ssl_verify_identity: false` keeps the
    certificate check only); `ssl_cert`/`ssl_key` add a client certificate; `ssl` (a dict or
    its JSON, as the mysql provider takes it) is passed through; `ssl_disabled: true` turns
    TLS off. Without any of them pymysql uses TLS when the server offers it, unverified."""
    out: dict[str, Any] = {}
    ssl = extra.get("ssl")
    if isinstance(ssl, str) and ssl.strip():
        ssl = json.loads(ssl)
    if ssl:
        out["ssl"] = ssl
    if extra.get("ssl_ca"):
        out["ssl_ca"] = str(extra["ssl_ca"])
        out["ssl_verify_cert"] = _flag(extra.get("ssl_verify_cert", True))
        out["ssl_verify_identity"] = _flag(extra.get("ssl_verify_identity", True))
    else:
        for name in ("ssl_verify_cert", "ssl_verify_identity"):
            if name in extra:
                out[name] = _flag(extra[name])
    for name in ("ssl_cert", "ssl_key"):
        if extra.get(name):
            out[name] = str(extra[name])
    if "ssl_disabled" in extra:
        out["ssl_disabled"] = _flag(extra["ssl_disabled"])
    return out


class CdcMySqlHook(DbApiHook):
    conn_name_attr = "mysql_conn_id"
    default_conn_name = "aurora_default"
    conn_type = "mysql"
    hook_name = "MySQL / Aurora (pymysql)"
    supports_autocommit = True

    def connection_settings(self) -> dict[str, Any]:
        """pymysql.connect arguments of the connection (host, port, user, password, TLS), for
        clients that open their own connections (the binlog reader)."""
        conn = self.get_connection(self.get_conn_id())
        extra = conn.extra_dejson
        return {
            "host": conn.host or "127.0.0.1",
            "port": int(conn.port or 3306),
            "user": conn.login or "",
            "passwd": conn.password or "",
            "connect_timeout": int(extra.get("connect_timeout", 10)),
            **tls_arguments(extra),
        }

    def get_conn(self, *, local_infile: bool = False, autocommit: bool = False):
        conn = self.get_connection(self.get_conn_id())
        extra = conn.extra_dejson
        return connect(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 3306),
            user=conn.login or "",
            password=conn.password or "",
            database=conn.schema or None,
            charset="utf8mb4",
            autocommit=autocommit,
            local_infile=local_infile,
            connect_timeout=int(extra.get("connect_timeout", 10)),
            **tls_arguments(extra),
        )
