"""Row hashes that agree across engines: the same row hashed in MySQL/Aurora and in BigQuery
gives the same integer, so checksums over key ranges can be compared without moving rows
(the data-diff method). One dialect per engine owns its SQL expressions; the query shapes
are templates in include/sql/reconcile/.

Every value is first normalised to text the same way in both engines:
  integers, booleans  decimal digits ("1"/"0" for booleans)
  DECIMAL/NUMERIC     fixed point without trailing zeros ("1.1", "100", "-0.0001"): the
                      same whatever the declared scale (DECIMAL(18,4) vs NUMERIC)
  FLOAT/DOUBLE        12 significant digits as "<sign><digits>e<exponent>" ("142857142857e-12");
                      the engines print floats differently, so they are rounded the same way
                      instead (a 1e-12 relative change is below what the hash sees); 6 digits
                      when either side is a single-precision FLOAT, whose value a loader may
                      widen to double as printed ("1.1") or as stored (1.100000023841858);
                      digits that round up to 10^d lose a zero and the exponent grows
                      (float32 1e-5 is 9.99999974e-06: "100000e-10" either way)
  timestamp/datetime  'YYYY-MM-DD HH:MM:SS.ffffff' (a BigQuery TIMESTAMP in UTC; a MySQL
                      DATETIME as stored, which DMS reads as UTC; a MySQL TIMESTAMP in a
                      session whose time_zone is UTC)
  DATE                'YYYY-MM-DD'
  TIME (MySQL)        '[-]HH:MM:SS[.ffffff]', the fraction only when not zero (the loaders keep
                      TIME as text: hours run to 838, beyond BigQuery's TIME)
  text, JSON          as stored (hashed as UTF-8: 4-byte characters included)
  bytes               lower-case hex
  NULL                a marker that no value can produce ("n", values get a "v" prefix),
                      so NULL and '' differ
Text (and whatever either side holds as text: MySQL TIME) is framed by its length in UTF-8
bytes ("v3:abc"), so a value holding the separator cannot shift into its neighbour:
('x\x1fy', 'z') and ('x', 'y\x1fz') hash differently. MySQL's zero date ('0000-00-00…'),
which the loaders store as NULL, counts as NULL.
The parts are joined with U+001F (unit separator) and hashed:
  md5    the first 15 hex digits of MD5 as an integer (60 bits; fits INT64 and BIGINT
         UNSIGNED) — every pair of engines, BigQuery included;
  crc32  CRC32 of the same text (32 bits) — when both sides are MySQL/MariaDB/Aurora,
         where it costs about half of MD5 (bench_reconcile prints both). CRC32 catches every change confined to 32
         consecutive bits (a digit, a microsecond) for certain; a bucket with several
         changed rows escapes with probability 2^-32, and row counts are compared too.
  sha256 the strong mode (reconcile.checksum: strong), against someone who crafts values to
         hide a change: SHA-256 of the row text as 64 hex digits, and a bucket's checksum is
         SHA-256 of its row hashes sorted and concatenated (not a sum, which a compensating
         pair of rows cancels): hiding a change takes a SHA-256 collision. Buckets of a hash
         of the key still use the 60-bit MD5 (where a row lands is no proof of anything).
Between two MySQL servers, a column of the same declared type on both sides is "native":
hashed as the server prints it (a double as its binary exponent and mantissa, exact), with
no per-value normalisation, plus a bitmap of which of them are NULL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdc_sync.sql import bigquery_ident, mysql_ident

KINDS = ("integer", "boolean", "decimal", "float", "timestamp", "datetime", "date", "time", "text", "bytes")
HASHES = ("md5", "crc32", "sha256")
FLOAT_DIGITS = 12
SINGLE_FLOAT_DIGITS = 6  # FLT_DIG: every float32 survives 6 significant digits


@dataclass(frozen=True)
class HashColumn:
    name: str
    kind: str  # one of KINDS
    native: bool = False  # both sides MySQL with the same column type: hash the value as the server prints it
    digits: int = FLOAT_DIGITS  # floats: significant digits compared (6 when either side is single precision)
    framed: bool | None = None  # length-prefix the text; None: for text kinds (both sides must agree)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: cannot hash kind {self.kind!r} across engines")

    @property
    def is_framed(self) -> bool:
        """Whether the value's text is prefixed with its byte length (text may hold the separator)."""
        if self.framed is not None:
            return self.framed
        return self.kind == "text" or (self.native and self.kind == "bytes")


