"""Listing cost grows with new files, not with a prefix's history (against the moto server)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from cdc_sync import planning
from cdc_sync.sources.dms.writer import cdc_file_name
from cdc_sync.sources.listing import ListingStats, Watermark, grace_floor, list_new_files, table_cursors
from tests.integration.harness import World

pytestmark = pytest.mark.services
OLD_FILES = 2_500


def test_a_poke_costs_one_call_per_cursor_with_thousands_of_old_files(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    try:
        prefix = f"dms/{w.db}/customers/"
        start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
        old = [prefix + cdc_file_name(start + dt.timedelta(minutes=i)) for i in range(OLD_FILES)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: w.s3.put_object(Bucket=w.bucket, Key=k, Body=b"x"), old))
        grace = dt.timedelta(minutes=w.pipeline.options.late_file_grace_minutes)
        # as advance_watermarks leaves it: past every old file, the handled ones inside the grace remembered
        watermark = Watermark().advanced(prefix, old, grace_floor(prefix, grace, "parquet"))
        assert watermark.cdc_after == old[-1] and watermark.recent == tuple(old[-16:])  # the grace, not the history
        new = [prefix + cdc_file_name(start + dt.timedelta(minutes=OLD_FILES + i)) for i in range(3)]
        late = prefix + cdc_file_name(start + dt.timedelta(minutes=OLD_FILES - 5, seconds=30))  # 4.5 min late
        for key in [*new, late]:
            w.s3.put_object(Bucket=w.bucket, Key=key, Body=b"x")

        # the sensor's cursors: from the watermark moved back by the grace, passing over what was handled
        stats = ListingStats()
        found = []
        for cursor in table_cursors(w.customers, prefix, watermark, grace, skip_recent=True):
            found += list_new_files(w.s3, w.bucket, cursor, prefix, "parquet", stats=stats)
        assert [f.key for f in found] == [late, *new]  # a late file alone would wake it too
        assert stats.calls == 2

        # the planner looks back 15 minutes for late files (the boundary file included): still two calls
        stats = ListingStats()
        planned = planning.candidate_files(w.pipeline, w.pipeline.tables[0], w.s3, watermark, stats=stats)
        assert stats.calls == 2
        assert [f.key for f in planned] == sorted([*old[-16:], late, *new])

        # a naive listing of the folder pays for the whole history
        naive = ListingStats()
        everything = list(
            list_new_files(
                w.s3, w.bucket, table_cursors(w.customers, prefix, Watermark())[1], prefix, "parquet", stats=naive
            )
        )
        assert len(everything) == OLD_FILES + 4 and naive.calls == 3
    finally:
        w.close()


def _sensor_sees(w: World, watermark: Watermark) -> list[str]:
    """The keys the sensor's walks count as new for customers (as NewObjectsSensor builds them)."""
    prefix = f"dms/{w.db}/customers/"
    grace = dt.timedelta(minutes=w.pipeline.options.late_file_grace_minutes)
    return [
        f.key
        for cursor in table_cursors(w.customers, prefix, watermark, grace, skip_recent=True)
        for f in list_new_files(w.s3, w.bucket, cursor, prefix, "parquet")
    ]


def test_finished_files_the_watermark_missed_stop_waking_the_sensor_after_one_plan(stack, unique_name, tmp_path):
    """A watermark without `recent` (a crash between load and advance, or written before it
    existed): the loaded files inside the grace look late to the sensor once; the planner finds
    every target finished them and remembers them, so the sensor does not wake for them again."""
    w = World(stack, unique_name, tmp_path)
    try:
        w.seed(range(1, 3))
        w.dms.update(w.customers, {"id": 1}, {"name": "changed"})
        cdc = w.dms.flush(w.customers)
        w.run_library()
        name = (w.pipeline.name, w.customers)
        assert w.watermarks.values[name].recent == (cdc,) and _sensor_sees(w, w.watermarks.values[name]) == []

        w.watermarks.values[name] = Watermark(w.watermarks.values[name].cdc_after, w.watermarks.values[name].load_after)
        assert _sensor_sees(w, w.watermarks.values[name]) == [cdc]  # looks late: one run wakes for it
        assert w.plan(write_watermark=w.watermarks.write) == []  # the ledger: nothing to load
        assert _sensor_sees(w, w.watermarks.values[name]) == []
        assert w.view_rows() == w.source_rows(w.customers)
    finally:
        w.close()
