"""Files larger than one chunk, applied to the Aurora stand-in on several connections at once:
chunks that change the same keys still converge on the latest change, and a file found bad
after its first chunks were handed out commits nothing."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from cdc_sync.sources.change_files import READ_BATCH_ROWS
from cdc_sync.sources.dms.writer import Change, write_change_file
from tests.integration.harness import World, customer, expected_row

pytestmark = pytest.mark.services
UTC = dt.UTC
CHUNK_ROWS = 1000  # the smallest the config allows


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path, aurora=True)
    yield w
    w.close()


def _land(world: World, name: str, changes: list[Change]) -> str:
    """A CDC file of `changes`, in the world's file format (`name` is given as .parquet)."""
    if world.file_format == "csv":
        body = world.dms.cdc_file_body(world.customers, changes)
        name = name.removesuffix(".parquet") + ".csv"
    else:
        body = write_change_file(
            world.dms.tables[world.customers].columns, changes, timestamp_column="cdc_commit_ts", include_op=True
        )
    key = f"dms/{world.db}/customers/{name}"
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=body)
    return key


def _applied_chunks(world: World, key: str) -> dict[int, int]:
    """chunk (its first row) → rows, as the ledger records them"""
    with world.mysql.cursor() as cur:
        cur.execute(
            f"SELECT chunk, row_count FROM `{world.target_db}`.`_cdc_sync_ledger` "
            "WHERE object_key = %s AND status = 'applied'",
            (key,),
        )
        return dict(cur.fetchall())


@pytest.mark.parametrize(
    ("connections", "method"),
    [
        (1, "local_infile"),
        (2, "local_infile"),
        (3, "local_infile"),
        (2, "aurora_s3"),  # chunks staged in S3 and read by (the stand-in of) LOAD DATA FROM S3
    ],
)
def test_chunks_changing_the_same_keys_converge_on_the_latest_change(world, connections, method):
    world.write_config(aurora={"chunk_rows": CHUNK_ROWS, "load_connections": connections, "method": method})
    at = dt.datetime(2026, 11, 23, 7, tzinfo=UTC)
    # one file, 3,600 rows = 4 chunks: inserts of keys 1..1500, then updates of every key
    # (in chunks 1 and 2, while the inserts are in chunks 0 and 1), then deletes of 1..600
    # (chunk 3, and the last rows of chunk 2) — every chunk but the first meets keys of another
    changes = [Change("I", customer(k), at) for k in range(1, 1501)]
    changes += [Change("U", customer(k, qty=k + 1), at + dt.timedelta(seconds=k % 7)) for k in range(1, 1501)]
    changes += [Change("D", customer(k), at + dt.timedelta(seconds=10)) for k in range(1, 601)]
    first = _land(world, "20261123-070000000.parquet", changes)
    expected = {k: expected_row(customer(k, qty=k + 1)) for k in range(601, 1501)}

    (report,) = world.run_aurora()
    assert report.loaded == {first: len(changes)} and not report.quarantined
    assert world.aurora_rows() == expected
    assert _applied_chunks(world, first) == {0: 1000, 1000: 1000, 2000: 1000, 3000: 600}  # chunk 0 streamed

    # a second file over a full table (staged upserts on several connections), again with
    # keys in several chunks: re-inserts of the deleted keys, then later updates of all
    later = at + dt.timedelta(hours=1)
    changes = [Change("I", customer(k, name=f"back {k}"), later) for k in range(1, 601)]
    changes += [Change("U", customer(k, notes=f"v2 {k}"), later + dt.timedelta(seconds=1)) for k in range(1, 1501)]
    second = _land(world, "20261123-080000000.parquet", changes)
    expected = {k: expected_row(customer(k, notes=f"v2 {k}")) for k in range(1, 1501)}

    (report,) = world.run_aurora()
    assert report.loaded == {second: len(changes)}
    assert world.aurora_rows() == expected
    assert _applied_chunks(world, second) == {0: 1000, 1000: 1000, 2000: 100}
    if method == "aurora_s3":  # every chunk was put under the staging prefix once and read from there
        staged = world.s3.list_objects_v2(Bucket=world.bucket, Prefix="cdc-sync/staging/")["Contents"]
        staged_uris = {f"s3://{world.bucket}/{o['Key']}" for o in staged}
        assert len(staged) == 7 and set(world.aurora_s3_loads) == staged_uris
        assert all(f"/p_{world.uid}/{first}." in uri or f"/p_{world.uid}/{second}." in uri for uri in staged_uris)