ZERO_DATE_KINDS = ("date", "datetime", "timestamp")


_MYSQL_KINDS = {
    "tinyint": "integer",
    "smallint": "integer",
    "mediumint": "integer",
    "int": "integer",
    "integer": "integer",
    "bigint": "integer",
    "year": "integer",
    "decimal": "decimal",
    "numeric": "decimal",
    "float": "float",
    "double": "float",
    "real": "float",
    "datetime": "datetime",
    "timestamp": "timestamp",
    "date": "date",
    "char": "text",
    "varchar": "text",
    "tinytext": "text",
    "text": "text",
    "mediumtext": "text",
    "longtext": "text",
    "json": "text",
    "enum": "text",
    "set": "text",
    "time": "time",
    "binary": "bytes",
    "varbinary": "bytes",
    "tinyblob": "bytes",
    "blob": "bytes",
    "mediumblob": "bytes",
    "longblob": "bytes",
    "bit": "bytes",
}
_BIGQUERY_KINDS = {
    "INTEGER": "integer",
    "INT64": "integer",
    "BOOLEAN": "boolean",
    "BOOL": "boolean",
    "NUMERIC": "decimal",
    "BIGNUMERIC": "decimal",
    "FLOAT": "float",
    "FLOAT64": "float",
    "TIMESTAMP": "timestamp",
    "DATETIME": "datetime",
    "DATE": "date",
    "STRING": "text",
    "JSON": "text",
    "BYTES": "bytes",
    "TIME": "text",
}


def native_text_equal(kind: str, source_type: str, target_type: str, same_server: bool) -> bool:
    """Whether two MySQL columns print equal values as equal text: the same declared type;
    for floats also the same server product and version (MySQL and MariaDB print them
    differently)."""
    return (kind != "float" or same_server) and source_type.lower() == target_type.lower()


def mysql_kind(column_type: str) -> str | None:
    """Hash kind of a MySQL COLUMN_TYPE (`decimal(18,4)`, `bigint(20) unsigned`); None for
    types we cannot compare."""
    base = re.match(r"[a-z]+", column_type.lower())
    return _MYSQL_KINDS.get(base[0]) if base else None


def bigquery_kind(field_type: str) -> str | None:
    return _BIGQUERY_KINDS.get(field_type.upper())


def _scaled(column: str, shift: str) -> str:
    """|x| / 10^shift as one IEEE operation by an exact power of ten (multiply when the shift is
    negative: 10^-k is inexact), then FLOOR(+0.5) — the engines' ROUND differ on ties
    (MariaDB rounds 100028571428.5 to even, BigQuery away from zero)."""
    # below 1e-300, 10^-shift alone would overflow (BigQuery and MySQL raise): two steps
    multiplied = (
        f"IF({shift} < -300, ABS({column}) * 1E300 * POW(10, -{shift} - 300), ABS({column}) * POW(10, -{shift}))"
    )
    return f"IF({shift} < 0, {multiplied}, ABS({column}) / POW(10, {shift}))"


