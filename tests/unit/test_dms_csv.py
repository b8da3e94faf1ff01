"""DMS CSV change files read into the same batches as the Parquet file of the same changes."""

from __future__ import annotations

import datetime as dt
import gzip
from decimal import Decimal

import pyarrow as pa
import pytest

from cdc_sync.config import DmsCsvSettings
from cdc_sync.sources.change_files import ChangeFile, ChangeFileError
from cdc_sync.sources.dms.csv_files import DmsCsvLayout
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, write_change_file, write_change_file_csv

UTC = dt.UTC
LOADED_AT = dt.datetime(2026, 11, 23, tzinfo=UTC)
MYSQL_COLUMNS = [
    ("id", "bigint(20)"),
    ("qty", "int(11)"),
    ("amount", "decimal(18,4)"),
    ("name", "varchar(100)"),
    ("updated_at", "datetime(6)"),
    ("birthday", "date"),
    ("active", "tinyint(1)"),
    ("ratio", "double"),
    ("blob", "varbinary(16)"),
    ("at", "time"),
    ("big", "bigint(20) unsigned"),
    ("tiny", "tinyint(3) unsigned"),
    ("small", "smallint(5) unsigned"),
    ("medium", "mediumint(8) unsigned"),
    ("unsigned_int", "int(10) unsigned"),
]
COLUMNS = [(name, arrow_type_for_mysql(kind)) for name, kind in MYSQL_COLUMNS]
T0 = dt.datetime(2026, 11, 23, 7, 0, 0, 123456, tzinfo=UTC)


def _row(id_, **overrides):
    row = {
        "id": id_,
        "qty": -id_,
        "amount": Decimal("12345678901234.5678"),
        "name": 'a, "quoted"\nline 🚀',
        "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5, 6),
        "birthday": dt.date(1000, 1, 1),
        "active": 1,
        "ratio": 0.1 + 0.2,
        "blob": b'\x00\xff,\n"',
        "at": dt.timedelta(hours=-838, minutes=-59, seconds=-59),
        "big": Decimal(2**64 - 1),
        # the largest value of each unsigned type: none fits the signed type of its size
        "tiny": 255,
        "small": 65535,
        "medium": 16777215,
        "unsigned_int": 4294967295,
    }
    row.update(overrides)
    return row


CHANGES = [
    Change("I", _row(1), T0),
    Change("U", _row(1, name="", qty=None, blob=None, amount=None, updated_at=None), T0 + dt.timedelta(seconds=1)),
    Change("D", _row(2, name=None, birthday=None), T0 + dt.timedelta(seconds=2)),
    Change("I", _row(3, name="NULL", active=0, blob=b""), T0 + dt.timedelta(seconds=3)),
]


def _read(path, key, layout, phase=1):
    f = ChangeFile(key=key, path=str(path), phase=phase, commit_timestamp_column="ts", primary_key=("id",), csv=layout)
    schema = f.data_schema()
    return schema, pa.Table.from_batches(list(f.changes(LOADED_AT)), schema=None).to_pylist()


def _strip_source(rows):
    return [{k: v for k, v in r.items() if k not in ("_cdc_source_key", "_cdc_position")} for r in rows]


@pytest.mark.parametrize(
    "settings",
    [
        DmsCsvSettings(),
        DmsCsvSettings(add_column_name=True),
        DmsCsvSettings(null_value="\\N", delimiter="|"),
    ],
)
@pytest.mark.parametrize("gzipped", [False, True])
def test_csv_reads_as_the_parquet_file_of_the_same_changes(tmp_path, settings, gzipped):
    body = write_change_file_csv(COLUMNS, CHANGES, timestamp_column="ts", include_op=True, settings=settings)
    csv_path = tmp_path / "cdc.csv"
    csv_path.write_bytes(gzip.compress(body) if gzipped else body)
    parquet_path = tmp_path / "cdc.parquet"
    parquet_path.write_bytes(write_change_file(COLUMNS, CHANGES, timestamp_column="ts", include_op=True))

    layout = DmsCsvLayout(settings, tuple(COLUMNS), "ts")
    csv_schema, csv_rows = _read(csv_path, "dms/s/t/20261123-070000000.csv", layout)
    parquet_schema, parquet_rows = _read(parquet_path, "dms/s/t/20261123-070000000.csv", None)
    assert [(f.name, f.type) for f in csv_schema] == [(f.name, f.type) for f in parquet_schema]
    assert csv_rows == parquet_rows
    assert csv_rows[1]["name"] == "" and csv_rows[2]["name"] is None and csv_rows[3]["name"] == "NULL"
    assert csv_rows[0]["blob"] == b'\x00\xff,\n"' and csv_rows[0]["big"] == Decimal(2**64 - 1)
    assert csv_rows[1]["blob"] is None and csv_rows[3]["blob"] == b""
    assert [r["_cdc_op"] for r in csv_rows] == ["I", "U", "D", "I"]


