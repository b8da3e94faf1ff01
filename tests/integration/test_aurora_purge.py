"""Aurora tombstone purge: deletes older than the safe horizon leave the state table in small
batches; the live view (what users and reconciliation read) is unchanged, and a late older
change of a key whose tombstone is kept still loses to it. MariaDB as the Aurora stand-in."""

from __future__ import annotations

from datetime import timedelta

import pymysql
import pytest

from cdc_sync.sources.dms.writer import cdc_file_name
from cdc_sync.targets.aurora.purge import purge_pipeline
from tests.integration.harness import World

pytestmark = pytest.mark.services


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path, aurora=True)
    w.write_config(aurora={"purge_tombstones_after_hours": 1, "purge_batch_rows": 1})
    yield w
    w.close()


def _state(world: World) -> dict:
    conn = world.stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, _cdc_deleted FROM `{world.target_db}`.`{world.db}_customers_state`")
            return {r["id"]: r["_cdc_deleted"] for r in cur.fetchall()}
    finally:
        conn.close()


def _purge(world: World, now):
    reports = purge_pipeline(world.pipeline, world.aurora_connection, now=now)
    return {r.table: r for r in reports}[world.customers]


def test_purge_drops_only_tombstones_past_the_horizon_and_a_late_older_change_still_loses(world):
    world.seed(range(1, 7))
    world.run_aurora()
    world.dms.delete(world.customers, {"id": 1})
    world.dms.delete(world.customers, {"id": 2})
    first_deletes = world.dms.tick(0)
    world.dms.flush(world.customers)
    world.run_aurora()
    # two hours later: key 3 updated (that change lands late, below) and then deleted
    world.dms.tick(2 * 3600)
    world.dms.update(world.customers, {"id": 3}, {"qty": 999})
    early = world.dms.tables[world.customers].pending
    world.dms.tables[world.customers].pending = []
    early_time = world.dms.tick()
    world.dms.delete(world.customers, {"id": 3})
    late_key = world.dms.flush(world.customers)
    world.run_aurora()
    view_before = world.aurora_rows()
    assert view_before == world.source_rows(world.customers)
    assert _state(world) == {1: 1, 2: 1, 3: 1, 4: 0, 5: 0, 6: 0}

    # horizon: 1 hour + the 15-minute grace before `now`: past the first deletes, not the third
    report = _purge(world, first_deletes + timedelta(hours=1, minutes=30))
    assert (report.purged, report.batches) == (2, 2)  # purge_batch_rows: 1 → one tombstone per transaction
    assert _state(world) == {3: 1, 4: 0, 5: 0, 6: 0}
    assert world.aurora_rows() == view_before  # the live rows are untouched

    # the change made before the delete of key 3 lands late, in an older file: the kept tombstone wins
    early_key = late_key.rsplit("/", 1)[0] + "/" + cdc_file_name(early_time)
    world.s3.put_object(Bucket=world.bucket, Key=early_key, Body=world.dms.cdc_file_body(world.customers, early))
    reports = world.run_aurora()
    assert [list(r.loaded) for r in reports] == [[early_key]]
    assert world.aurora_rows() == view_before == world.source_rows(world.customers)
    assert _state(world)[3] == 1


def test_a_tombstone_in_or_after_an_unfinished_file_is_kept(world):
    world.seed(range(1, 5))
    world.run_aurora()
    world.dms.delete(world.customers, {"id": 1})
    world.dms.flush(world.customers)
    world.run_aurora()
    # a quarantined file (it may be fixed and replayed: it could hold older changes) ...
    broken = world.dms.tick()
    prefix = f"dms/{world.db}/customers/"
    world.s3.put_object(Bucket=world.bucket, Key=prefix + cdc_file_name(broken), Body=b"not parquet")
    # ... then a delete in a later file
    world.dms.delete(world.customers, {"id": 2})
    last = world.dms.tick(0)
    world.dms.flush(world.customers)
    reports = world.run_aurora()
    assert [len(r.quarantined) for r in reports] == [1]
    view_before = world.aurora_rows()

    report = _purge(world, last + timedelta(days=30))  # every tombstone is old enough by time
    assert report.purged == 1
    assert _state(world) == {2: 1, 3: 0, 4: 0}  # key 1's file sorts before the quarantined one
    assert world.aurora_rows() == view_before == world.source_rows(world.customers)


def test_purge_is_off_by_default(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path, aurora=True)
    try:
        w.seed(range(1, 3))
        w.run_aurora()
        assert _purge(w, None).skipped.startswith("purge off")
    finally:
        w.close()


def test_a_composite_key_table_is_purged_page_by_page(world):
    for order_id in (1, 2):
        for line_no in (1, 2, 3):
            world.dms.insert(world.lines, {"order_id": order_id, "line_no": line_no, "sku": "A", "price": "1.0000"})
    world.dms.full_load(world.lines)
    world.run_aurora()
    for key in ({"order_id": 1, "line_no": 2}, {"order_id": 2, "line_no": 1}, {"order_id": 2, "line_no": 3}):
        world.dms.delete(world.lines, key)
    last = world.dms.tick(0)
    world.dms.flush(world.lines)
    world.run_aurora()
    view_before = world.aurora_rows("order_lines")

    reports = purge_pipeline(world.pipeline, world.aurora_connection, now=last + timedelta(days=2))
    assert {r.table: r.purged for r in reports}[world.lines] == 3
    conn = world.stack.mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT order_id, line_no FROM `{world.target_db}`.`{world.db}_order_lines_state`")
            assert sorted(cur.fetchall()) == [(1, 1), (1, 3), (2, 2)]
    finally:
        conn.close()
    assert world.aurora_rows("order_lines") == view_before == world.source_rows(world.lines)
