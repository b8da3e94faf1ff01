"""Firehose object names and the listing cursor over them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdc_sync.sources.firehose.layout import PrefixError, delivery_layout, grace_start_after, is_delivered_object
from cdc_sync.sources.listing import Watermark, accept, table_cursors

KEY = "processed/2026/11/23/07/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a-6a43-4c5e-a7b6-1d2e3f4a5b6c"


@pytest.mark.parametrize(
    ("key", "stream", "expected"),
    [
        (KEY, None, True),
        (KEY, "webAnalytics", True),
        (KEY, "otherStream", False),
        (KEY + ".gz", None, True),
        ("processed/2026/11/23/07/", None, False),
        ("processing-failed/2026/11/23/07/webAnalytics-1-2026-11-23-07-50-52-0f0e", None, False),
        ("processed/notes.txt", None, False),
    ],
)
def test_delivered_objects(key, stream, expected):
    assert is_delivered_object(key, "processed/", stream) is expected


def test_grace_goes_back_whole_hour_folders():
    assert grace_start_after(KEY, "processed/", timedelta(minutes=15)) == "processed/2026/11/23/06/"
    assert grace_start_after(KEY, "processed/", timedelta(0)) == KEY
    assert "processed/2026/11/23/06/" < "processed/2026/11/23/06/a" < KEY


def test_one_cursor_for_a_firehose_prefix():
    (cursor,) = table_cursors("web.clicks", "processed/", Watermark(cdc_after=KEY), timedelta(minutes=5), "firehose")
    assert cursor.prefix == "processed/" and cursor.start_after == "processed/2026/11/23/06/"
    files, stopped = accept(
        [{"Key": KEY, "ETag": '"e"', "Size": 10}, {"Key": "processed/junk", "ETag": '"f"', "Size": 1}],
        cursor,
        "processed/",
        "firehose",
    )
    assert [f.key for f in files] == [KEY] and not stopped


HIVE = "processed/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
HIVE_KEY = "processed/year=2026/month=11/day=23/hour=07/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a-6a43"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (HIVE_KEY, True),
        (HIVE_KEY + ".gz", True),
        ("processed/year=2026/month=11/day=23/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a", False),  # no hour folder
        ("processed/2026/11/23/07/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a", False),  # the default layout
        ("processed/year=2026/month=11/day=23/hour=07/notes.txt", False),
    ],
)
def test_a_custom_prefix_with_timestamp_expressions_names_its_objects(key, expected):
    assert is_delivered_object(key, HIVE) is expected


def test_a_custom_prefix_lists_from_its_static_part_and_goes_back_whole_folders():
    (cursor,) = table_cursors("web.clicks", HIVE, Watermark(cdc_after=HIVE_KEY), timedelta(hours=2), "firehose")
    assert cursor.prefix == "processed/year="
    assert cursor.start_after == "processed/year=2026/month=11/day=23/hour=05/"
    # across a month: folders are zero-padded and run from the year down, so keys sort by time
    december = "processed/year=2026/month=12/day=01/hour=00/webAnalytics-1-2026-12-01-00-10-00-0f0e3c9a"
    assert grace_start_after(december, HIVE, timedelta(minutes=30)) == "processed/year=2026/month=11/day=30/hour=23/"
    files, _ = accept(
        [
            {"Key": HIVE_KEY, "ETag": '"e"', "Size": 10},
            {"Key": december, "ETag": '"f"', "Size": 1},
            {"Key": "processed/year=2026/junk", "ETag": '"g"', "Size": 1},
        ],
        cursor,
        HIVE,
        "firehose",
    )
    assert [f.key for f in files] == [HIVE_KEY, december]


def test_day_folders_and_error_output_type():
    daily = "clicks/!{timestamp:yyyy-MM-dd}/"
    key = "clicks/2026-11-23/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a"
    assert is_delivered_object(key, daily)
    assert grace_start_after(key, daily, timedelta(hours=1)) == "clicks/2026-11-22/"
    errors = "errors/!{firehose:error-output-type}/!{timestamp:yyyy/MM/dd}/"
    assert delivery_layout(errors).listing_prefix == "errors/"
    assert is_delivered_object("errors/processing-failed/2026/11/23/webAnalytics-1-2026-11-23-07-50-52-0f0e", errors)
    assert grace_start_after(key, errors, timedelta(hours=1)) == key  # a folder only Firehose can name


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("p/!{partitionKeyFromQuery:customer}/", "dynamic partitioning"),
        ("p/!{timestamp:dd}/!{timestamp:MM}/!{timestamp:yyyy}/", "from the year down"),
        ("p/!{timestamp:HH}/!{timestamp:yyyy}/", "from the year down"),
        ("p/!{timestamp:yyyy/MMM}/", "only yyyy, MM, dd and HH"),
        ("p/!{unknown:x}/", "unknown expression"),
        ("p/!{timestamp:yyyy", "not closed"),
    ],
)
def test_prefixes_that_cannot_be_listed_in_time_order_are_refused(prefix, message):
    with pytest.raises(PrefixError, match=message):
        delivery_layout(prefix)


def test_a_backfill_window_lists_the_hour_folders_of_its_interval():
    from datetime import UTC, datetime

    from cdc_sync.sources.listing import firehose_window_cursor, in_firehose_window

    cursor = firehose_window_cursor(
        "web.clicks", "processed/", datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 20, 13, tzinfo=UTC)
    )
    assert (cursor.prefix, cursor.start_after, cursor.stop_at) == (
        "processed/",
        "processed/2026/11/20/10/",
        "processed/2026/11/20/13/",
    )
    assert cursor.stops_at("processed/2026/11/20/13/s-1-2026-11-20-13-00-00-abc")
    assert not cursor.stops_at("processed/2026/11/20/12/s-1-2026-11-20-12-59-59-abc")
    # an end inside a folder (day folders, hourly runs): list through that folder, keep what starts before the end
    day = firehose_window_cursor(
        "web.clicks",
        "p/!{timestamp:yyyy/MM/dd}/",
        datetime(2026, 11, 20, 10, tzinfo=UTC),
        datetime(2026, 11, 20, 11, tzinfo=UTC),
    )
    assert (day.start_after, day.stop_at) == ("p/2026/11/20/", None)
    assert in_firehose_window(
        "p/2026/11/20/s-1-2026-11-20-23-00-00-abc",
        "p/!{timestamp:yyyy/MM/dd}/",
        datetime(2026, 11, 20, 10, tzinfo=UTC),
        datetime(2026, 11, 20, 11, tzinfo=UTC),
    )
    assert not in_firehose_window(
        "p/2026/11/21/s-1-2026-11-21-00-00-00-abc",
        "p/!{timestamp:yyyy/MM/dd}/",
        datetime(2026, 11, 20, 10, tzinfo=UTC),
        datetime(2026, 11, 20, 11, tzinfo=UTC),
    )