@pytest.mark.parametrize(
    "chunk_rows",
    [
        CHUNK_ROWS,  # chunks 0 and 1 finished and loading on the two connections when the bad row is read
        500_000,  # the default: the bad row is read while chunk 0 is still being streamed into LOAD DATA
    ],
)
def test_a_file_found_bad_after_chunks_were_handed_out_commits_nothing(world, chunk_rows):
    world.write_config(aurora={"chunk_rows": chunk_rows, "load_connections": 2})
    expected = world.seed(range(1, 4))
    world.run_aurora()
    at = dt.datetime(2026, 11, 23, 8, tzinfo=UTC)
    # good updates filling the loader's first read batch, then a row whose Op DMS never
    # writes: the file is found bad only in the second read batch
    good = READ_BATCH_ROWS + 10
    changes = [Change("U", customer(k % 3 + 1, qty=k), at) for k in range(good)]
    changes.append(Change("X", customer(1, qty=-1), at))
    bad = _land(world, "20261123-080000000.parquet", changes)

    (report,) = world.run_aurora()
    assert f"column Op has 'X' in row {good}" in report.quarantined[bad]
    assert world.aurora_rows() == expected  # none of the good updates
    assert _applied_chunks(world, bad) == {}


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_files_of_inserts_go_straight_into_a_table_with_rows_and_fall_back_where_keys_are_there(
    stack, unique_name, tmp_path, caplog, file_format
):
    world = World(stack, unique_name, tmp_path, aurora=True, file_format=file_format)
    try:
        _inserts_go_straight_in(world, caplog)
    finally:
        world.close()


def _inserts_go_straight_in(world: World, caplog) -> None:
    world.write_config(aurora={"chunk_rows": CHUNK_ROWS, "load_connections": 2})
    caplog.set_level(logging.INFO, logger="cdc_sync.targets.aurora.loader")

    def paths(key: str) -> list[str]:
        """How each chunk of a file went in, from the loader's log, in chunk order."""
        lines = sorted(
            r.getMessage() for r in caplog.records if f" of {key}: " in r.getMessage() and " rows " in r.getMessage()
        )
        return ["direct" if "loaded directly" in line else "staged" for line in lines]

    # a full load in three LOAD files: only the first meets an empty table, all go in directly
    expected = world.seed(range(1, 2501))
    (report,) = world.run_aurora()
    assert world.aurora_rows() == expected
    assert [paths(key) for key in sorted(report.loaded)] == [["direct"]] * 3

    at = dt.datetime(2026, 11, 23, 7, tzinfo=UTC)
    world.dms.delete(world.customers, {"id": 2})
    world.dms.update(world.customers, {"id": 3}, {"qty": 33})
    world.dms.flush(world.customers, file_time=at)
    del expected[2]
    expected[3] = expected_row(customer(3, qty=33))
    world.run_aurora()
    assert world.aurora_rows() == expected

    # a CDC file of inserts only, new keys in two chunks: straight in, beside the rows there
    later = at + dt.timedelta(hours=1)
    new_keys = _land(
        world,
        "20261123-080000000.parquet",
        [Change("I", customer(k, name=f"new {k}"), later) for k in range(2501, 4001)],
    )
    expected.update({k: expected_row(customer(k, name=f"new {k}")) for k in range(2501, 4001)})
    (report,) = world.run_aurora()
    assert report.loaded == {new_keys: 1500}
    assert world.aurora_rows() == expected
    assert paths(new_keys) == ["direct", "direct"]

    # inserts only again, but key 2 has a tombstone (re-inserted later: it is back) and key 3
    # a newer update (this insert is older: it loses): chunk 0 meets them, rolls back and goes
    # through staging (chunk 1, new keys only, may have started directly on the other connection)
    changes = [
        Change("I", customer(2, name="back"), later + dt.timedelta(minutes=1)),
        Change("I", customer(3, qty=-3), at - dt.timedelta(days=1)),
    ]
    changes += [Change("I", customer(k), later) for k in range(4001, 5001)]
    mixed = _land(world, "20261123-090000000.parquet", changes)
    expected[2] = expected_row(customer(2, name="back"))
    expected.update({k: expected_row(customer(k)) for k in range(4001, 5001)})
    (report,) = world.run_aurora()
    assert report.loaded == {mixed: 1002} and not report.quarantined
    assert world.aurora_rows() == expected
    assert paths(mixed)[0] == "staged"
    assert any(f"the chunk from row 0 of {mixed} meets keys already in" in r.getMessage() for r in caplog.records)


