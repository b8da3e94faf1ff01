"""The two sides of a comparison: a MySQL/Aurora table or view, or a BigQuery view.

A side runs the reconciliation queries (include/sql/reconcile/) inside its own database
and returns only aggregates, or rows for the few keys that differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from cdc_sync.mysql_catalog import column_types
from cdc_sync.reconcile.dialects import BigQueryDialect, HashColumn, MySqlDialect, bigquery_kind, mysql_kind
from cdc_sync.sql import bigquery_table, mysql_ident, render

KeyTuple = tuple  # a primary key as Python values, normalised by key_token


def time_text(value: dt.timedelta) -> str:
    """A MySQL TIME (pymysql's timedelta) as the loaders keep it: [-]HH:MM:SS[.ffffff]."""
    micros = abs(value) // dt.timedelta(microseconds=1)
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" + (
        f".{fraction:06d}" if fraction else ""
    )
    return ("-" if value < dt.timedelta(0) else "") + text


def key_token(value: Any) -> Any:
    """A key value as it compares across engines (BigQuery returns aware datetimes, NUMERIC
    as Decimal, TIME kept as text; MySQL naive datetimes, TIME as timedelta)."""
    if isinstance(value, dt.timedelta):
        return time_text(value)
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value.normalize()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return value


def mysql_param(value: Any) -> Any:
    """A key as compared (key_token: aware UTC datetimes) as a parameter of a UTC session."""
    if isinstance(value, dt.datetime) and value.tzinfo:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


_BIGQUERY_TYPES = {
    bool: "BOOL",
    int: "INT64",
    float: "FLOAT64",
    str: "STRING",
    bytes: "BYTES",
    Decimal: "NUMERIC",
    dt.datetime: "TIMESTAMP",
    dt.date: "DATE",
    type(None): "STRING",
}


def bigquery_parameter(name: str, value: Any):
    """A named query parameter typed after the Python value (an integer beyond INT64, such as
    a BIGINT UNSIGNED key, as NUMERIC)."""
    from google.cloud import bigquery

    if type(value) is int and not -(2**63) <= value < 2**63:
        return bigquery.ScalarQueryParameter(name, "NUMERIC" if abs(value) < 10**29 else "BIGNUMERIC", Decimal(value))
    return bigquery.ScalarQueryParameter(name, _BIGQUERY_TYPES[type(value)], value)


def _hash_value(value: Any) -> Any:
    """A hash or checksum as compared: integers (sums) as int, digests as lower-case hex text."""
    if isinstance(value, bytes):
        value = value.decode("ascii")
    return value.lower() if isinstance(value, str) else int(value)


class Side:
    """What the comparison needs from one database. Subclasses bind dialect and driver."""

    label: str
    dialect: MySqlDialect | BigQueryDialect
    relation: str  # rendered, quoted name of the table or view

    def server(self) -> str:
        return self.dialect.engine

    def close(self) -> None:
        pass

    def kinds(self) -> dict[str, tuple[str | None, str]]:
        """Column name → (hash kind or None, declared type), in table order."""
        raise NotImplementedError

    def run(self, sql: str, params: Sequence = ()) -> list[tuple]:
        raise NotImplementedError

    def marker(self, index: int) -> str:
        raise NotImplementedError

    def watermark(self) -> dt.datetime | None:
        """The commit time of the newest change this side has loaded (targets only)."""
        return None

    # --- queries -------------------------------------------------------------------
    def bounds(self, column: str) -> tuple[Any, Any]:
        low, high = self.run(render("reconcile/bounds.sql", column=self.dialect.ident(column), relation=self.relation))[
            0
        ]
        return low, high

    def checksums(self, bucket: str, row_hash: str, where: str) -> dict[int, tuple[int, Any]]:
        digest = self.dialect.digest
        sql = render(
            "reconcile/checksums.sql",
            bucket=bucket,
            row_hash=row_hash,
            relation=self.relation,
            where=where,
            checksum=self.dialect.checksum("h" if digest else row_hash),
            digest=digest,
        )
        return {int(b): (int(n), _hash_value(s)) for b, n, s in self.run(sql)}

    def row_hashes(self, key_columns: list[str], row_hash: str, where: str) -> dict[KeyTuple, Any]:
        sql = render(
            "reconcile/row_hashes.sql",
            key_columns=[self.dialect.ident(c) for c in key_columns],
            row_hash=row_hash,
            relation=self.relation,
            where=where,
        )
        width = len(key_columns)
        return {tuple(key_token(v) for v in row[:width]): _hash_value(row[width]) for row in self.run(sql)}

    def row_values(
        self, key_columns: list[str], columns: list[HashColumn], keys: list[KeyTuple], extra: Sequence[str] = ()
    ) -> dict[KeyTuple, tuple]:
        """Canonical text of `columns` (then raw `extra` columns) for `keys`, by key."""
        found: dict[KeyTuple, tuple] = {}
        width = len(key_columns)
        values = [self.dialect.compared(c) for c in columns] + [self.dialect.ident(c) for c in extra]
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            where, params = self.key_filter(key_columns, chunk)
            sql = render(
                "reconcile/row_values.sql",
                key_columns=[self.dialect.ident(c) for c in key_columns],
                values=values,
                relation=self.relation,
                where=where,
            )
            for row in self.run(sql, params):
                found[tuple(key_token(v) for v in row[:width])] = tuple(row[width:])
        return found

    def param_value(self, value: Any) -> Any:
        return value

    def key_filter(self, key_columns: list[str], keys: list[KeyTuple]) -> tuple[str, list]:
        params: list = []
        clauses = []
        for key in keys:
            parts = []
            for column, value in zip(key_columns, key, strict=True):
                parts.append(f"{self.dialect.ident(column)} = {self.marker(len(params))}")
                params.append(self.param_value(value))
            clauses.append("(" + " AND ".join(parts) + ")")
        return (" OR ".join(clauses) or "FALSE"), params


