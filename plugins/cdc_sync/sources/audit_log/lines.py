"""Parse Aurora MySQL / MariaDB server_audit lines.

A line is ``timestamp,serverhost,username,host,connectionid,queryid,operation,database,
'object',retcode`` (Aurora MySQL 3 may add fields after retcode; they are kept). The object
is single-quoted, with ``\\'`` for a quote and ``\\\\`` for a backslash (MariaDB also writes
``\\n``, ``\\r`` and ``\\t``); it may hold commas, raw newlines and any UTF-8 text. The first
eight fields never hold a comma or a quote, so the line is split at its first eight commas
and at its last quote: no character-by-character scan in Python.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import msgspec

from cdc_sync.errors import BadInput

_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED = {"n": "\n", "r": "\r", "t": "\t", "0": "\0"}
# Any epoch in up to 17 ASCII digits is a time before year 10000; longer ones are checked.
PLAIN_TIME_DIGITS = 17
# What the trail table holds (connection_id and query_id bigint, retcode int): a value past
# that would fail the whole file later, so the line is refused here instead.
ID_RANGE = range(-(2**63), 2**63)
RETCODE_RANGE = range(-(2**31), 2**31)


class AuditEvent(msgspec.Struct, frozen=True):
    """One audit record, fields as the server wrote them (the object unescaped).

    The time is kept as the server's text (checked when parsed) and converted when asked
    for: the trigger never needs the time of the many events that wrote nothing."""

    time_text: str
    server_host: str
    user: str
    host: str
    connection_id: int
    query_id: int
    operation: str
    database: str
    statement: str
    retcode: int
    extra: tuple[str, ...] = ()

    @property
    def timestamp(self) -> datetime:
        return parse_timestamp(self.time_text)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(text: str) -> datetime:
    """Aurora writes epoch microseconds (some versions seconds or ms); MariaDB ``YYYYMMDD HH:MM:SS``."""
    if text.isdigit():
        value = int(text)
        digits = len(text)
        if digits > 13:  # microseconds: exact, no float in between
            return _EPOCH + timedelta(microseconds=value)
        return datetime.fromtimestamp(value / (1 if digits <= 10 else 1_000), UTC)
    return datetime.strptime(text, "%Y%m%d %H:%M:%S").replace(tzinfo=UTC)


def _unescape_char(match: re.Match[str]) -> str:
    char = match.group(1)
    return _UNESCAPED.get(char, char)


def unescape(quoted_body: str) -> str:
    """Undo the audit plugin's escaping of the object text (between the quotes)."""
    if "\\" not in quoted_body:
        if "'" in quoted_body:
            raise ValueError("a quote inside the object is not escaped")
        return quoted_body
    if "\0" not in quoted_body:  # fast path: str.replace with NUL standing for an escaped backslash
        work = quoted_body.replace("\\\\", "\0") if "\\\\" in quoted_body else quoted_body
        if work[-1] == "\\":
            raise ValueError("the object ends inside an escape")
        quotes = work.count("'")
        if quotes:
            if quotes != work.count("\\'"):  # every quote has its backslash
                raise ValueError("a quote inside the object is not escaped")
            work = work.replace("\\'", "'")
        if "\\" not in work:
            return work.replace("\0", "\\")
        work = work.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")
        if "\\" not in work:
            return work.replace("\0", "\\")
    if "'" in _ESCAPE.sub("", quoted_body):
        raise ValueError("a quote inside the object is not escaped")
    if (len(quoted_body) - len(quoted_body.rstrip("\\"))) % 2 == 1:
        raise ValueError("the object ends inside an escape")
    return _ESCAPE.sub(_unescape_char, quoted_body)


def check_time(text: str) -> None:
    """Refuse a timestamp parse_timestamp cannot read, naming it (ValueError)."""
    try:
        parse_timestamp(text)
    except (ValueError, OverflowError):  # OverflowError: past year 9999
        raise ValueError(f"timestamp {text!r} is neither epoch digits nor YYYYMMDD HH:MM:SS") from None


def parse_line(line: str) -> AuditEvent:
    """Parse one audit line; ValueError says what is wrong (the caller adds where)."""
    head = line.split(",", 8)
    if len(head) != 9:
        raise ValueError(f"{len(head)} comma-separated fields before the object, 9 expected")
    timestamp, server_host, user, host, connection_id, query_id, operation, database, rest = head
    if rest[:1] != "'":
        raise ValueError("field 9 (the object) does not start with a single quote")
    end = rest.rfind("'")
    if end == 0:
        raise ValueError("field 9 (the object) has no closing quote")
    if rest[end + 1 : end + 2] != ",":
        raise ValueError("no retcode after the object")
    tail = rest[end + 2 :]
    if "," in tail:
        retcode_text, *extra = tail.split(",")
    else:
        retcode_text, extra = tail, []
    try:
        retcode = int(retcode_text)
    except ValueError:
        raise ValueError(f"retcode {retcode_text!r} is not an integer") from None
    if retcode not in RETCODE_RANGE:
        raise ValueError(f"retcode {retcode_text!r} is out of range")
    if not (len(timestamp) <= PLAIN_TIME_DIGITS and timestamp.isascii() and timestamp.isdigit()):
        check_time(timestamp)  # also the digits int() refuses ("²") and times past year 9999
    try:
        connection, query = int(connection_id), int(query_id)
    except ValueError:
        raise ValueError(f"connection id {connection_id!r} / query id {query_id!r} not integers") from None
    if connection not in ID_RANGE or query not in ID_RANGE:
        raise ValueError(f"connection id {connection_id!r} / query id {query_id!r} out of the 64-bit range")
    return AuditEvent(
        timestamp,
        server_host,
        user,
        host,
        connection,
        query,
        operation,
        database,
        unescape(rest[1:end]),
        retcode,
        tuple(extra),
    )


def parse_audit_line(line: str, where: str) -> AuditEvent:
    """parse_line, with BadInput naming `where` (record and log event) and the line."""
    try:
        return parse_line(line)
    except ValueError as exc:
        raise BadInput(f"{where}: audit line does not parse: {exc}: {line[:300]!r}") from exc