def _ledger_ranges(world: World, key: str) -> list[tuple[int, int]]:
    """(first row, rows) of every applied chunk of a file, as the ledger records them"""
    with world.mysql.cursor() as cur:
        cur.execute(
            f"SELECT first_row, row_count FROM `{world.target_db}`.`_cdc_sync_ledger` "
            "WHERE object_key = %s AND status = 'applied' ORDER BY first_row",
            (key,),
        )
        return list(cur.fetchall())


def _file_outcome(world: World, key: str) -> tuple[str, int]:
    with world.mysql.cursor() as cur:
        cur.execute(
            f"SELECT status, row_count FROM `{world.target_db}`.`_cdc_sync_ledger` "
            "WHERE object_key = %s AND chunk = -1",
            (key,),
        )
        return cur.fetchone()


@pytest.mark.parametrize(
    ("rerun_chunk_rows", "ledger_version"),
    [
        (2500, "current"),
        (1500, "current"),  # chunks across the old bounds
        (2500, "numbered"),  # the crashed load was by a version that numbered chunks 0, 1, ...
    ],
)
def test_a_load_crashed_after_some_chunks_resumes_with_other_chunk_rows(world, rerun_chunk_rows, ledger_version):
    """A file of 6,000 changes, chunk_rows 1,000: the load fails after chunks 0-1 committed
    (the ledger refuses a third chunk, as a killed worker would leave it); the rerun, with
    other chunk_rows, applies rows 2,000-5,999 exactly once and records 6,000 rows."""
    world.write_config(aurora={"chunk_rows": CHUNK_ROWS, "load_connections": 1})
    expected = world.seed(range(1, 3))
    world.run_aurora()  # the state table and the ledger exist
    at = dt.datetime(2026, 11, 23, 7, tzinfo=UTC)
    # updates of the two seeded keys first (staged), then 5,998 new keys: every row counts
    changes = [Change("U", customer(k, qty=-k), at) for k in (1, 2)]
    changes += [Change("I", customer(k), at) for k in range(10, 6008)]
    key = _land(world, "20261123-070000000.parquet", changes)
    expected.update({k: expected_row(customer(k, qty=-k)) for k in (1, 2)})
    expected.update({k: expected_row(customer(k)) for k in range(10, 6008)})

    ledger = f"`{world.target_db}`.`_cdc_sync_ledger`"
    with world.mysql.cursor() as cur:  # the crash: a third chunk of the file cannot be recorded
        cur.execute(
            f"CREATE TRIGGER `{world.target_db}`.crash_after_two BEFORE INSERT ON {ledger} FOR EACH ROW "
            f"IF NEW.chunk >= 0 AND (SELECT COUNT(*) FROM {ledger} WHERE object_hash = NEW.object_hash "
            "AND chunk >= 0) >= 2 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'worker killed'; END IF"
        )
    with pytest.raises(Exception, match="worker killed"):
        world.run_aurora()
    with world.mysql.cursor() as cur:
        cur.execute(f"DROP TRIGGER `{world.target_db}`.crash_after_two")
        cur.execute(f"SELECT COUNT(*) FROM `{world.target_db}`.`{world.db}_customers`")
        assert cur.fetchone()[0] == 2 + 1998  # chunks 0 and 1: the seeded keys and 1,998 new ones
        if ledger_version == "numbered":  # the ledger as that version left it: no first_row, chunks 0 and 1
            cur.execute(f"UPDATE {ledger} SET chunk = first_row DIV 1000 WHERE chunk >= 0")
            cur.execute(f"ALTER TABLE {ledger} DROP COLUMN first_row")

    world.write_config(aurora={"chunk_rows": rerun_chunk_rows, "load_connections": 2})
    (report,) = world.run_aurora()
    assert report.loaded == {key: 4000} and not report.quarantined
    assert world.aurora_rows() == expected
    ranges = _ledger_ranges(world, key)
    if ledger_version == "numbered":  # those two chunks: first_row NULL, read as rows 0-1,999
        assert ranges[:2] == [(None, 1000), (None, 1000)]
        ranges = [(0, 1000), (1000, 1000), *ranges[2:]]
    # every row of the file in exactly one committed chunk
    assert [row for first, rows in ranges for row in range(first, first + rows)] == list(range(6000))
    assert ranges[:2] == [(0, 1000), (1000, 1000)]
    assert all(rows <= rerun_chunk_rows for _, rows in ranges[2:])
    assert _file_outcome(world, key) == ("loaded", 6000)