class MySqlDialect:
    engine = "mysql"

    def __init__(self, hash_function: str = "md5"):
        if hash_function not in HASHES:
            raise ValueError(f"unknown hash function {hash_function!r}")
        self.hash_function = hash_function

    def ident(self, name: str) -> str:
        return mysql_ident(name)

    def value(self, column: HashColumn) -> str:
        """The column as canonical text (NULL stays NULL)."""
        c = mysql_ident(column.name)
        if column.kind in ("integer", "boolean"):
            return f"CAST({c} AS CHAR)"
        if column.kind == "decimal":
            text = f"CAST({c} AS CHAR)"
            return f"IF(LOCATE('.', {text}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text})), {text})"
        if column.kind == "float":
            shift = f"(FLOOR(LOG10(ABS({c}))) - {column.digits - 1})"
            digits = f"CAST(FLOOR({_scaled(c, shift)} + 0.5) AS UNSIGNED)"
            carry = f"({digits} >= {10**column.digits})"  # rounded up to the next power of ten
            return (
                f"IF({c} = 0, '0', CONCAT(IF({c} < 0, '-', ''), IF({carry}, {digits} DIV 10, {digits}), 'e', "
                f"CAST({shift} + {carry} AS SIGNED)))"
            )
        if column.kind in ZERO_DATE_KINDS:  # the zero date is NULL in every target (the loaders' rule)
            text = (
                f"DATE_FORMAT({c}, '%Y-%m-%d %H:%i:%s.%f')"
                if column.kind != "date"
                else f"DATE_FORMAT({c}, '%Y-%m-%d')"
            )
            return f"IF(LEFT({text}, 10) = '0000-00-00', NULL, {text})"
        if column.kind == "time":  # as DMS files carry it: [-]HH:MM:SS, .ffffff only when not zero
            return (
                f"CONCAT(TIME_FORMAT({c}, '%H:%i:%s'), "
                f"IF(MICROSECOND({c}) = 0, '', CONCAT('.', LPAD(MICROSECOND({c}), 6, '0'))))"
            )
        if column.kind == "bytes":  # CAST: HEX of a BIT value would print the number (b'00000001' → '1')
            return f"LOWER(HEX(CAST({c} AS BINARY)))"
        return f"CAST({c} AS CHAR CHARACTER SET utf8mb4)"

    def native(self, column: HashColumn) -> str:
        """A column of the same type on both sides, as text that is equal exactly when the
        values are: as the server prints it; a double as its binary exponent and 53-bit
        mantissa in integers (exact, and about a third cheaper than printing it)."""
        c = mysql_ident(column.name)
        if column.kind in ZERO_DATE_KINDS:  # a zero date (0 as a number) is NULL, as the loaders store it
            return f"NULLIF({c}, 0)"
        if column.kind != "float":
            return c
        exponent = f"FLOOR(LOG2(ABS({c})))"  # off by one near powers of two: the mantissa is still integral
        # below 1e-290 POW(2, 53 - exponent) would overflow: those few are printed
        return (
            f"IF(ABS({c}) < 1E-290, CAST({c} AS CHAR), "
            f"CONCAT({exponent}, ':', CAST({c} * POW(2, 53 - {exponent}) AS SIGNED)))"
        )

    def compared(self, column: HashColumn) -> str:
        """What names a differing column: the text that was hashed."""
        return self.native(column) if column.native else self.value(column)

    def _part(self, column: HashColumn) -> str:
        """One column's part of the row text: native as printed (NULL skipped), else 'v' + value or 'n'."""
        text = self.native(column) if column.native else self.value(column)
        if column.is_framed:  # the byte length first: a separator inside the value cannot shift a boundary
            text = f"CONCAT(LENGTH({text}), ':', {text})"
        return text if column.native else f"COALESCE(CONCAT('v', {text}), 'n')"

    def _text(self, columns: list[HashColumn]) -> str:
        parts = [self._part(c) for c in columns]
        # CONCAT_WS skips NULLs; for native columns a bitmap of which were NULL keeps NULL apart
        # from '' and ('x', NULL) from (NULL, 'x'). Counting non-NULL values per bucket would cost
        # less, but two rows' opposite shifts would cancel out.
        native = [c for c in columns if c.native]
        for start in range(0, len(native), 60):
            bits = " + ".join(
                f"({self.native(c)} IS NULL) * {1 << i}" for i, c in enumerate(native[start : start + 60])
            )
            parts.append(f"CAST({bits} AS CHAR)")
        return f"CONCAT_WS(CHAR(31 USING utf8mb4), {', '.join(parts)})"

    @property
    def digest(self) -> bool:
        """Whether buckets are digests of their sorted row hashes (strong mode), not sums."""
        return self.hash_function == "sha256"

    def row_hash(self, columns: list[HashColumn]) -> str:
        if self.hash_function == "crc32":
            return f"CRC32({self._text(columns)})"
        if self.hash_function == "sha256":
            return f"SHA2({self._text(columns)}, 256)"
        return self.key_hash(columns)

    def key_hash(self, columns: list[HashColumn]) -> str:
        """An integer hash of the key columns, for buckets by residue (the same in every mode but
        crc32, whose keys hash as its rows do)."""
        if self.hash_function == "crc32":
            return self.row_hash(columns)
        return f"CAST(CONV(SUBSTRING(MD5({self._text(columns)}), 1, 15), 16, 10) AS UNSIGNED)"

    def checksum(self, row_hash: str) -> str:
        """Sum of row hashes over a group (exact: MySQL sums integers as DECIMAL); in strong mode
        SHA-256 of the sorted row hashes (`row_hash` is then the name of a derived column)."""
        if self.digest:
            return f"SHA2(GROUP_CONCAT({row_hash} ORDER BY {row_hash} SEPARATOR ''), 256)"
        return f"SUM({row_hash})"

    def bucket(self, expression: str, origin: int, width: int) -> str:
        # DIV, not FLOOR(a / b): '/' is DECIMAL division rounded to 4 more digits (0.99995 → 1)
        return f"(({expression} - {int(origin)}) DIV {int(width)})"

    def modulo(self, expression: str, modulus: int) -> str:
        return f"MOD({expression}, {int(modulus)})"