class MySqlSide(Side):
    """A MySQL/MariaDB/Aurora table or view, through a DB-API connection factory."""

    def __init__(
        self,
        label: str,
        connect: Callable,
        database: str,
        relation: str,
        *,
        hash_function: str = "md5",
        watermark_column: str | None = None,
        state_relation: str | None = None,
    ):
        self.label = label
        self.connect = connect
        self.database = database
        self.relation_name = relation
        self.relation = f"{mysql_ident(database)}.{mysql_ident(relation)}"
        self.dialect = MySqlDialect(hash_function)
        self.watermark_column = watermark_column
        self.state_relation = state_relation
        self._conn = None

    def _connection(self):
        if self._conn is None:
            self._conn = self.connect()
            with self._conn.cursor() as cur:
                # TIMESTAMP columns are read in UTC, like DMS reads them
                cur.execute("SET SESSION time_zone = '+00:00'")
                if self.dialect.digest:  # a bucket's row hashes are concatenated: never truncated
                    cur.execute("SET SESSION group_concat_max_len = 4294967295")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, sql: str, params: Sequence = ()) -> list[tuple]:
        conn = self._connection()
        with conn.cursor() as cur:
            if params:
                cur.execute(sql.replace("%", "%%").replace(self._MARKER, "%s"), tuple(params))
            else:
                cur.execute(sql)
            rows = list(cur.fetchall())
        conn.commit()  # end the read snapshot: the next query sees new commits
        return rows

    _MARKER = "\x00param\x00"  # DATE_FORMAT's '%s' must not be taken for a parameter

    def marker(self, index: int) -> str:
        return self._MARKER

    def param_value(self, value: Any) -> Any:
        return mysql_param(value)

    def server(self) -> str:
        """Product and major.minor version ("mariadb 10.11", "mysql 8.0"): servers that print
        values the same way, floats included."""
        version = str(self.run("SELECT VERSION()")[0][0]).lower()
        product = "mariadb" if "mariadb" in version else "mysql"
        return f"{product} {'.'.join(version.split('-')[0].split('.')[:2])}"

    def kinds(self) -> dict[str, tuple[str | None, str]]:
        conn = self._connection()
        columns = column_types(conn, self.database, self.relation_name)
        conn.commit()
        return {name: (mysql_kind(column_type), column_type) for name, column_type in columns}

    def watermark(self) -> dt.datetime | None:
        if not self.watermark_column:
            return None
        relation = f"{mysql_ident(self.database)}.{mysql_ident(self.state_relation or self.relation_name)}"
        value = self.run(f"SELECT MAX({mysql_ident(self.watermark_column)}) FROM {relation}")[0][0]
        return key_token(value) if value is not None else None


class BigQuerySide(Side):
    """A BigQuery table or view (the latest-state view of a changelog)."""

    def __init__(
        self,
        label: str,
        client,
        project: str,
        dataset: str,
        relation: str,
        *,
        changelog: str | None = None,
        hash_function: str = "md5",
    ):
        self.label = label
        self.client = client
        self.project, self.dataset, self.relation_name = project, dataset, relation
        self.relation = bigquery_table(project, dataset, relation)
        self.changelog = changelog
        self.dialect = BigQueryDialect(hash_function)

    def close(self) -> None:
        pass

    def marker(self, index: int) -> str:
        return f"@p{index}"

    def run(self, sql: str, params: Sequence = ()) -> list[tuple]:
        from google.cloud import bigquery

        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery_parameter(f"p{i}", v) for i, v in enumerate(params)]
        )
        return [tuple(row.values()) for row in self.client.query(sql, job_config=config).result()]

    def kinds(self) -> dict[str, tuple[str | None, str]]:
        from google.api_core.exceptions import NotFound

        try:
            table = self.client.get_table(f"{self.project}.{self.dataset}.{self.relation_name}")
        except NotFound:
            return {}
        # the legacy name FLOAT is a double: say FLOAT64 so it is not taken for MySQL's single FLOAT
        return {
            f.name: (bigquery_kind(f.field_type), "FLOAT64" if f.field_type == "FLOAT" else f.field_type)
            for f in table.schema
        }

    def watermark(self) -> dt.datetime | None:
        if not self.changelog:
            return None
        value = self.run(
            f"SELECT MAX(_cdc_commit_ts) FROM {bigquery_table(self.project, self.dataset, self.changelog)}"
        )[0][0]
        return key_token(value) if value is not None else None


class AbsentSide(Side):
    """A target table or view that does not exist yet (nothing loaded): it holds no rows."""

    def __init__(self, side: Side):
        self.label, self.dialect, self.relation = side.label, side.dialect, side.relation

    def bounds(self, column: str) -> tuple[Any, Any]:
        return None, None

    def checksums(self, bucket: str, row_hash: str, where: str) -> dict[int, tuple[int, Any]]:
        return {}

    def row_hashes(self, key_columns: list[str], row_hash: str, where: str) -> dict[KeyTuple, Any]:
        return {}

    def row_values(self, key_columns, columns, keys, extra=()) -> dict[KeyTuple, tuple]:
        return {}
