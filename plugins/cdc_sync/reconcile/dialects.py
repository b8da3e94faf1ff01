"""Row hashes that agree across engines: the same row hashed in MySQL/Aurora and in BigQuery
gives the same 60-bit integer, so checksums over key ranges can be compared without moving
rows (the data-diff method). One dialect per engine owns its SQL.

Every value is first normalised to text the same way in both engines:
  integers, booleans  decimal digits ("1"/"0" for booleans)
  DECIMAL/NUMERIC     fixed point without trailing zeros ("1.1", "100", "-0.0001"): the
                      same whatever the declared scale (DECIMAL(18,4) vs NUMERIC)
  timestamp/datetime  'YYYY-MM-DD HH:MM:SS.ffffff' (a BigQuery TIMESTAMP in UTC; a MySQL
                      DATETIME as stored, which DMS reads as UTC)
  DATE                'YYYY-MM-DD'
  text                as stored (hashed as UTF-8: 4-byte characters included)
  bytes               lower-case hex
  NULL                a marker that no value can produce ("n", values get a "v" prefix),
                      so NULL and '' differ
Then the parts are joined with U+001F (unit separator), MD5-hashed, and the first 15 hex
digits read as an integer (fits INT64 and MySQL's BIGINT UNSIGNED alike).
Floating-point columns are left out of hashes: the engines print them differently.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdc_sync.sql import bigquery_ident, mysql_ident

KINDS = ("integer", "boolean", "decimal", "timestamp", "datetime", "date", "text", "bytes")


@dataclass(frozen=True)
class HashColumn:
    name: str
    kind: str  # one of KINDS

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: cannot hash kind {self.kind!r} across engines")


class MySqlDialect:
    def value(self, column: HashColumn) -> str:
        c = mysql_ident(column.name)
        if column.kind in ("integer", "boolean"):
            return f"CAST({c} AS SIGNED)"
        if column.kind == "decimal":
            text = f"CAST({c} AS CHAR)"
            return f"IF(LOCATE('.', {text}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text})), {text})"
        if column.kind in ("timestamp", "datetime"):
            return f"DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"
        if column.kind == "date":
            return f"DATE_FORMAT({c}, '%Y-%m-%d')"
        if column.kind == "bytes":
            return f"LOWER(HEX({c}))"
        return f"CAST({c} AS CHAR CHARACTER SET utf8mb4)"

    def row_hash(self, columns: list[HashColumn]) -> str:
        parts = ", ".join(f"COALESCE(CONCAT('v', {self.value(c)}), 'n')" for c in columns)
        return f"CAST(CONV(SUBSTRING(MD5(CONCAT_WS(CHAR(31 USING utf8mb4), {parts})), 1, 15), 16, 10) AS UNSIGNED)"


class BigQueryDialect:
    def value(self, column: HashColumn) -> str:
        c = bigquery_ident(column.name)
        if column.kind == "integer":
            return f"CAST({c} AS STRING)"
        if column.kind == "boolean":
            return f"CAST(CAST({c} AS INT64) AS STRING)"
        if column.kind == "decimal":
            text = f"CAST({c} AS STRING)"
            return f"IF(STRPOS({text}, '.') > 0, RTRIM(RTRIM({text}, '0'), '.'), {text})"
        if column.kind == "timestamp":
            return f"FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E6S', {c}, 'UTC')"
        if column.kind == "datetime":
            return f"FORMAT_DATETIME('%Y-%m-%d %H:%M:%E6S', {c})"
        if column.kind == "date":
            return f"FORMAT_DATE('%Y-%m-%d', {c})"
        if column.kind == "bytes":
            return f"TO_HEX({c})"
        return f"CAST({c} AS STRING)"

    def row_hash(self, columns: list[HashColumn]) -> str:
        parts = ", '\\x1f', ".join(f"COALESCE(CONCAT('v', {self.value(c)}), 'n')" for c in columns)
        return f"CAST(CONCAT('0x', SUBSTR(TO_HEX(MD5(CONCAT({parts}))), 1, 15)) AS INT64)"
