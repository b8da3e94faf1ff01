"""DMS change files → BigQuery changelog → latest-state view, scenario by scenario.

Library-level runs (the functions the DAG's tasks call) against the real moto server,
BigQuery emulator and MariaDB source; every test compares the view with a state the
test computes itself from the changes it made.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.exceptions import Conflict
from google.cloud import bigquery

from cdc_sync.sources.dms.writer import Change, write_change_file
from cdc_sync.targets.bigquery import batch as bigquery_target
from cdc_sync.targets.bigquery import ledger as ledger_module
from cdc_sync.targets.bigquery import loader as loader_module
from tests.integration.harness import World, customer, expected_row

pytestmark = pytest.mark.services
UTC = dt.UTC


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    yield w
    w.close()


def test_updates_in_several_files_and_within_one_file_delete_reinsert_and_unknown_delete(world):
    expected = world.seed(range(1, 6))
    # file 1: the same key updated three times, then another key deleted
    for n in range(3):
        world.dms.update(world.customers, {"id": 1}, {"qty": 100 + n})
    world.dms.delete(world.customers, {"id": 2})
    world.dms.flush(world.customers)
    # file 2: key 1 updated again; key 2 re-inserted with new values; key 3 deleted and re-inserted
    world.dms.update(world.customers, {"id": 1}, {"name": "final"})
    world.dms.insert(world.customers, customer(2, name="back again"))
    world.dms.delete(world.customers, {"id": 3})
    world.dms.insert(world.customers, customer(3, qty=333))
    # a delete of a key that was never inserted (DMS can emit one after a filtered load)
    world.dms.delete(world.customers, {"id": 999})
    world.dms.flush(world.customers)
    expected[1].update(qty=102, name="final")
    expected[2] = expected_row(customer(2, name="back again"))
    expected[3] = expected_row(customer(3, qty=333))

    reports = world.run_library()
    assert [len(r.loaded) for r in reports] == [3]  # one load job for LOAD + 2 CDC files
    assert world.view_rows() == expected
    assert world.view_rows() == world.source_rows(world.customers)
    assert 999 not in world.view_rows()


def test_full_load_row_stamped_after_a_cdc_update_made_during_the_load_loses_to_it(world):
    world.dms.insert(world.customers, customer(1, name="before load"))
    # DMS reads the snapshot (old value) but stamps rows with the transfer time, which is
    # later than the commit of an update made while the table was being loaded.
    transfer_time = world.dms.tick(0) + dt.timedelta(minutes=5)
    world.dms.full_load(world.customers, transfer_time=transfer_time)
    world.dms.update(world.customers, {"id": 1}, {"name": "updated during load"})
    world.dms.flush(world.customers)

    world.run_library()
    rows = world.view_rows()
    assert rows[1]["name"] == "updated during load"
    assert rows == world.source_rows(world.customers)


def test_real_dms_fixture_loads_as_it_is(stack, unique_name, tmp_path, dms_fixture):
    w = World(stack, unique_name, tmp_path, timestamp_column="DMS_TIMESTAMP")
    try:
        w.write_config(tables=[{"schema": w.db, "name": "dms_test_table", "primary_key": ["id"]}])
        key = f"dms/{w.db}/dms_test_table/LOAD00000001.parquet"
        w.s3.put_object(Bucket=w.bucket, Key=key, Body=dms_fixture.read_bytes())
        reports = w.run_library()
        assert {r.table: (r.loaded, r.quarantined) for r in reports} == {f"{w.db}.dms_test_table": ({key: 10}, {})}

        view = f"local.{w.dataset}.{w.db}_dms_test_table"
        types = {
            f.name: f.field_type for f in w.bq.get_table(f"local.{w.dataset}.{w.db}_dms_test_table_changelog").schema
        }
        assert types["my_money"] == "BIGNUMERIC"  # decimal(38,4): 34 integer digits
        assert types["my_numeric"] == "NUMERIC"
        assert types["my_timestamp"] == "TIMESTAMP"
        assert types["my_bytea"] == "BYTES"
        assert types["my_bool"] == "BOOLEAN"
        assert types["my_smallint"] == "INTEGER"

        got = {r["id"]: dict(r) for r in w.bq.query(f"SELECT * FROM `{view}`").result()}
        source = pq.read_table(dms_fixture).to_pylist()
        assert len(got) == len(source) == 10
        for row in source:
            loaded = got[row["id"]]
            for column, value in row.items():
                if column == "my_real":  # float32 in the file, FLOAT64 in BigQuery
                    assert loaded[column] == pytest.approx(value, rel=1e-6), column
                elif column == "my_timestamp":
                    assert loaded[column] == value.astimezone(UTC), column
                else:
                    assert loaded[column] == value, (row["id"], column)
        # every row is a full-load insert ordered before any CDC change, commit time from DMS_TIMESTAMP
        meta = w.bq.query(f"SELECT _cdc_commit_ts, _cdc_position FROM `{view}` WHERE id = 1").result()
        first = next(iter(meta))
        assert first["_cdc_commit_ts"] == dt.datetime(2022, 7, 26, 6, 46, 18, 616807, tzinfo=UTC)
        assert first["_cdc_position"].startswith("0|")
    finally:
        w.close()


def test_same_file_delivered_twice_under_new_key_and_same_key(world):
    expected = world.seed(range(1, 4))
    world.dms.update(world.customers, {"id": 1}, {"qty": 7})
    key = world.dms.flush(world.customers)
    expected[1]["qty"] = 7
    body = world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read()
    # DMS after a task restart: the same changes again, in a later file
    replay_key = key.replace("07000", "07590")
    world.s3.put_object(Bucket=world.bucket, Key=replay_key, Body=body)
    world.run_library()
    # the same object uploaded again (same key, same content): nothing new
    world.s3.put_object(Bucket=world.bucket, Key=key, Body=body)
    world.run_library(rescan=True)

    assert world.view_rows() == expected
    assert world.changelog_count() == 3 + 1 + 1  # full load, the change, its replayed copy
    loaded = [r for r in world.ledger() if r["status"] == "loaded"]
    assert sorted(r["object_key"] for r in loaded) == sorted(
        [f"dms/{world.db}/customers/LOAD00000001.parquet", key, replay_key]
    )


def test_files_landing_out_of_order_converge(world):
    expected = world.seed(range(1, 4))
    world.run_library()
    world.dms.update(world.customers, {"id": 1}, {"qty": 1})
    early = world.dms.tables[world.customers].pending
    world.dms.tables[world.customers].pending = []
    early_time = world.dms.tick()
    world.dms.update(world.customers, {"id": 1}, {"qty": 2})
    world.dms.delete(world.customers, {"id": 2})
    late_key = world.dms.flush(world.customers)
    # the later file lands and is loaded first ...
    world.run_library()
    # ... then the earlier one arrives, with an older name (inside the late-file grace)
    from cdc_sync.sources.dms.writer import cdc_file_name

    early_key = late_key.rsplit("/", 1)[0] + "/" + cdc_file_name(early_time)
    assert early_key < late_key
    world.s3.put_object(Bucket=world.bucket, Key=early_key, Body=world.dms.cdc_file_body(world.customers, early))
    reports = world.run_library()
    assert [list(r.loaded) for r in reports] == [[early_key]]

    expected[1]["qty"] = 2
    del expected[2]
    assert world.view_rows() == expected


def test_load_task_rerun_with_the_same_batch_appends_nothing(world):
    world.seed(range(1, 4))
    batches = world.plan()
    first = world.load_bigquery(batches[0])
    again = world.load_bigquery(batches[0])
    assert sum(first.loaded.values()) == 3
    assert again.loaded == {} and again.already_loaded == list(first.loaded)
    assert world.changelog_count() == 3


def test_crash_after_load_job_before_ledger_write_then_watermark_lost(world, monkeypatch):
    expected = world.seed(range(1, 4))
    real_record = ledger_module.BigQueryLedger.record

    def crash_on_loaded(self, table_name, entries):
        if any(e.status == ledger_module.LOADED for e in entries):
            raise RuntimeError("worker killed after the load job finished")
        return real_record(self, table_name, entries)

    monkeypatch.setattr(ledger_module.BigQueryLedger, "record", crash_on_loaded)
    with pytest.raises(RuntimeError, match="worker killed"):
        world.run_library()
    assert world.changelog_count() == 3  # the job did append
    monkeypatch.setattr(ledger_module.BigQueryLedger, "record", real_record)

    # retry: the pending ledger row names the finished job; nothing is appended again
    reports = world.run_library()
    assert [r.already_loaded for r in reports] == [[f"dms/{world.db}/customers/LOAD00000001.parquet"]]
    assert world.changelog_count() == 3
    # the repaired ledger row carries the row count the pending row had recorded
    assert [r["row_count"] for r in world.ledger() if r["status"] == "loaded"] == [3]
    # the watermark store is wiped: a full listing, and the ledger still refuses duplicates
    world.watermarks.values.clear()
    assert world.run_library() == []
    assert world.changelog_count() == 3
    assert world.view_rows() == expected


def test_corrupt_and_type_changed_files_are_quarantined_the_rest_loads(world, caplog):
    expected = world.seed(range(1, 4))
    world.run_library()
    prefix = f"dms/{world.db}/customers/"
    corrupt_key = prefix + "20261123-080000000.parquet"
    world.s3.put_object(Bucket=world.bucket, Key=corrupt_key, Body=b"PAR1\x00\x01 truncated")
    # a file where `qty` became text (schema drift on the source)
    columns = [(n, pa.string() if n == "qty" else t) for n, t in world.dms.tables[world.customers].columns]
    drifted = write_change_file(
        columns,
        [Change("U", {**customer(1), "qty": "abc"}, dt.datetime(2026, 11, 23, 8, 1, tzinfo=UTC))],
        timestamp_column="cdc_commit_ts",
        include_op=True,
    )
    drift_key = prefix + "20261123-080100000.parquet"
    world.s3.put_object(Bucket=world.bucket, Key=drift_key, Body=drifted)
    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    good_key = world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 8, 2, tzinfo=UTC))
    expected[2]["qty"] = 22

    with caplog.at_level(logging.ERROR):
        reports = world.run_library()
    report = reports[0]
    assert set(report.quarantined) == {corrupt_key, drift_key}
    assert "not a readable Parquet file" in report.quarantined[corrupt_key]
    assert "column qty has type STRING in the file but INTEGER in the table" in report.quarantined[drift_key]
    assert good_key in report.loaded
    assert world.view_rows() == expected
    assert corrupt_key in caplog.text
    marker = world.s3.get_object(Bucket=world.bucket, Key=f"cdc-sync/quarantine/{world.pipeline.name}/{drift_key}.json")
    assert b"column qty" in marker["Body"].read()

    # quarantined files are not retried on every run ...
    assert world.run_library(rescan=True) == []
    # ... until someone fixes the file and replays it
    world.dms.tables[world.customers].pending = [
        Change("U", {**customer(1), "qty": 4242}, dt.datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    ]
    world.s3.put_object(
        Bucket=world.bucket,
        Key=corrupt_key,
        Body=world.dms.cdc_file_body(world.customers, world.dms.tables[world.customers].pending),
    )
    replayed = world.run_library(replay_keys=[corrupt_key])
    assert [list(r.loaded) for r in replayed] == [[corrupt_key]]
    expected[1]["qty"] = 4242
    assert world.view_rows() == expected


def test_new_nullable_column_is_added(world):
    expected = world.seed(range(1, 3))
    world.run_library()
    world.add_loyalty_points(expected)
    world.run_library()
    assert world.view_rows() == expected


def test_a_decimal_widened_in_the_source_loads(world):
    expected = world.seed(range(1, 3))
    world.run_library()
    world.widen_amount(expected)
    (report,) = world.run_library()
    assert list(report.loaded) and not report.quarantined
    assert world.view_rows() == expected


def test_without_commit_timestamp_orders_by_file_and_row_and_warns_once(stack, unique_name, tmp_path, caplog):
    w = World(stack, unique_name, tmp_path, timestamp_column=None)
    try:
        expected = w.seed(range(1, 3))
        w.dms.update(w.customers, {"id": 1}, {"qty": 5})
        w.dms.update(w.customers, {"id": 1}, {"qty": 6})
        w.dms.flush(w.customers)
        with caplog.at_level(logging.WARNING):
            w.run_library()
            w.dms.update(w.customers, {"id": 2}, {"qty": 9})
            w.dms.flush(w.customers)
            w.run_library()
        expected[1]["qty"] = 6
        expected[2]["qty"] = 9
        assert w.view_rows() == expected
        assert caplog.text.count("no commit_timestamp_column") == 1
    finally:
        w.close()


def test_backfill_window_plans_the_files_written_in_its_interval(world):
    world.seed(range(1, 3))
    times = [dt.datetime(2026, 11, day, 12, tzinfo=UTC) for day in (1, 2, 3)]
    keys = []
    for n, when in enumerate(times):
        world.dms.update(world.customers, {"id": 1}, {"qty": n})
        keys.append(world.dms.flush(world.customers, file_time=when))
    world.write_config(late_file_grace_minutes=0)
    window = (dt.datetime(2026, 11, 2, tzinfo=UTC), dt.datetime(2026, 11, 3, tzinfo=UTC))
    batches = world.plan(window=window)
    planned = [f["key"] for b in batches for f in b["files"]]
    assert planned == [f"dms/{world.db}/customers/LOAD00000001.parquet", keys[1]]
    # loading that window, then the others in any order, converges on the source
    for batch in batches:
        world.load_bigquery(batch)
    world.run_library(rescan=True)
    assert world.view_rows() == world.source_rows(world.customers)


def test_backfill_window_of_files_named_in_the_endpoints_date_partition_timezone(world):
    # DatePartitionTimezone: DMS names date folders and CDC files in local time (Seoul, UTC+9)
    world.seed(range(1, 3))
    seoul = ZoneInfo("Asia/Seoul")
    written = [
        dt.datetime(2026, 11, 1, 20, tzinfo=UTC),
        dt.datetime(2026, 11, 2, 10, tzinfo=UTC),
        dt.datetime(2026, 11, 2, 20, tzinfo=UTC),
    ]  # local: 11-02 05:00, 11-02 19:00, 11-03 05:00
    keys = []
    for n, when in enumerate(written):
        world.dms.update(world.customers, {"id": 1}, {"qty": n})
        flat = world.dms.flush(world.customers, file_time=when)
        local = when.astimezone(seoul)
        keys.append(f"dms/{world.db}/customers/{local:%Y/%m/%d/%H}/{local:%Y%m%d-%H%M%S}000.parquet")
        body = world.s3.get_object(Bucket=world.bucket, Key=flat)["Body"].read()
        world.s3.put_object(Bucket=world.bucket, Key=keys[-1], Body=body)
        world.s3.delete_object(Bucket=world.bucket, Key=flat)
    world.write_config(late_file_grace_minutes=0, source_settings={"date_partition_timezone": "Asia/Seoul"})
    window = (dt.datetime(2026, 11, 2, tzinfo=UTC), dt.datetime(2026, 11, 3, tzinfo=UTC))  # the DAG's interval
    planned = [f["key"] for b in world.plan(window=window) for f in b["files"]]
    assert planned == [f"dms/{world.db}/customers/LOAD00000001.parquet", keys[1], keys[2]]


def test_object_rewritten_after_listing_is_loaded_in_its_new_version_next_run(world):
    world.seed(range(1, 3))
    batches = world.plan()
    key = batches[0]["files"][0]["key"]
    # between planning and loading, the object is replaced (a DMS reload rewrites LOAD files)
    world.dms.update(world.customers, {"id": 1}, {"qty": 77})
    world.dms.full_load(world.customers)
    report = world.load_bigquery(batches[0])
    world.advance([report])
    assert report.changed_since_listing == [key] and report.loaded == {}
    # nothing of the listed version was loaded, the watermark did not pass it: the next run loads the new one
    reports = world.run_library()
    assert [list(r.loaded) for r in reports] == [[key]]
    assert world.view_rows() == world.source_rows(world.customers)


def test_a_file_bigquery_refuses_is_isolated_and_the_others_of_its_batch_load(world):
    expected = world.seed(range(1, 4))
    world.run_library()
    world.dms.update(world.customers, {"id": 1}, {"qty": 5})
    first = world.dms.flush(world.customers)
    # bytes that are not UTF-8 in a text column: only BigQuery notices, when it reads the file
    columns = world.dms.tables[world.customers].columns
    hostile = pa.table(
        {
            "Op": ["U"],
            "cdc_commit_ts": ["2026-11-23 07:30:00.000000"],
            **{name: pa.array([customer(2)[name]], t) for name, t in columns if name != "name"},
            "name": pa.array([b"caf\xe9 \xff"], pa.binary()).cast(pa.string(), safe=False),
        },
    )
    bad_key = f"dms/{world.db}/customers/20261123-073000000.parquet"
    import io

    buffer = io.BytesIO()
    pq.write_table(hostile, buffer)
    world.s3.put_object(Bucket=world.bucket, Key=bad_key, Body=buffer.getvalue())
    world.dms.update(world.customers, {"id": 3}, {"qty": 33})
    last = world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 7, 31, tzinfo=UTC))
    expected[1]["qty"], expected[3]["qty"] = 5, 33

    (report,) = world.run_library()
    assert set(report.loaded) == {first, last}
    assert list(report.quarantined) == [bad_key]
    assert report.quarantined[bad_key].startswith("BigQuery refused the file:")
    assert world.view_rows() == expected


@pytest.mark.parametrize("meet_at", ["ledger_read", "claims_written"])
def test_concurrent_loads_of_overlapping_file_sets_append_each_file_once(world, stack, monkeypatch, meet_at):
    """{A,B} and {A,B,C} loaded at once (a backfill beside a scheduled run): both loads are
    held until both have read the ledger (nothing loaded yet), or until both have written
    their claims; each file must still reach the changelog once."""
    expected = world.seed(range(1, 4))
    world.run_library()  # the full load: dataset, ledger and changelog exist (the emulator fails concurrent DDL)
    keys = []
    for minute, (key, qty) in enumerate([(1, 111), (2, 222), (3, 333)]):
        world.dms.update(world.customers, {"id": key}, {"qty": qty})
        keys.append(world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 8, minute, tzinfo=UTC)))
        expected[key]["qty"] = qty
    key_a, key_b, key_c = keys
    (batch,) = world.plan()
    assert [f["key"] for f in batch["files"]] == [key_a, key_b, key_c]
    batch_ab = {**batch, "files": batch["files"][:2]}

    barrier = threading.Barrier(2, timeout=120)
    held: set[int] = set()

    def hold_once():
        if threading.get_ident() not in held:
            held.add(threading.get_ident())
            barrier.wait()

    if meet_at == "ledger_read":
        real_load_new = loader_module.ChangelogLoader._load_new

        def load_new(self, files, report):
            hold_once()
            return real_load_new(self, files, report)

        monkeypatch.setattr(loader_module.ChangelogLoader, "_load_new", load_new)
    else:
        real_claims = ledger_module.BigQueryLedger.claims

        def claims(self, table_name, keys):
            hold_once()
            return real_claims(self, table_name, keys)

        monkeypatch.setattr(ledger_module.BigQueryLedger, "claims", claims)

    pipeline = world.pipeline

    def run(one_batch):
        return bigquery_target.load_batch(
            pipeline, one_batch, stack.boto3_client("s3"), stack.bigquery_client(), workdir=world.tmp_path
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(run, [batch_ab, batch]))

    changelog = f"local.{world.dataset}.{world.db}_customers_changelog"
    per_file = {
        r["k"]: r["n"]
        for r in world.bq.query(f"SELECT _cdc_source_key AS k, COUNT(*) AS n FROM `{changelog}` GROUP BY k").result()
    }
    assert per_file == {f"dms/{world.db}/customers/LOAD00000001.parquet": 3, key_a: 1, key_b: 1, key_c: 1}
    assert world.view_rows() == expected
    loaded = [set(r.loaded) for r in reports]
    assert not loaded[0] & loaded[1] and loaded[0] | loaded[1] == {key_a, key_b, key_c}
    assert set(reports[0].handled_keys) == {key_a, key_b} and set(reports[1].handled_keys) == {key_a, key_b, key_c}
    assert not any(r.quarantined for r in reports)
    # a later run finds everything loaded
    assert world.run_library(rescan=True) == [] and world.changelog_count() == 6


def test_a_claim_whose_load_job_never_started_is_fenced_and_its_files_load(world):
    """A worker wrote its claim (pending ledger rows) and died before inserting its job; it
    may still wake up. The next load fences that job id, so the zombie can never append."""
    expected = world.seed(range(1, 4))
    (batch,) = world.plan()
    pipeline = world.pipeline
    table = pipeline.table(batch["table"])
    zombie_id = f"cdc_sync_zombie_{world.uid}"
    ledger = ledger_module.BigQueryLedger(world.bq, pipeline.bigquery, pipeline.name)
    loader_module.ChangelogLoader(pipeline, table, world.bq, world.s3, world.tmp_path)._ensure_dataset()
    ledger.ensure()
    ledger.record(
        table.qualified_name,
        [ledger_module.LedgerEntry(f["key"], f["etag"], ledger_module.PENDING, zombie_id, 3) for f in batch["files"]],
    )

    reports = world.run_library()
    assert [list(r.loaded) for r in reports] == [[f["key"] for f in batch["files"]]]
    fence = world.bq.get_job(zombie_id)
    assert fence.job_type == "query" and fence.labels == {"cdc_sync": "fence"}
    # the zombie wakes up and inserts its load job: BigQuery refuses the id
    path = world.tmp_path / "zombie.parquet"
    pq.write_table(pa.table({"id": [1]}), path)
    with path.open("rb") as stream, pytest.raises(Conflict):
        world.bq.load_table_from_file(
            stream,
            f"local.{world.dataset}.{world.db}_customers_changelog",
            job_id=zombie_id,
            job_config=bigquery.LoadJobConfig(source_format="PARQUET"),
        )
    assert world.changelog_count() == 3
    assert world.view_rows() == expected
