"""DMS object names, listing cursors and the late-file grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cdc_sync.sources.dms.layout import FileKind, classify, grace_start_after, time_key
from cdc_sync.sources.listing import Cursor, Watermark, accept, table_cursors

PREFIX = "dms/shop/orders/"


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("dms/shop/orders/LOAD00000001.parquet", FileKind.FULL_LOAD),
        ("dms/shop/orders/LOAD0000000A.parquet", FileKind.FULL_LOAD),
        ("dms/shop/orders/20261123-074501123.parquet", FileKind.CDC),
        ("dms/shop/orders/2026/11/23/20261123-074501123.parquet", FileKind.CDC),
        ("dms/shop/orders/20261123-074501123-repair-0a1b2c3d.parquet", FileKind.CDC),  # reconcile repair
        ("dms/shop/orders/20261123-074501123-other.parquet", None),
        ("dms/shop/orders/20261123-074501123.csv", None),
        ("dms/shop/orders/notes.txt", None),
        ("dms/shop/orders_archive/LOAD00000001.parquet", None),
        ("dms/shop/orders/sub/20261123-074501123.parquet", None),
        # DatePartitionSequence × DatePartitionDelimiter: the ones that sort by time
        ("dms/shop/orders/2026/11/23/07/20261123-074501123.parquet", FileKind.CDC),  # YYYYMMDDHH, SLASH
        ("dms/shop/orders/2026/11/20261123-074501123.parquet", FileKind.CDC),  # YYYYMM
        ("dms/shop/orders/2026-11-23/20261123-074501123.parquet", FileKind.CDC),  # DASH
        ("dms/shop/orders/2026_11_23_07/20261123-074501123.parquet", FileKind.CDC),  # UNDERSCORE
        ("dms/shop/orders/20261123/20261123-074501123.parquet", FileKind.CDC),  # NONE
        ("dms/shop/orders/202611/20261123-074501123.parquet", FileKind.CDC),  # YYYYMM, NONE
        ("dms/shop/orders/11/2026/23/20261123-074501123.parquet", None),  # MMYYYYDD: not by time
        ("dms/shop/orders/23-11-2026/20261123-074501123.parquet", None),  # DDMMYYYY
        ("dms/shop/orders/2026-11/23/20261123-074501123.parquet", None),  # mixed delimiters
    ],
)
def test_classify(key, kind):
    assert classify(key, PREFIX) == kind


def test_cdc_keys_sort_before_load_keys_and_the_cdc_cursor_stops_there():
    load_cursor, cdc_cursor = table_cursors("shop.orders", PREFIX, Watermark())
    assert load_cursor.prefix == PREFIX + "LOAD"
    page = [
        {"Key": PREFIX + "20261123-074501123.parquet", "ETag": '"a"', "Size": 1},
        {"Key": PREFIX + "LOAD00000001.parquet", "ETag": '"b"', "Size": 2},
    ]
    files, stopped = accept(page, cdc_cursor, PREFIX, "parquet")
    assert [f.key for f in files] == [PREFIX + "20261123-074501123.parquet"] and stopped
    assert files[0].etag == "a"


def test_cursor_request_uses_start_after_then_continuation():
    cursor = Cursor("t", PREFIX, start_after=PREFIX + "20261123-074501123.parquet")
    assert cursor.request("b", None, 1000)["StartAfter"] == PREFIX + "20261123-074501123.parquet"
    second = cursor.request("b", "token", 1000)
    assert second["ContinuationToken"] == "token" and "StartAfter" not in second


@pytest.mark.parametrize(
    ("watermark", "expected"),
    [
        (PREFIX + "20261123-074501123.parquet", PREFIX + "20261123-073001123"),
        (PREFIX + "20261123-000501123.parquet", PREFIX + "20261122-235001123"),
        (PREFIX + "2026/11/23/20261123-000501123.parquet", PREFIX + "2026/11/22/20261122-235001123"),
        (PREFIX + "2026/11/23/00/20261123-000501123.parquet", PREFIX + "2026/11/22/23/20261122-235001123"),
        (PREFIX + "2026-12-01/20261201-000501123.parquet", PREFIX + "2026-11-30/20261130-235001123"),
        (PREFIX + "2026_12_01_00/20261201-000501123.parquet", PREFIX + "2026_11_30_23/20261130-235001123"),
        (PREFIX + "2026120100/20261201-000501123.parquet", PREFIX + "2026113023/20261130-235001123"),
        (PREFIX + "202612/20261201-000501123.parquet", PREFIX + "202611/20261130-235001123"),
        (PREFIX + "LOAD00000001.parquet", PREFIX + "LOAD00000001.parquet"),
        (None, None),
    ],
)
def test_grace_moves_the_cdc_start_back(watermark, expected):
    assert grace_start_after(watermark, PREFIX, timedelta(minutes=15)) == expected


def test_watermark_advances_per_cursor():
    mark = Watermark().advanced(PREFIX, [PREFIX + "LOAD00000002.parquet", PREFIX + "20261123-074501123.parquet"])
    assert mark == Watermark(
        cdc_after=PREFIX + "20261123-074501123.parquet", load_after=PREFIX + "LOAD00000002.parquet"
    )
    # never moves back
    assert mark.advanced(PREFIX, [PREFIX + "20261101-000000000.parquet"]) == mark


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("dms/shop/orders/LOAD00000001.csv", FileKind.FULL_LOAD),
        ("dms/shop/orders/LOAD0000000F.csv.gz", FileKind.FULL_LOAD),
        ("dms/shop/orders/20261123-074501123.csv", FileKind.CDC),
        ("dms/shop/orders/2026/11/23/20261123-074501123.csv.gz", FileKind.CDC),
        ("dms/shop/orders/20261123-074501123-repair-0a1b2c3d.csv", FileKind.CDC),
        ("dms/shop/orders/20261123-074501123.parquet", None),
        ("dms/shop/orders/20261123-074501123.csv.tmp", None),
    ],
)
def test_classify_csv(key, kind):
    assert classify(key, PREFIX, "csv") == kind


def test_grace_in_the_endpoints_date_partition_timezone():
    key = PREFIX + "2026/11/23/09/20261123-090501123.parquet"
    # a zone without daylight saving: the grace as in UTC, names and folders in the zone's time
    assert (
        grace_start_after(key, PREFIX, timedelta(minutes=15), ZoneInfo("Asia/Seoul"))
        == PREFIX + "2026/11/23/08/20261123-085001123"
    )
    # New York's autumn hour repeats: a file written at 01:10 EST after one at 01:50 EDT sorts
    # before it, so the grace reaches an hour further back
    new_york = ZoneInfo("America/New_York")
    after_first_pass = PREFIX + "2026/11/01/01/20261101-015000000.parquet"
    start = grace_start_after(after_first_pass, PREFIX, timedelta(minutes=15), new_york)
    assert start == PREFIX + "2026/11/01/00/20261101-003500000"
    assert start < PREFIX + "2026/11/01/01/20261101-011000000.parquet"


def test_backfill_window_keys_in_the_endpoints_zone():
    midnight = datetime(2026, 11, 23, tzinfo=UTC)
    assert time_key(PREFIX, midnight, "%Y-%m-%d", ZoneInfo("Asia/Seoul")) == PREFIX + "2026-11-23/20261123-090000000"
    assert time_key(PREFIX, midnight, None, ZoneInfo("America/New_York")) == PREFIX + "20261122-190000000"