def test_full_load_without_op_and_with_op_are_both_read(tmp_path):
    layout = DmsCsvLayout(DmsCsvSettings(), tuple(COLUMNS), "ts")
    for include_op in (False, True):
        path = tmp_path / f"LOAD{include_op}.csv"
        path.write_bytes(
            write_change_file_csv(
                COLUMNS,
                [Change("I", _row(7), T0)],
                timestamp_column="ts",
                include_op=include_op,
                settings=DmsCsvSettings(),
            )
        )
        _, rows = _read(path, "dms/s/t/LOAD00000001.csv", layout, phase=0)
        assert [(r["id"], r["_cdc_op"], r["_cdc_commit_ts"]) for r in rows] == [(7, "I", T0)]


def test_header_in_another_order_and_true_false_booleans(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text(
        "Op,ts,name,id,active\nI,2026-11-23 07:00:00.000001,x,5,true\nU,2026-11-23 07:00:00.000002,y,5,false\n"
    )
    columns = (("id", pa.int64()), ("name", pa.string()), ("active", pa.int8()))
    _, rows = _read(path, "k.csv", DmsCsvLayout(DmsCsvSettings(add_column_name=True), columns, "ts"))
    assert [(r["id"], r["name"], r["active"]) for r in rows] == [(5, "x", 1), (5, "y", 0)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("I,2026-11-23 07:00:00,1,x\nI,2026-11-23 07:00:00,2,y,extra\n", r"k\.csv: line 2 has 5 fields, expected 4"),
        (
            "I,2026-11-23 07:00:00\n",
            r"k\.csv: line 1 has 2 fields; the table's 2 declared columns and the timestamp "
            r"column ts make 3 \(or 4 with Op\)",
        ),
        # one field short of Op + timestamp + columns reads as a file without Op: the shift is named
        ("I,2026-11-23 07:00:00,1\n", r"k\.csv: record 1: column id: '2026-11-23 07:00:00' is not a int64"),
        (
            "I,2026-11-23 07:00:00,1,x\nI,2026-11-23 07:00:00,abc,y\n",
            r"k\.csv: record 2: column id: 'abc' is not a int64",
        ),
        (
            "X,2026-11-23 07:00:00,1,x\n",
            r"k\.csv: line 1 has one field more than the declared columns, but its "
            r"first field 'X' is not an Op \(I, U or D\)$",
        ),
        ("I,2026-11-23 07:00:00,1,x\nX,2026-11-23 07:00:00,2,y\n", r"k\.csv: column Op has 'X' in row 1"),
        ("I,yesterday,1,x\n", r"k\.csv: commit timestamp column ts has a value that is not a timestamp"),
    ],
)
def test_bad_csv_is_named_by_file_and_line_or_record_and_column(tmp_path, body, message):
    path = tmp_path / "k.csv"
    path.write_text(body)
    layout = DmsCsvLayout(DmsCsvSettings(), (("id", pa.int64()), ("name", pa.string())), "ts")
    with pytest.raises(ChangeFileError, match=message):
        _read(path, "k.csv", layout)


