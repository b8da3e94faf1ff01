"""Parse all the audit lines of a batch at once with pyarrow.compute, into one Arrow table.

lines.parse_line stays the rule: every line is either parsed here to exactly what
parse_line gives, or handed to parse_line itself (which parses it, or refuses it with its
reason). Here a line is cut at its first ``,'`` (the object's opening quote follows the
eighth comma, since the first eight fields hold no quote: a head of other than eight fields
goes to parse_line) and its remainder at its last ``',``; ids and retcode must be ASCII
digits, the timestamp too (other times are checked once per distinct value), the object
free of quotes and backslashes or unescaped by the common escapes (``\\'``, ``\\\\``,
``\\n``, ``\\r``, ``\\t``). Anything else, rare in real logs, goes to parse_line.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cdc_sync.sources.audit_log.lines import PLAIN_TIME_DIGITS, AuditEvent, check_time, parse_line

# The AuditEvent fields, in order, and `line`: the line's index in the messages parsed.
EVENT_SCHEMA = pa.schema(
    [
        ("time_text", pa.string()),
        ("server_host", pa.string()),
        ("user", pa.string()),
        ("host", pa.string()),
        ("connection_id", pa.int64()),
        ("query_id", pa.int64()),
        ("operation", pa.string()),
        ("database", pa.string()),
        ("statement", pa.string()),
        ("retcode", pa.int32()),
        ("extra", pa.list_(pa.string())),
        ("line", pa.int64()),
    ]
)
EVENT_FIELDS = tuple(EVENT_SCHEMA.names[:-1])
_ID_DIGITS = 18  # up to 18 digits always fit in int64 (ID_RANGE)
_RETCODE_DIGITS = 9  # and 9 in int32 (RETCODE_RANGE)


def _pieces(lists: pa.ListArray, count: int) -> list[pa.Array]:
    """The `count` pieces of lists that all have `count` elements, one array per position."""
    flat = lists.flatten()
    rows = len(lists)
    return [flat.take(pa.array(np.arange(k, rows * count, count))) for k in range(count)]


def _keep(mask: pa.Array) -> bool:
    """True when every row passed (no filtering needed)."""
    return bool(pc.all(mask).as_py()) if len(mask) else True


def _digits(text: pa.Array, most: int) -> pa.Array:
    return pc.and_(pc.ascii_is_decimal(text), pc.less_equal(pc.binary_length(text), most))


# What an escaped byte stands for (lines._UNESCAPED); any other stands for itself.
_ESCAPED = np.arange(256, dtype=np.uint8)
for _char, _meaning in (("n", "\n"), ("r", "\r"), ("t", "\t"), ("0", "\0")):
    _ESCAPED[ord(_char)] = ord(_meaning)


def _rows_of(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.searchsorted(offsets, positions, side="right") - 1


def _unescape(body: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """lines.unescape over every object at once: the objects, and a mask of those it would
    refuse (a quote not escaped, or the object ends inside an escape: parse_line says which).

    Done on the bytes with numpy, as the audit plugin's escaping is: a backslash escapes
    the byte after it, backslashes pairing left to right from the start of each object
    (none pairs across two objects); the escaping backslashes are dropped, escaped n, r, t
    and 0 become the characters they stand for (a byte escaped is ASCII or a UTF-8 lead
    byte, so the result is UTF-8 still)."""
    rows = len(body)
    refused = np.zeros(rows, dtype=bool)
    _, offsets_buffer, data_buffer = body.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=rows + 1, offset=body.offset * 4)
    octets = np.frombuffer(data_buffer, dtype=np.uint8, count=int(offsets[-1]))
    backslashes = np.flatnonzero(octets == ord("\\"))
    quotes = np.flatnonzero(octets == ord("'"))
    if not len(backslashes):
        refused[_rows_of(offsets, quotes)] = True
        return body, refused
    row = _rows_of(offsets, backslashes)
    run_starts = np.ones(len(backslashes), dtype=bool)
    run_starts[1:] = (np.diff(backslashes) != 1) | (np.diff(row) != 0)
    first = np.flatnonzero(run_starts)
    index_in_run = np.arange(len(backslashes)) - first[np.cumsum(run_starts) - 1]
    escaping = backslashes[index_in_run % 2 == 0]
    escaping_row = row[index_in_run % 2 == 0]
    inside = escaping + 1 < offsets[escaping_row + 1]
    refused[escaping_row[~inside]] = True  # ends inside an escape
    escaping, escaping_row = escaping[inside], escaping_row[inside]
    nearest = np.minimum(np.searchsorted(escaping, quotes - 1), max(len(escaping) - 1, 0))
    escaped_quote = (escaping[nearest] == quotes - 1) if len(escaping) else np.zeros(len(quotes), dtype=bool)
    refused[_rows_of(offsets, quotes[~escaped_quote])] = True
    out = octets.copy()
    out[escaping + 1] = _ESCAPED[octets[escaping + 1]]
    out = np.delete(out, escaping)
    dropped = np.bincount(escaping_row, minlength=rows)
    moved = offsets - np.concatenate(([0], np.cumsum(dropped))).astype(np.int32)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(moved), pa.py_buffer(out)), refused


def _empty_lists(rows: int) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, dtype=np.int32)), pa.array([], pa.string()))


def parse_messages(messages: pa.Array) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Parse every line of `messages` (a string array): the events (EVENT_SCHEMA, in line
    order) and the (line, reason) of every line refused, as parse_line refuses it."""
    messages = messages.cast(pa.string()) if messages.type != pa.string() else messages
    line = pa.array(np.arange(len(messages), dtype=np.int64))
    slow: list[pa.Array] = []  # line numbers for parse_line

    def narrow(mask: pa.Array, *arrays: pa.Array) -> list[pa.Array]:
        nonlocal line
        if _keep(mask):
            return list(arrays)
        slow.append(line.filter(pc.invert(mask)))
        line = line.filter(mask)
        return [a.filter(mask) for a in arrays]

    halves = pc.split_pattern(messages, ",'", max_splits=1)
    (halves,) = narrow(pc.equal(pc.list_value_length(halves), 2), halves)
    head, rest = _pieces(halves, 2)
    fields = pc.split_pattern(head, ",")
    ends = pc.split_pattern(rest, "',", max_splits=1, reverse=True)
    fields, ends = narrow(
        pc.and_(pc.equal(pc.list_value_length(fields), 8), pc.equal(pc.list_value_length(ends), 2)), fields, ends
    )
    time_text, server_host, user, host, connection_text, query_text, operation, database = _pieces(fields, 8)
    body, tail = _pieces(ends, 2)

    # the retcode, then any fields after it; a quote after the object's last one: parse_line
    has_extra = pc.match_substring(tail, ",")
    extra_lists = None
    if pc.any(has_extra).as_py():
        tail_lists = pc.split_pattern(tail, ",")
        retcode_text = pc.list_element(tail_lists, 0)
        extra_lists = pc.list_slice(tail_lists, 1)
    else:
        retcode_text = tail
    ok = pc.and_(
        pc.and_(_digits(connection_text, _ID_DIGITS), _digits(query_text, _ID_DIGITS)),
        pc.and_(_digits(retcode_text, _RETCODE_DIGITS), pc.invert(pc.match_substring(tail, "'"))),
    )
    plain_time = _digits(time_text, PLAIN_TIME_DIGITS)
    if not _keep(plain_time):  # MariaDB's "YYYYMMDD HH:MM:SS": one check per distinct time
        odd = pc.unique(time_text.filter(pc.invert(plain_time))).to_pylist()
        good = pa.array([text for text in odd if _valid_time(text)], pa.string())
        ok = pc.and_(ok, pc.or_(plain_time, pc.is_in(time_text, value_set=good)))

    body, refused = _unescape(body)
    if refused.any():
        ok = pa.array(ok.to_numpy(zero_copy_only=False) & ~refused)
    columns = [
        time_text,
        server_host,
        user,
        host,
        connection_text,
        query_text,
        operation,
        database,
        body,
        retcode_text,
    ]
    columns.append(extra_lists if extra_lists is not None else _empty_lists(len(body)))
    columns = narrow(ok, *columns)
    columns[4] = pc.cast(columns[4], pa.int64())
    columns[5] = pc.cast(columns[5], pa.int64())
    columns[9] = pc.cast(columns[9], pa.int32())
    table = pa.Table.from_arrays([*columns, line], schema=EVENT_SCHEMA)
    if not slow:
        return table, []
    return _with_slow_lines(table, messages, pa.concat_arrays(slow))


