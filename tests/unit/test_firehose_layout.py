"""Firehose object names and the listing cursor over them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdc_sync.firehose.layout import grace_start_after, is_delivered_object
from cdc_sync.listing import Watermark, accept, table_cursors

KEY = "processed/2026/11/23/07/webAnalytics-1-2026-11-23-07-50-52-0f0e3c9a-6a43-4c5e-a7b6-1d2e3f4a5b6c"


@pytest.mark.parametrize(("key", "stream", "expected"), [
    (KEY, None, True),
    (KEY, "webAnalytics", True),
    (KEY, "otherStream", False),
    (KEY + ".gz", None, True),
    ("processed/2026/11/23/07/", None, False),
    ("processing-failed/2026/11/23/07/webAnalytics-1-2026-11-23-07-50-52-0f0e", None, False),
    ("processed/notes.txt", None, False),
])
def test_delivered_objects(key, stream, expected):
    assert is_delivered_object(key, "processed/", stream) is expected


def test_grace_goes_back_whole_hour_folders():
    assert grace_start_after(KEY, "processed/", timedelta(minutes=15)) == "processed/2026/11/23/06"
    assert grace_start_after(KEY, "processed/", timedelta(0)) == KEY
    assert "processed/2026/11/23/06" < "processed/2026/11/23/06/a" < KEY


def test_one_cursor_for_a_firehose_prefix():
    (cursor,) = table_cursors("web.clicks", "processed/", Watermark(cdc_after=KEY), timedelta(minutes=5), "firehose")
    assert cursor.prefix == "processed/" and cursor.start_after == "processed/2026/11/23/06"
    files, stopped = accept([{"Key": KEY, "ETag": '"e"', "Size": 10}, {"Key": "processed/junk", "ETag": '"f"', "Size": 1}],
                            cursor, "processed/", "firehose")
    assert [f.key for f in files] == [KEY] and not stopped
