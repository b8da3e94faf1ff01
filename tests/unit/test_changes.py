"""Change files → normalised batches: operations, commit time, a position that sorts right."""

from __future__ import annotations

import datetime as dt
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdc_sync.sources.change_files import ChangeFile, ChangeFileError
from cdc_sync.sources.column_types import ColumnType, column_type
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change, write_change_file
from cdc_sync.sql import UnsafeIdentifier, bigquery_table, check_identifier
from cdc_sync.targets.bigquery.schema import conflicts

UTC = dt.UTC
LOADED_AT = dt.datetime(2026, 11, 23, tzinfo=UTC)
COLUMNS = [("id", pa.int64()), ("name", pa.string())]


def _file(tmp_path, changes, *, phase=1, key="dms/s/t/20261123-070000000.parquet", include_op=True, ts="ts"):
    path = tmp_path / key.replace("/", "_")
    path.write_bytes(write_change_file(COLUMNS, changes, timestamp_column=ts, include_op=include_op))
    return ChangeFile(key=key, path=str(path), phase=phase, commit_timestamp_column=ts, primary_key=("id",))


def _rows(change_file):
    return pa.Table.from_batches(list(change_file.changes(LOADED_AT))).to_pylist()


def test_position_orders_phase_then_commit_time_then_file_then_row(tmp_path):
    t1 = dt.datetime(2026, 11, 23, 7, 0, 0, 1, tzinfo=UTC)
    t2 = dt.datetime(2026, 11, 23, 7, 0, 0, 2, tzinfo=UTC)
    late_full_load = _rows(
        _file(
            tmp_path,
            [Change("I", {"id": 1}, dt.datetime(2030, 1, 1, tzinfo=UTC))],
            phase=0,
            key="dms/s/t/LOAD00000001.parquet",
            include_op=False,
        )
    )
    cdc = _rows(_file(tmp_path, [Change("U", {"id": 1}, t2), Change("U", {"id": 1}, t1)]))
    same_ts_later_file = _rows(_file(tmp_path, [Change("U", {"id": 1}, t2)], key="dms/s/t/20261123-070001000.parquet"))
    positions = [r["_cdc_position"] for r in late_full_load + cdc + same_ts_later_file]
    # full load first, however late its DMS timestamp; then by commit time, file, row
    assert sorted(positions) == [positions[0], positions[2], positions[1], positions[3]]
    assert late_full_load[0]["_cdc_op"] == "I"
    assert cdc[0]["_cdc_commit_ts"] == t2 and cdc[0]["_cdc_row"] == 0 and cdc[1]["_cdc_row"] == 1
    assert cdc[0]["_cdc_source_key"] == "dms/s/t/20261123-070000000.parquet"


def test_invalid_op_names_file_and_row(tmp_path):
    bad = _file(tmp_path, [Change("I", {"id": 1}, LOADED_AT), Change("X", {"id": 2}, LOADED_AT)])
    with pytest.raises(ChangeFileError, match=r"20261123-070000000.parquet: column Op has 'X' in row 1"):
        _rows(bad)


def test_null_primary_key_value_names_file_column_and_row(tmp_path):
    bad = _file(tmp_path, [Change("I", {"id": 1}, LOADED_AT), Change("U", {"id": None}, LOADED_AT)])
    with pytest.raises(ChangeFileError, match=r"20261123-070000000.parquet: primary key column id is NULL in row 1$"):
        _rows(bad)
    # a NULL in a later read batch is named by its row in the file
    path = tmp_path / "big.parquet"
    ids = list(range(70_000))
    ids[68_000] = None
    pq.write_table(pa.table({"id": pa.array(ids, pa.int64()), "name": ["x"] * 70_000}), path)
    with pytest.raises(ChangeFileError, match=r"primary key column id is NULL in row 68000$"):
        list(ChangeFile("k", str(path), 0, None, ("id",)).changes(LOADED_AT))