def _valid_time(text: str) -> bool:
    try:
        check_time(text)
    except ValueError:
        return False
    return True


def _with_slow_lines(table: pa.Table, messages: pa.Array, lines: pa.Array) -> tuple[pa.Table, list[tuple[int, str]]]:
    """The lines the vectorized path did not take, through parse_line, merged in line order."""
    parsed: list[AuditEvent] = []
    at: list[int] = []
    refused: list[tuple[int, str]] = []
    for index, text in zip(lines.to_pylist(), messages.take(lines).to_pylist(), strict=True):
        try:
            parsed.append(parse_line(text))
        except ValueError as exc:
            refused.append((index, str(exc)))
        else:
            at.append(index)
    refused.sort()
    if parsed:
        columns = {name: [getattr(event, name) for event in parsed] for name in EVENT_FIELDS}
        columns["extra"] = [list(event.extra) for event in parsed]
        columns["line"] = at
        table = pa.concat_tables([table, pa.Table.from_pydict(columns, schema=EVENT_SCHEMA)])
        table = table.take(pc.sort_indices(table["line"]))
    return table, refused


def events_of(table: pa.Table) -> list[AuditEvent]:
    """The table's rows as AuditEvents, as parse_line gives them."""
    columns = [table[name].to_pylist() for name in EVENT_FIELDS[:-1]]
    extras = [tuple(extra) for extra in table["extra"].to_pylist()]
    return [AuditEvent(*values, extra=extra) for *values, extra in zip(*columns, extras, strict=True)]  # type: ignore[misc]
