"""Listing cost: ListObjectsV2 calls per poke with 100,000 existing keys and 10 new ones.

Compares the sensor's watermark cursors (StartAfter) with a naive full listing of the
table folder, against the same moto server in one run. Prints the figures.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from cdc_sync.sources.dms.writer import cdc_file_name  # noqa: E402
from cdc_sync.sources.listing import ListingStats, Watermark, list_new_files, table_cursors  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

EXISTING, NEW = 100_000, 10
BUCKET, PREFIX = "bench-listing", "dms/shop/orders/"


def main() -> None:
    with LocalStack.start() as stack:
        s3 = stack.boto3_client("s3")
        s3.create_bucket(Bucket=BUCKET)
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        keys = [PREFIX + cdc_file_name(start + dt.timedelta(seconds=10 * i)) for i in range(EXISTING + NEW)]
        began = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=b""), keys))
        print(f"seeded {len(keys):,} keys in {time.perf_counter() - began:.0f}s")
        watermark = Watermark(cdc_after=keys[EXISTING - 1])

        stats, began = ListingStats(), time.perf_counter()
        found = [
            f
            for c in table_cursors("shop.orders", PREFIX, watermark)
            for f in list_new_files(s3, BUCKET, c, PREFIX, "parquet", stats=stats)
        ]
        cursor_seconds = time.perf_counter() - began
        assert len(found) == NEW

        naive, began = ListingStats(), time.perf_counter()
        everything = list(
            list_new_files(
                s3, BUCKET, table_cursors("shop.orders", PREFIX, Watermark())[1], PREFIX, "parquet", stats=naive
            )
        )
        naive_seconds = time.perf_counter() - began
        assert len(everything) == EXISTING + NEW

        print(f"existing keys: {EXISTING:,}; new keys: {NEW}")
        print(
            f"watermark cursors (StartAfter): {stats.calls} ListObjectsV2 calls per poke, {cursor_seconds * 1000:.0f} ms"
        )
        print(
            f"naive full listing:             {naive.calls} ListObjectsV2 calls per poke, {naive_seconds * 1000:.0f} ms"
        )
        print(f"ratio: {naive.calls / stats.calls:.0f}x fewer calls")


if __name__ == "__main__":
    main()