def test_missing_primary_key_and_unreadable_file(tmp_path):
    path = tmp_path / "nokey.parquet"
    pq.write_table(pa.table({"name": ["x"]}), path)
    with pytest.raises(ChangeFileError, match="primary key column.s. id missing"):
        ChangeFile("k", str(path), 1, None, ("id",)).data_schema()
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ChangeFileError, match="not a readable Parquet file"):
        ChangeFile("k", str(path), 1, None, ("id",)).data_schema()


@pytest.mark.parametrize(
    ("columns", "problem"),
    [
        ({"id": [1], "bad name": ["x"]}, "column name 'bad name' is not a plain name"),
        ({"id": [1], "x`; DROP TABLE t": ["x"]}, "is not a plain name"),
        ({"id": [1], "_cdc_op": ["x"]}, "reserved prefix _cdc_"),
        ({"id": [1], "Name": ["x"], "name": ["y"]}, "two columns have the same name"),
    ],
)
def test_hostile_column_names_are_refused_with_the_file_named(tmp_path, columns, problem):
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(ChangeFileError, match=re.escape(problem)) as error:
        ChangeFile("dms/s/t/20261123-070000000.parquet", str(path), 1, None, ("id",)).data_schema()
    assert str(error.value).startswith("dms/s/t/20261123-070000000.parquet: ")


def test_commit_timestamp_text_is_parsed_as_utc(tmp_path):
    path = tmp_path / "ts.parquet"
    pq.write_table(pa.table({"id": [1], "DMS_TIMESTAMP": ["2022-07-26 06:46:18.616807"]}), path)
    rows = _rows(ChangeFile("k", str(path), 0, "DMS_TIMESTAMP", ("id",)))
    assert rows[0]["_cdc_commit_ts"] == dt.datetime(2022, 7, 26, 6, 46, 18, 616807, tzinfo=UTC)
    pq.write_table(pa.table({"id": [1], "DMS_TIMESTAMP": ["yesterday"]}), path)
    with pytest.raises(ChangeFileError, match="DMS_TIMESTAMP has a value that is not a timestamp"):
        _rows(ChangeFile("k", str(path), 0, "DMS_TIMESTAMP", ("id",)))


@pytest.mark.parametrize(
    ("arrow_type", "bigquery"),
    [
        (pa.int8(), "INTEGER"),
        (pa.int32(), "INTEGER"),
        (pa.uint64(), "NUMERIC"),
        (pa.float32(), "FLOAT"),
        (pa.decimal128(18, 4), "NUMERIC"),
        (pa.decimal128(38, 4), "BIGNUMERIC"),
        (pa.decimal128(38, 10), "BIGNUMERIC"),
        (pa.string(), "STRING"),
        (pa.binary(), "BYTES"),
        (pa.bool_(), "BOOLEAN"),
        (pa.date32(), "DATE"),
        (pa.timestamp("ms", tz="UTC"), "TIMESTAMP"),
        (pa.timestamp("us"), "DATETIME"),
    ],
)
def test_bigquery_types(arrow_type, bigquery):
    assert column_type(arrow_type).name == bigquery


def test_type_conflicts():
    assert (
        conflicts(ColumnType("INTEGER"), ColumnType("STRING")) == "has type STRING in the file but INTEGER in the table"
    )
    assert conflicts(ColumnType("NUMERIC", 29, 9), ColumnType("NUMERIC", 14, 4)) is None
    assert column_type(pa.null()) is None


@pytest.mark.parametrize(
    ("mysql", "arrow"),
    [
        ("bigint(20)", pa.int64()),
        ("int(11)", pa.int32()),
        ("decimal(18,4)", pa.decimal128(18, 4)),
        ("tinyint(1)", pa.int8()),
        ("datetime(6)", pa.timestamp("us", tz="UTC")),
        ("longtext", pa.string()),
        ("bigint(20) unsigned", pa.decimal128(20, 0)),
        ("varbinary(16)", pa.binary()),
    ],
)
def test_mysql_types_as_dms_writes_them(mysql, arrow):
    assert arrow_type_for_mysql(mysql) == arrow


