"""Listing cost grows with new files, not with a prefix's history (against the moto server)."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest

from cdc_sync import planning
from cdc_sync.dms.writer import cdc_file_name
from cdc_sync.listing import ListingStats, Watermark, list_new_files, table_cursors
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
        watermark = Watermark(cdc_after=old[-1])
        new = [prefix + cdc_file_name(start + dt.timedelta(minutes=OLD_FILES + i)) for i in range(3)]
        for key in new:
            w.s3.put_object(Bucket=w.bucket, Key=key, Body=b"x")

        stats = ListingStats()
        found = []
        for cursor in table_cursors(w.customers, prefix, watermark):  # the sensor's cursors
            found += list_new_files(w.s3, w.bucket, cursor, prefix, "parquet", stats=stats)
        assert [f.key for f in found] == new
        assert stats.calls == 2

        # the planner looks back 15 minutes for late files (the boundary file included): still two calls
        stats = ListingStats()
        planned = planning.candidate_files(w.pipeline, w.pipeline.tables[0], w.s3, watermark, stats=stats)
        assert stats.calls == 2
        assert [f.key for f in planned] == old[-16:] + new

        # a naive listing of the folder pays for the whole history
        naive = ListingStats()
        everything = list(list_new_files(w.s3, w.bucket, table_cursors(w.customers, prefix, Watermark())[1],
                                         prefix, "parquet", stats=naive))
        assert len(everything) == OLD_FILES + 3 and naive.calls == 3
    finally:
        w.close()
