"""The vectorized audit-line parser agrees with parse_line on every line, hostile ones included:
the same events, the same lines refused, for the same reasons."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from cdc_sync.sources.audit_log.columns import events_of, parse_messages
from cdc_sync.sources.audit_log.lines import parse_line
from tools.audit_standin import audit_line, escape_object

# Pieces of text that have tripped line parsers: separators, quotes, every escape the audit
# plugin writes and some it does not, raw control characters, wide characters, odd digits.
PIECES = [
    ",", "'", "',", ",'", "''", "\\", "\\'", "\\\\", "\\\\'", "\\n", "\\r", "\\t", "\\0", "\\x", "\n", "\r\n",
    "\t", "\0", " ", "a", "SELECT", "insert into t values (1)", "山田", "東京都, 渋谷区", "🎉🍣", "0", "1",
    "-1", "+5", "007", "0x1F", "1_000", "٣", "²", " 7", "9" * 19, "QUERY", "query_dml",
]  # fmt: skip
TIMES = ["1764979200123456", "1764979200", "1764979200123", "20261206 11:02:03", "20260431 00:00:00",
         "253402300799999999", "253402300800000000", "99999999999999999999", "²", "١٧٦٤٩٧٩٢٠٠", "", "x"]  # fmt: skip
INTS = ["41", "0", "007", "-3", "+5", " 7", "1_000", "٣", "²", "0x1F", "9" * 18, "9" * 19, "", "x"]


def hostile_text(rng: random.Random, most: int = 6) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(0, most)))


def hostile_line(rng: random.Random) -> str:
    """A line as the plugin writes it, often with one part made hostile."""
    statement = hostile_text(rng, 8)
    fields = {
        "timestamp": rng.choice(TIMES) if rng.random() < 0.3 else "1764979200123456",
        "server_host": hostile_text(rng, 2) if rng.random() < 0.1 else "shop-instance-1",
        "user": hostile_text(rng, 2) if rng.random() < 0.1 else "app",
        "host": "10.0.0.7",
        "connection_id": rng.choice(INTS) if rng.random() < 0.2 else "41",
        "query_id": rng.choice(INTS) if rng.random() < 0.2 else "1001",
        "operation": rng.choice(["QUERY", "QUERY_DML", "CONNECT", "query", hostile_text(rng, 2)]),
        "database": hostile_text(rng, 2) if rng.random() < 0.1 else "shop",
    }
    obj = escape_object(statement, escape_newlines=rng.random() < 0.5) if rng.random() < 0.7 else statement
    retcode = rng.choice(INTS) if rng.random() < 0.2 else "0"
    line = ",".join(fields.values()) + f",'{obj}',{retcode}"
    if rng.random() < 0.15:
        line += "," + ",".join(hostile_text(rng, 2) for _ in range(rng.randint(1, 3)))
    if rng.random() < 0.05:  # cut anywhere
        line = line[: rng.randint(0, len(line))]
    return line


def parsed_both_ways(lines: list[str]) -> None:
    table, refused = parse_messages(pa.array(lines, pa.string()))
    got = dict(zip(table["line"].to_pylist(), events_of(table), strict=True))
    assert table["line"].to_pylist() == sorted(got)  # in line order
    expected_events, expected_refusals = {}, []
    for index, line in enumerate(lines):
        try:
            expected_events[index] = parse_line(line)
        except ValueError as exc:
            expected_refusals.append((index, str(exc)))
    assert refused == expected_refusals
    assert got == expected_events


@pytest.mark.parametrize("seed", range(8))
def test_hostile_lines_parse_as_parse_line_parses_them(seed):
    rng = random.Random(seed)
    parsed_both_ways([hostile_line(rng) for _ in range(2000)])


@pytest.mark.parametrize("seed", range(3))
def test_random_text_is_refused_as_parse_line_refuses_it(seed):
    rng = random.Random(100 + seed)
    parsed_both_ways([hostile_text(rng, 30) for _ in range(1000)])


def test_plain_lines_take_the_vectorized_path_with_every_field(monkeypatch):
    def not_here(line):
        raise AssertionError(f"parse_line called for {line!r}")

    monkeypatch.setattr("cdc_sync.sources.audit_log.columns.parse_line", not_here)
    lines = [
        audit_line("INSERT INTO t (a) VALUES ('O\\'Brien, Pat', 'a\\\\b')", query_id=7),
        audit_line("UPDATE t SET a = 'x\ny'", escape_newlines=True, retcode=1146, timestamp="20261206 11:02:03"),
        audit_line("SELECT '山田 🎉'", database="") + ",TCP/IP,7",
    ]
    table, refused = parse_messages(pa.array(lines))
    assert refused == []
    assert table.to_pylist() == [
        {
            "time_text": "1764979200123456", "server_host": "shop-instance-1", "user": "app", "host": "10.0.0.7",
            "connection_id": 41, "query_id": 7, "operation": "QUERY", "database": "shop",
            "statement": "INSERT INTO t (a) VALUES ('O\\'Brien, Pat', 'a\\\\b')", "retcode": 0, "extra": [], "line": 0,
        },
        {
            "time_text": "20261206 11:02:03", "server_host": "shop-instance-1", "user": "app", "host": "10.0.0.7",
            "connection_id": 41, "query_id": 1001, "operation": "QUERY", "database": "shop",
            "statement": "UPDATE t SET a = 'x\ny'", "retcode": 1146, "extra": [], "line": 1,
        },
        {
            "time_text": "1764979200123456", "server_host": "shop-instance-1", "user": "app", "host": "10.0.0.7",
            "connection_id": 41, "query_id": 1001, "operation": "QUERY", "database": "",
            "statement": "SELECT '山田 🎉'", "retcode": 0, "extra": ["TCP/IP", "7"], "line": 2,
        },
    ]  # fmt: skip


def test_an_escape_never_pairs_across_two_lines():
    lines = [
        "1,h,u,h,1,2,QUERY,db,'a\\',0",  # ends inside an escape
        "1,h,u,h,1,2,QUERY,db,''b\\n',0",  # an unescaped quote first
        "1,h,u,h,1,2,QUERY,db,'c\\\\',0",  # ends in an escaped backslash
        "1,h,u,h,1,2,QUERY,db,'\\'d\\n',0",
    ]
    parsed_both_ways(lines)
    table, refused = parse_messages(pa.array(lines))
    assert table["statement"].to_pylist() == ["c\\", "'d\n"]
    assert [index for index, _ in refused] == [0, 1]


def test_no_lines():
    table, refused = parse_messages(pa.array([], pa.string()))
    assert (table.num_rows, refused) == (0, [])


def test_the_write_filter_passes_every_statement_written_tables_maps_or_refuses():
    from cdc_sync.sources.audit_log.batch import may_write
    from cdc_sync.sources.audit_log.written import Unmapped, written_tables
    from tests.unit.test_audit_log import HOSTILE

    heads = ["", " ", "\n\t", "\u3000", "\u00a0", "\x1c", "/* c */ ", "-- c\n", "# c\n", "(", "ı", "ſ"]
    words = ["INSERT INTO t VALUES (1)", "inſert into t values (1)", "ınsert into t values (1)", "update t set a=1",
             "Delete from t", "REPLACE t SET a=1", "with x as (select 1) delete from t", "truncate t",
             "select 1", "SET a=1", "commit", "call p()", "rename table a to b", "drop table t", "alter table t add c int",
             "load data infile 'x' into table t", "show tables", *HOSTILE]  # fmt: skip
    statements = [head + word for head in heads for word in words]
    lines = [
        audit_line(s, retcode=rc, operation=op)
        for s in statements
        for rc in (0, 1)
        for op in ("QUERY", "query_ddl", "CONNECT")
    ]
    table, refused = parse_messages(pa.array(lines))
    assert refused == [] and table.num_rows == len(lines)
    passed = may_write(table).to_pylist()
    for row, candidate in zip(events_of(table), passed, strict=True):
        writes = row.retcode == 0 and row.operation.upper().startswith("QUERY")
        try:
            found = written_tables(row.statement, row.database) if writes else ()
        except Unmapped:
            found = None
        if not candidate:
            assert found == (), row.statement
    assert sum(passed) < len(passed) / 2  # and it does leave out the rows that write nothing