@pytest.mark.parametrize("name", ["a-b", "1abc", "x;drop", "a`b", "", "é"])
def test_identifiers_that_are_not_plain_names_are_refused(name):
    with pytest.raises(UnsafeIdentifier):
        check_identifier(name)


def test_bigquery_table_reference_is_quoted():
    assert bigquery_table("my-project-1", "cdc", "t_1") == "`my-project-1.cdc.t_1`"
    with pytest.raises(UnsafeIdentifier):
        bigquery_table("my project", "cdc", "t")


def test_without_the_position_every_other_column_is_the_same(tmp_path):
    """Aurora's LOAD DATA builds the position itself (load_data.sql; the integration tests
    compare it with BigQuery's): the rest of each change must not differ."""
    t1 = dt.datetime(2026, 11, 23, 7, 0, 0, 1, tzinfo=UTC)
    for ts in ("ts", None):
        change_file = _file(tmp_path, [Change("I", {"id": 1}, t1), Change("U", {"id": 1}, t1)], ts=ts)
        full = _rows(change_file)
        bare = pa.Table.from_batches(list(change_file.changes(LOADED_AT, with_position=False))).to_pylist()
        assert [b.pop("_cdc_position") for b in bare] == [None, None]
        assert bare == [{k: v for k, v in p.items() if k != "_cdc_position"} for p in full]


@pytest.mark.parametrize("statistics", [True, False])
def test_inserts_only_is_read_from_the_op_column(tmp_path, statistics):
    def parquet(name: str, ops: list[str | None]) -> ChangeFile:
        path = tmp_path / f"{name}.parquet"
        # several row groups, as DMS writes them (RowGroupLength): one 'U' in the last
        pq.write_table(
            pa.table({"Op": pa.array(ops, pa.string()), "id": list(range(len(ops)))}),
            path,
            row_group_size=2,
            write_statistics=statistics,
        )
        return ChangeFile(f"dms/s/t/{name}.parquet", str(path), 1, None, ("id",))

    assert parquet("inserts", ["I"] * 5).inserts_only()
    assert not parquet("an_update_last", ["I"] * 4 + ["U"]).inserts_only()
    assert not parquet("a_delete_first", ["D"] + ["I"] * 4).inserts_only()
    assert not parquet("a_null_op", ["I", None, "I"]).inserts_only()  # a bad file: its load says why
    # without Op (a full load, CdcInsertsOnly) or in the full-load phase: inserts by definition
    assert _file(tmp_path, [Change("I", {"id": 1}, LOADED_AT)], include_op=False).inserts_only()
    assert _file(
        tmp_path, [Change("I", {"id": 1}, LOADED_AT)], phase=0, key="dms/s/t/LOAD00000001.parquet"
    ).inserts_only()
    unreadable = tmp_path / "unreadable.parquet"
    unreadable.write_bytes(b"not parquet")
    assert not ChangeFile("dms/s/t/unreadable.parquet", str(unreadable), 1, None, ("id",)).inserts_only()


def test_int96_timestamps_keep_mysqls_whole_datetime_range(tmp_path):
    # a Hive/Spark rewrite of a DMS file may store timestamps as INT96; read as ns, 9999-12-31
    # (a common "no end" value in MySQL) would overflow
    far = dt.datetime(9999, 12, 31, 23, 59, 59, 999999)
    path = tmp_path / "int96.parquet"
    pq.write_table(
        pa.table(
            {"Op": ["I", "I"], "id": [1, 2], "valid_to": pa.array([far, dt.datetime(1000, 1, 1)], pa.timestamp("us"))}
        ),
        path,
        use_deprecated_int96_timestamps=True,
    )
    rows = _rows(ChangeFile("dms/s/t/20261123-070000000.parquet", str(path), 1, None, ("id",)))
    assert [r["valid_to"] for r in rows] == [far, dt.datetime(1000, 1, 1)]
