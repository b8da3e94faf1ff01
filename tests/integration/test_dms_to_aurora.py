"""DMS change files applied to the Aurora stand-in (MariaDB) in merge mode, through
LOAD DATA LOCAL INFILE (and, where named, method aurora_s3's LOAD DATA FROM S3 run by
tests.integration.aurora_s3_standin): the live view must equal the source, an independently computed
state, and BigQuery's latest-state view fed by the same files."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from cdc_sync.mysql_catalog import catalog_columns
from cdc_sync.sources.dms.writer import Change, format_commit_ts, write_change_file
from tests.integration.harness import World, customer, expected_row

pytestmark = pytest.mark.services
UTC = dt.UTC


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path, aurora=True)
    yield w
    w.close()


@pytest.mark.parametrize(
    ("file_format", "csv_settings"),
    [
        ("parquet", {}),
        ("csv", {}),  # DMS's defaults: no header, comma, NULL as an empty field, RFC 4180 quoting
        ("csv", {"add_column_name": True, "null_value": "\\N", "delimiter": "|"}),
    ],
)
def test_merge_full_load_and_cdc_every_type_matches_source_and_bigquery(
    stack, unique_name, tmp_path, file_format, csv_settings
):
    world = World(stack, unique_name, tmp_path, aurora=True, file_format=file_format, csv_settings=csv_settings)
    try:
        _every_type_through_both_targets(world)
    finally:
        world.close()


def test_every_type_loads_the_same_with_a_pyarrow_that_has_no_null_string(stack, unique_name, tmp_path, monkeypatch):
    """MWAA's Airflow 3.0.6 pins pyarrow 18.1, whose CSV writer has no `null_string`: the
    loader then writes \\N as text (every field quoted); the same rows must arrive."""
    import pyarrow.csv as pacsv

    from cdc_sync.targets.aurora import loader

    monkeypatch.setattr(loader, "_CSV_OPTIONS", pacsv.WriteOptions(include_header=False, quoting_style="needed"))
    monkeypatch.setattr(loader, "_WRITE_NULLS_OURSELVES", True)
    world = World(stack, unique_name, tmp_path, aurora=True)
    try:
        _every_type_through_both_targets(world)
    finally:
        world.close()


def _every_type_through_both_targets(world: World) -> None:
    hostile = 'Ådel 😀 | \\N \\ back\\slash, "q"\nnext\r\n\ttab\x00nul \u2028 end\\'  # delimiters, quotes, null markers, a line break
    expected = world.seed(range(1, 6))
    for n in range(3):
        world.dms.update(world.customers, {"id": 1}, {"qty": 100 + n, "name": hostile})
    world.dms.delete(world.customers, {"id": 2})
    world.dms.flush(world.customers)
    world.dms.delete(world.customers, {"id": 3})
    world.dms.insert(world.customers, customer(3, notes="re-inserted\nwith newline"))
    world.dms.delete(world.customers, {"id": 999})
    nulls = customer(
        6,
        qty=None,
        amount=None,
        name=None,
        notes=None,
        updated_at=None,
        seen_at=None,
        birthday=None,
        active=None,
        attrs=None,
    )
    world.dms.insert(world.customers, nulls)
    world.dms.insert(world.customers, customer(7, name="", notes="NULL"))  # an empty string and 'NULL' are not NULLs
    world.dms.flush(world.customers)
    world.dms.insert(world.lines, {"order_id": 1, "line_no": 1, "sku": "a,b", "price": "1.5000"})
    world.dms.flush(world.lines)
    expected[1].update(qty=102, name=hostile)
    del expected[2]
    expected[3] = expected_row(customer(3, notes="re-inserted\nwith newline"))
    expected[6] = expected_row(nulls)
    expected[7] = expected_row(customer(7, name="", notes="NULL"))

    reports = world.run_aurora()
    assert sum(len(r.loaded) for r in reports) == 4 and not any(r.quarantined for r in reports)
    assert world.aurora_rows() == expected
    assert world.aurora_rows() == world.source_rows(world.customers)
    assert world.aurora_rows("order_lines") == world.source_rows(world.lines)
    world.run_library()
    assert world.aurora_rows() == world.view_rows()
    assert world.view_rows("order_lines") == world.source_rows(world.lines)
    # both engines hold the same position for every key: the same change won in each
    bq_positions = {
        r["id"]: r["_cdc_position"]
        for r in world.bq.query(f"SELECT id, _cdc_position FROM `local.{world.dataset}.{world.db}_customers`").result()
    }
    with world.mysql.cursor() as cur:
        cur.execute(f"SELECT id, _cdc_position FROM `{world.target_db}`.`{world.db}_customers`")
        assert dict(cur.fetchall()) == bq_positions


def test_merge_is_order_independent_and_exactly_once(world):
    expected = world.seed(range(1, 4), full_load=False)
    load_keys = world.dms.full_load(world.customers)
    world.dms.update(world.customers, {"id": 1}, {"qty": 1})
    first = world.dms.flush(world.customers)
    world.dms.update(world.customers, {"id": 1}, {"qty": 2})
    world.dms.delete(world.customers, {"id": 2})
    second = world.dms.flush(world.customers)
    expected[1]["qty"] = 2
    del expected[2]
    from cdc_sync.targets.aurora import batch as aurora_target

    def file_of(key):
        head = world.s3.head_object(Bucket=world.bucket, Key=key)
        return {
            "key": key,
            "etag": head["ETag"].strip('"'),
            "size": head["ContentLength"],
            "phase": 0 if "LOAD" in key else 1,
        }

    # newest first, then the older ones, then everything again (a cleared rerun)
    for keys in ([second], [first], load_keys, [second, first, *load_keys]):
        batch = {"table": world.customers, "files": [file_of(k) for k in keys]}
        aurora_target.load_batch(world.pipeline, batch, world.s3, world.aurora_connection, workdir=world.tmp_path)
    assert world.aurora_rows() == expected
    with world.mysql.cursor() as cur:
        cur.execute(f"SELECT status, COUNT(*) FROM `{world.target_db}`.`_cdc_sync_ledger` GROUP BY status")
        assert dict(cur.fetchall()) == {"applied": 3, "loaded": 3}  # one row per chunk and per file, none twice
        cur.execute(f"SELECT _cdc_deleted FROM `{world.target_db}`.`{world.db}_customers_state` WHERE id = 2")
        assert cur.fetchone()[0] == 1  # the tombstone keeps its position


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_bad_files_are_quarantined_for_aurora_and_nothing_of_them_is_applied(world, method):
    world.write_config(aurora={"method": method})
    expected = world.seed(range(1, 3))
    world.run_aurora()
    prefix = f"dms/{world.db}/customers/"
    columns = world.dms.tables[world.customers].columns
    # a value that does not fit DECIMAL(18,4), in the second row of the file
    wide = [(n, pa.decimal128(38, 4) if n == "amount" else t) for n, t in columns]
    too_big = write_change_file(
        wide,
        [
            Change("U", customer(1, qty=9), dt.datetime(2026, 11, 23, 8, tzinfo=UTC)),
            Change(
                "U", customer(2, amount=Decimal("12345678901234567890.1234")), dt.datetime(2026, 11, 23, 8, tzinfo=UTC)
            ),
        ],
        timestamp_column="cdc_commit_ts",
        include_op=True,
    )
    world.s3.put_object(Bucket=world.bucket, Key=prefix + "20261123-080000000.parquet", Body=too_big)
    # a column whose name is not a plain identifier
    hostile = write_change_file(
        [*columns, ("x`; DROP TABLE t; --", pa.string())],
        [Change("U", customer(2, qty=7), dt.datetime(2026, 11, 23, 8, 1, tzinfo=UTC))],
        timestamp_column="cdc_commit_ts",
        include_op=True,
    )
    world.s3.put_object(Bucket=world.bucket, Key=prefix + "20261123-080100000.parquet", Body=hostile)
    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 8, 2, tzinfo=UTC))
    expected[2]["qty"] = 22

    (report,) = world.run_aurora()
    assert set(report.quarantined) == {prefix + "20261123-080000000.parquet", prefix + "20261123-080100000.parquet"}
    assert "amount" in report.quarantined[prefix + "20261123-080000000.parquet"]
    assert (
        "the file declares amount wider than the table's decimal(18,4) (DECIMAL(38,4) would hold it): if the "
        "source's column grew, set targets.aurora.widen_decimals: true"
    ) in report.quarantined[prefix + "20261123-080000000.parquet"]
    assert "not a plain name" in report.quarantined[prefix + "20261123-080100000.parquet"]
    assert world.aurora_rows() == expected  # row 1's qty=9 from the refused file is not applied
    if method == "aurora_s3":  # Aurora read the chunks of the checked files from the staging prefix
        staged = {
            f"s3://{world.bucket}/{o['Key']}"
            for o in world.s3.list_objects_v2(Bucket=world.bucket, Prefix="cdc-sync/staging/")["Contents"]
        }
        assert set(world.aurora_s3_loads) == staged
        assert (
            f"s3://{world.bucket}/cdc-sync/staging/p_{world.uid}/{prefix}20261123-080000000.parquet.000000000000.csv"
            in staged
        )


def test_crash_between_staging_and_apply_and_after_commit_leave_no_partial_state(world, monkeypatch):
    from cdc_sync import sql as sql_module
    from cdc_sync.targets.aurora import loader as loader_module

    expected = world.seed(range(1, 4))
    world.run_aurora()
    world.dms.update(world.customers, {"id": 1}, {"qty": 11})
    world.dms.delete(world.customers, {"id": 3})
    world.dms.flush(world.customers)
    expected[1]["qty"] = 11
    del expected[3]

    # 1) the worker dies after LOAD DATA filled the staging table, before the upsert
    real_render = sql_module.render

    def die_before_apply(template, **params):
        if template == "aurora/apply_merge.sql":
            raise RuntimeError("worker killed between staging and apply")
        return real_render(template, **params)

    monkeypatch.setattr(sql_module, "render", die_before_apply)
    with pytest.raises(RuntimeError, match="between staging and apply"):
        world.run_aurora()
    monkeypatch.setattr(sql_module, "render", real_render)
    assert world.aurora_rows() == {k: expected_row(customer(k)) for k in (1, 2, 3)}  # nothing of the chunk

    # 2) the worker dies after the chunk committed, before the task could report success
    real_outcome = loader_module.AuroraLoaderBase._record_outcome

    def die_after_commit(self, conn, f, status, rows, reason=None):
        raise RuntimeError("worker killed after commit")

    monkeypatch.setattr(loader_module.AuroraLoaderBase, "_record_outcome", die_after_commit)
    with pytest.raises(RuntimeError, match="after commit"):
        world.run_aurora()
    monkeypatch.setattr(loader_module.AuroraLoaderBase, "_record_outcome", real_outcome)
    assert world.aurora_rows() == expected

    # the retry finds the chunk in the ledger: nothing applied twice, the file recorded as loaded
    (report,) = world.run_aurora()
    assert report.already_loaded and not report.loaded
    assert world.aurora_rows() == expected == world.source_rows(world.customers)


def test_a_column_added_in_the_source_is_added_to_the_state_table(world):
    expected = world.seed(range(1, 3))
    world.run_aurora()
    world.add_loyalty_points(expected)
    world.run_aurora()
    assert world.aurora_rows() == expected
    with world.mysql.cursor() as cur:  # the commit time is still read from each row's position
        cur.execute(f"SELECT id, _cdc_commit_ts IS NOT NULL FROM `{world.target_db}`.`{world.db}_customers`")
        assert dict(cur.fetchall()) == {1: 1, 2: 1}


def test_with_widen_decimals_a_decimal_widened_in_the_source_widens_the_state_table(world):
    world.write_config(aurora={"widen_decimals": True})
    expected = world.seed(range(1, 3))
    world.run_aurora()
    world.widen_amount(expected)
    (report,) = world.run_aurora()
    assert list(report.loaded) and not report.quarantined
    assert world.aurora_rows() == expected == world.source_rows(world.customers)
    state = f"{world.db}_customers"
    (amount,) = [c for c in catalog_columns(world.mysql, world.target_db, [state])[state] if c.name == "amount"]
    assert amount.column_type == "decimal(30,8)"


# How state tables were made before _cdc_commit_ts was read from the position: a stored column
# that the load has to fill, and DMS's TimestampColumnName stored as a data column. The loader
# adds the data columns it finds missing.
_STATE_TABLE_OF_AN_EARLIER_VERSION = """
CREATE TABLE `{database}`.`{table}` (
  id BIGINT NOT NULL,
  cdc_commit_ts LONGTEXT NULL,
  _cdc_position VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  _cdc_deleted TINYINT(1) NOT NULL,
  _cdc_commit_ts DATETIME(6) NULL,
  _cdc_loaded_at DATETIME(6) NOT NULL,
  PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
"""


@pytest.mark.parametrize("state_table", ["new", "made by an earlier version", "new, files without a commit time"])
def test_commit_time_of_each_row_is_its_latest_change(stack, unique_name, tmp_path, state_table):
    with_commit_time = state_table != "new, files without a commit time"
    world = World(
        stack, unique_name, tmp_path, aurora=True, timestamp_column="cdc_commit_ts" if with_commit_time else None
    )
    state = f"{world.db}_customers_state"
    try:
        if state_table == "made by an earlier version":
            with world.mysql.cursor() as cur:
                cur.execute(_STATE_TABLE_OF_AN_EARLIER_VERSION.format(database=world.target_db, table=state))
        committed: dict[int, dt.datetime] = {}  # id → commit time of its latest change, as the source made them

        def land() -> None:
            for change in world.dms.tables[world.customers].pending:
                committed[change.row["id"]] = change.commit_ts.astimezone(UTC).replace(tzinfo=None)
            world.dms.flush(world.customers)

        for i in (1, 2, 3):
            world.dms.insert(world.customers, customer(i))
        land()
        world.run_aurora()  # into the empty state table directly
        world.dms.update(world.customers, {"id": 1}, {"qty": 5})
        world.dms.delete(world.customers, {"id": 2})
        land()
        world.run_aurora()  # keys already there: through staging
        with world.mysql.cursor() as cur:
            cur.execute(f"SELECT id, _cdc_commit_ts FROM `{world.target_db}`.`{world.db}_customers`")
            live = dict(cur.fetchall())
            if with_commit_time:  # the TimestampColumnName column as DMS wrote it
                cur.execute(f"SELECT id, cdc_commit_ts FROM `{world.target_db}`.`{world.db}_customers`")
                as_written = dict(cur.fetchall())
            cur.execute(f"SELECT _cdc_commit_ts FROM `{world.target_db}`.`{state}` WHERE id = 2")
            tombstone = cur.fetchone()[0]
        state_columns = {c.name: c for c in catalog_columns(world.mysql, world.target_db, [state])[state]}
        if with_commit_time:
            assert live == {1: committed[1], 3: committed[3]}
            assert tombstone == committed[2]
            assert as_written == {k: format_commit_ts(v.replace(tzinfo=UTC)) for k, v in live.items()}
            # only a state table of an earlier version stores it; the view shows it from the position
            assert ("cdc_commit_ts" in state_columns) == (state_table == "made by an earlier version")
        else:
            assert live == {1: None, 3: None} and tombstone is None
        assert world.aurora_rows() == world.source_rows(world.customers)
        assert state_columns["_cdc_commit_ts"].generated == (state_table != "made by an earlier version")
        # LOAD DATA builds each position as change_files.py builds BigQuery's: the same in both engines
        world.run_library()
        bq_positions = {
            r["id"]: r["_cdc_position"]
            for r in world.bq.query(
                f"SELECT id, _cdc_position FROM `local.{world.dataset}.{world.db}_customers`"
            ).result()
        }
        with world.mysql.cursor() as cur:
            cur.execute(f"SELECT id, _cdc_position FROM `{world.target_db}`.`{world.db}_customers`")
            assert dict(cur.fetchall()) == bq_positions
    finally:
        world.close()


@pytest.mark.parametrize("folders", ["%Y/%m/%d/%H", "%Y-%m-%d", "%Y%m"])  # DatePartitionSequence/Delimiter
def test_cdc_files_in_date_folders_load_once_including_a_late_one_in_the_folder_before(world, folders):
    expected = world.seed(range(1, 4))
    world.advance(world.run_aurora())
    assert world.aurora_rows() == expected

    def land(when: dt.datetime) -> str:
        """Flush the pending changes as DMS writes them with DatePartitionEnabled: the
        file's own name, inside the date folder of its time (UTC)."""
        flat = world.dms.flush(world.customers, file_time=when)
        prefix, name = flat.rsplit("/", 1)
        dated = f"{prefix}/{when:{folders}}/{name}"
        body = world.s3.get_object(Bucket=world.bucket, Key=flat)["Body"].read()
        world.s3.put_object(Bucket=world.bucket, Key=dated, Body=body)
        world.s3.delete_object(Bucket=world.bucket, Key=flat)
        return dated

    before_midnight = dt.datetime(2026, 11, 30, 23, 50, tzinfo=UTC)  # the month's last hour, day and month
    world.dms.update(world.customers, {"id": 1}, {"qty": 11})
    first = land(before_midnight)
    world.dms.insert(world.customers, customer(4))
    second = land(before_midnight + dt.timedelta(minutes=20))
    reports = world.run_aurora()
    assert [sorted(r.loaded) for r in reports] == [sorted([first, second])]
    world.advance(reports)
    assert world.aurora_rows() == world.source_rows(world.customers)

    # a file that lands after the watermark passed midnight, named (and foldered) five
    # minutes before it: within the late-file grace, found in the folder before, loaded once
    world.dms.delete(world.customers, {"id": 2})
    late = land(before_midnight + dt.timedelta(minutes=5))
    reports = world.run_aurora()
    assert [list(r.loaded) for r in reports] == [[late]] and not reports[0].already_loaded
    world.advance(reports)
    assert world.aurora_rows() == world.source_rows(world.customers)
    assert 2 not in world.aurora_rows() and world.aurora_rows()[1]["qty"] == 11
    assert world.run_aurora() == []  # nothing new: no batch


def test_a_file_whose_columns_the_table_cannot_take_is_quarantined_and_the_table_left_as_it_was(world):
    """1,100 new BIGINT columns are more than an InnoDB table takes: the file is quarantined
    with MySQL's message, the state table keeps exactly its columns (none added one by one),
    and the next file of the batch loads."""
    expected = world.seed(range(1, 3))
    world.run_aurora()
    state = f"{world.db}_customers_state"
    before = catalog_columns(world.mysql, world.target_db, [state])[state]
    prefix = f"dms/{world.db}/customers/"
    columns = [*world.dms.tables[world.customers].columns, *((f"c{n:04d}", pa.int64()) for n in range(1100))]
    wide = write_change_file(
        columns,
        [
            Change(
                "U",
                {**customer(1, qty=-1), **{f"c{n:04d}": n for n in range(1100)}},
                dt.datetime(2026, 11, 23, 8, tzinfo=UTC),
            )
        ],
        timestamp_column="cdc_commit_ts",
        include_op=True,
    )
    world.s3.put_object(Bucket=world.bucket, Key=prefix + "20261123-080000000.parquet", Body=wide)
    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 8, 2, tzinfo=UTC))
    expected[2]["qty"] = 22

    (report,) = world.run_aurora()
    reason = report.quarantined[prefix + "20261123-080000000.parquet"]
    assert f"the state table {world.target_db}.{state} cannot take the file's columns (1100 column(s) to add)" in reason
    assert "MySQL error" in reason and "olumns" in reason.split("MySQL error", 1)[1]  # the server's own words
    assert list(report.loaded) == [prefix + "20261123-080200000.parquet"]
    assert catalog_columns(world.mysql, world.target_db, [state])[state] == before
    assert world.aurora_rows() == expected  # key 1's change in the refused file is not applied
    with world.mysql.cursor() as cur:
        cur.execute(
            f"SELECT reason FROM `{world.target_db}`.`_cdc_sync_ledger` WHERE chunk = -1 "
            "AND status = 'quarantined' AND object_key = %s",
            (prefix + "20261123-080000000.parquet",),
        )
        assert cur.fetchone() == (reason,)