def test_header_naming_an_undeclared_column_is_refused(tmp_path):
    path = tmp_path / "k.csv"
    path.write_text("Op,ts,id,name,surprise\nI,2026-11-23 07:00:00,1,x,y\n")
    layout = DmsCsvLayout(DmsCsvSettings(add_column_name=True), (("id", pa.int64()), ("name", pa.string())), "ts")
    with pytest.raises(ChangeFileError, match="header names column.s. surprise that tables.+columns does not declare"):
        _read(path, "k.csv", layout)


def test_mysql_zero_dates_read_as_null(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("I,2026-11-23 07:00:00,1,0000-00-00,0000-00-00 00:00:00\nI,2026-11-23 07:00:00,2,2026-02-28,\n")
    columns = (("id", pa.int64()), ("day", pa.date32()), ("at", pa.timestamp("us", tz="UTC")))
    _, rows = _read(path, "z.csv", DmsCsvLayout(DmsCsvSettings(), columns, "ts"))
    assert [(r["day"], r["at"]) for r in rows] == [(None, None), (dt.date(2026, 2, 28), None)]


def test_a_header_is_recognised_even_when_the_settings_say_there_is_none(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("Op,ts,id,name\nD,2026-11-23 07:00:00.000001,5,x\n")
    columns = (("id", pa.int64()), ("name", pa.string()))
    _, rows = _read(path, "k.csv", DmsCsvLayout(DmsCsvSettings(), columns, "ts"))
    assert [(r["_cdc_op"], r["id"], r["name"]) for r in rows] == [("D", 5, "x")]


def test_a_timestamp_column_the_pipeline_does_not_name_is_explained(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("2026-11-23 07:00:00.000001,5,x\n")  # a full-load line: TimestampColumnName, no Op
    layout = DmsCsvLayout(DmsCsvSettings(), (("id", pa.int64()), ("name", pa.string())), None)
    with pytest.raises(
        ChangeFileError,
        match=r"first field '2026-11-23 07:00:00.000001' is not an Op .* "
        r"name that column in commit_timestamp_column",
    ):
        ChangeFile(
            key="k.csv", path=str(path), phase=0, commit_timestamp_column=None, primary_key=("id",), csv=layout
        ).data_schema()


def test_null_spelled_as_the_word_null_in_columns_that_are_not_text(tmp_path):
    """DMS documents CsvNullValue's default as "NULL": in a number, date or bytes column the
    word can only mean NULL; in a text column it is NULL only when null_value says so."""
    path = tmp_path / "n.csv"
    path.write_text("I,2026-11-23 07:00:00,1,NULL,NULL,NULL,NULL\n")
    columns = (
        ("id", pa.int64()),
        ("qty", pa.int32()),
        ("day", pa.date32()),
        ("raw", pa.binary()),
        ("name", pa.string()),
    )
    _, rows = _read(path, "n.csv", DmsCsvLayout(DmsCsvSettings(), columns, "ts"))
    assert [(r["qty"], r["day"], r["raw"], r["name"]) for r in rows] == [(None, None, None, "NULL")]
    _, rows = _read(path, "n.csv", DmsCsvLayout(DmsCsvSettings(null_value="NULL"), columns, "ts"))
    assert rows[0]["name"] is None


def test_records_longer_than_a_read_block_are_read_with_larger_blocks(tmp_path, monkeypatch):
    """A LOB of several MiB (DMS's full LOB mode) does not fit pyarrow's block: the file is read
    again with larger blocks from the first record not yet given out; nothing twice, nothing lost."""
    from cdc_sync.sources.dms import csv_files

    monkeypatch.setattr(csv_files, "_BLOCK_BYTES", (1 << 16, 1 << 22))
    big = "x" * (3 << 20)
    lines = [f"I,2026-11-23 07:00:00,{i},v{i}" for i in range(5000)]  # several 64 KiB blocks first
    lines.insert(4000, f'I,2026-11-23 07:00:00,99999,"{big}"')
    path = tmp_path / "lob.csv"
    path.write_text("\n".join(lines) + "\n")
    layout = DmsCsvLayout(DmsCsvSettings(), (("id", pa.int64()), ("name", pa.string())), "ts")
    _, rows = _read(path, "lob.csv", layout)
    assert [r["id"] for r in rows] == [*range(4000), 99999, *range(4000, 5000)]
    assert len(rows[4000]["name"]) == 3 << 20 and [r["_cdc_row"] for r in rows] == list(range(5001))
    monkeypatch.setattr(csv_files, "_BLOCK_BYTES", (1 << 16,))
    with pytest.raises(ChangeFileError, match=r"lob\.csv: a record after record \d+ is longer than 65,536 bytes"):
        _read(path, "lob.csv", layout)


@pytest.mark.parametrize(
    "settings",
    [
        DmsCsvSettings(),
        DmsCsvSettings(null_value="\\N", delimiter="|"),
        DmsCsvSettings(null_value="NULL", delimiter="\t"),
    ],
)
def test_hostile_text_survives_the_round_trip(tmp_path, settings):
    """2,000 values drawn from the characters that break CSV (delimiters, quotes, CR/LF, backslash,
    NUL, the null markers' letters), plus NULLs and empty strings: read back exactly."""
    import random

    rng = random.Random(20261123)
    alphabet = [",", "|", "\t", '"', "\n", "\r", "\\", "\x00", "N", "U", "L", "n", " ", "é", "😀", "a"]
    values = []
    for _ in range(2000):
        roll = rng.random()
        value = None if roll < 0.05 else "" if roll < 0.1 else "".join(rng.choices(alphabet, k=rng.randint(1, 12)))
        if value == settings.null_value:
            value += "x"  # the null marker itself is NULL by definition
        values.append(value)
    columns = [("id", pa.int64()), ("text", pa.string())]
    changes = [Change("I", {"id": i, "text": v}, T0) for i, v in enumerate(values)]
    path = tmp_path / "hostile.csv"
    path.write_bytes(write_change_file_csv(columns, changes, timestamp_column="ts", include_op=True, settings=settings))
    _, rows = _read(path, "hostile.csv", DmsCsvLayout(settings, tuple(columns), "ts"))
    assert [r["text"] for r in rows] == values


@pytest.mark.parametrize("settings", [DmsCsvSettings(), DmsCsvSettings(add_column_name=True, delimiter="|")])
@pytest.mark.parametrize("gzipped", [False, True])
def test_inserts_only_is_found_by_one_scan_of_the_op_fields(tmp_path, settings, gzipped, monkeypatch):
    import cdc_sync.sources.dms.csv_files as csv_files

    layout = DmsCsvLayout(settings, tuple(COLUMNS), "ts")

    def change_file(name: str, changes: list[Change]) -> ChangeFile:
        body = write_change_file_csv(COLUMNS, changes, timestamp_column="ts", include_op=True, settings=settings)
        path = tmp_path / name
        path.write_bytes(gzip.compress(body) if gzipped else body)
        return ChangeFile(
            key=f"dms/s/t/{name}",
            path=str(path),
            phase=1,
            commit_timestamp_column="ts",
            primary_key=("id",),
            csv=layout,
        )

    # values spanning lines, with quotes and delimiters, in 3,000 inserts: still inserts only
    inserts = [Change("I", _row(k), T0) for k in range(3000)]
    assert change_file("20261123-070000000.csv", inserts).inserts_only()
    # one update or delete anywhere, also the last line or the first
    assert not change_file("20261123-070001000.csv", [*inserts, Change("U", _row(1), T0)]).inserts_only()
    assert not change_file("20261123-070002000.csv", [Change("D", _row(1), T0), *inserts]).inserts_only()
    # a value whose second line reads like an update only costs the direct load: False, safely
    tricky = [Change("I", _row(1, name=f"x\nU{settings.delimiter}y"), T0)]
    assert not change_file("20261123-070003000.csv", tricky).inserts_only()
    # an update split between two read blocks, at every place it can be split
    with_update = change_file("20261123-070004000.csv", [*inserts[:40], Change("U", _row(5), T0), *inserts[40:80]])
    only_inserts = change_file("20261123-070005000.csv", inserts[:80])
    for block in range(3, 23):
        monkeypatch.setattr(csv_files, "_SCAN_BYTES", block)
        assert not with_update.inserts_only() and only_inserts.inserts_only()