class BigQueryDialect:
    engine = "bigquery"

    def __init__(self, hash_function: str = "md5"):
        if hash_function not in ("md5", "sha256"):
            raise ValueError(f"hash function {hash_function!r} is not available against BigQuery")
        self.hash_function = hash_function

    @property
    def digest(self) -> bool:
        return self.hash_function == "sha256"

    def ident(self, name: str) -> str:
        return bigquery_ident(name)

    def value(self, column: HashColumn) -> str:
        c = bigquery_ident(column.name)
        if column.kind == "integer":
            return f"CAST({c} AS STRING)"
        if column.kind == "boolean":
            return f"CAST(CAST({c} AS INT64) AS STRING)"
        if column.kind == "decimal":
            text = f"CAST({c} AS STRING)"
            return f"IF(STRPOS({text}, '.') > 0, RTRIM(RTRIM({text}, '0'), '.'), {text})"
        if column.kind == "float":
            shift = f"(CAST(FLOOR(LOG10(ABS({c}))) AS INT64) - {column.digits - 1})"
            digits = f"CAST(FLOOR({_scaled(c, shift)} + 0.5) AS INT64)"
            carry = f"({digits} >= {10**column.digits})"  # rounded up to the next power of ten
            return (
                f"IF({c} = 0, '0', CONCAT(IF({c} < 0, '-', ''), "
                f"CAST(IF({carry}, DIV(({digits}), 10), {digits}) AS STRING), 'e', "
                f"CAST({shift} + IF({carry}, 1, 0) AS STRING)))"
            )
        if column.kind == "timestamp":
            return f"FORMAT_TIMESTAMP('%Y-%m-%d %H:%M:%E6S', {c}, 'UTC')"
        if column.kind == "datetime":
            return f"FORMAT_DATETIME('%Y-%m-%d %H:%M:%E6S', {c})"
        if column.kind == "date":
            return f"FORMAT_DATE('%Y-%m-%d', {c})"
        if column.kind == "bytes":
            return f"TO_HEX({c})"
        return f"CAST({c} AS STRING)"

    def compared(self, column: HashColumn) -> str:
        return self.value(column)

    def _part(self, column: HashColumn) -> str:
        text = self.value(column)
        if column.is_framed:
            text = f"CONCAT(CAST(BYTE_LENGTH({text}) AS STRING), ':', {text})"
        return f"COALESCE(CONCAT('v', {text}), 'n')"

    def _text(self, columns: list[HashColumn]) -> str:
        return "CONCAT(" + ", '\\x1f', ".join(self._part(c) for c in columns) + ")"

    def row_hash(self, columns: list[HashColumn]) -> str:
        if self.hash_function == "sha256":
            return f"TO_HEX(SHA256({self._text(columns)}))"
        return self.key_hash(columns)

    def key_hash(self, columns: list[HashColumn]) -> str:
        return f"CAST(CONCAT('0x', SUBSTR(TO_HEX(MD5({self._text(columns)})), 1, 15)) AS INT64)"

    def checksum(self, row_hash: str) -> str:
        if self.digest:
            return f"TO_HEX(SHA256(STRING_AGG({row_hash}, '' ORDER BY {row_hash})))"
        # NUMERIC holds 29 integer digits: 60-bit hashes of up to 10^11 rows sum exactly
        return f"SUM(CAST({row_hash} AS NUMERIC))"

    def bucket(self, expression: str, origin: int, width: int) -> str:
        # the inner parentheses matter to the emulator: it turns DIV(x - 1, 5) into x - 1 // 5
        return f"DIV(({expression} - {int(origin)}), {int(width)})"

    def modulo(self, expression: str, modulus: int) -> str:
        return f"MOD(({expression}), {int(modulus)})"
