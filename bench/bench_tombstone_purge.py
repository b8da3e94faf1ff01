"""Aurora state table after a million deletes, before and after the tombstone purge.

A state table of LIVE live keys and DELETES tombstones (the shape the merge loader leaves:
`_cdc_deleted = 1` rows with their position), built in MariaDB with one INSERT … SELECT.
Prints its rows and InnoDB size (data + indexes) before and after `purge_table`, the purge's
time, its rate, and the longest single batch (one transaction: the longest any row lock is
held), and checks that the live rows are exactly the same afterwards.

Usage: python bench/bench_tombstone_purge.py [deletes] [live] [batch]   (default 1000000 200000 1000;
needs MariaDB on 127.0.0.1:3306)
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from cdc_sync.config import parse_pipelines  # noqa: E402
from cdc_sync.targets.aurora import purge as purge_module  # noqa: E402
from tools.local_stack import MariaDB  # noqa: E402

DB = "cdc_sync_bench_purge"
STATE = "shop_items_state"
DDL = f"""CREATE TABLE `{DB}`.`{STATE}` (
  id BIGINT NOT NULL, qty INT NULL, name VARCHAR(100) NULL,
  _cdc_position VARCHAR(1024) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  _cdc_deleted TINYINT(1) NOT NULL, _cdc_loaded_at DATETIME(6) NOT NULL, PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"""
# keys 1..total; every key above `live` is a tombstone; commit times in 2026-01 (old enough)
FILL = f"""INSERT INTO `{DB}`.`{STATE}`
WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 999),
     s AS (SELECT a.n * 1000 + b.n + 1 AS id FROM d a CROSS JOIN d b)
SELECT k.id, IF(k.id <= %s, MOD(k.id, 1000), NULL), IF(k.id <= %s, CONCAT('item ', k.id), NULL),
       CONCAT('1|', LPAD(1767225600000000 + k.id, 20, '0'), '|20260101-000000000.parquet|', LPAD(k.id, 12, '0')),
       k.id > %s, TIMESTAMP '2026-01-01 00:00:00'
FROM (SELECT s1.id + m.n * 1000000 AS id FROM s s1 CROSS JOIN (SELECT n FROM d WHERE n < %s) m) k
WHERE k.id <= %s"""


def _size(cur) -> tuple[int, int]:
    cur.execute(f"ANALYZE TABLE `{DB}`.`{STATE}`")
    cur.fetchall()
    cur.execute(
        "SELECT DATA_LENGTH + INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (DB, STATE),
    )
    size = int(cur.fetchone()[0])
    cur.execute(f"SELECT COUNT(*) FROM `{DB}`.`{STATE}`")
    return int(cur.fetchone()[0]), size


def _live_digest(cur) -> tuple:
    cur.execute(
        f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, qty, name))) FROM `{DB}`.`{STATE}` WHERE _cdc_deleted = 0"
    )
    return tuple(cur.fetchone())


def main() -> None:
    deletes, live, batch = (int(a) for a in (sys.argv[1:] + ["1000000", "200000", "1000"][len(sys.argv[1:]) :]))
    total = live + deletes
    mariadb = MariaDB.from_env()
    pipeline = parse_pipelines(
        {
            "pipelines": [
                {
                    "name": "bench",
                    "source": {"kind": "dms", "bucket": "bench-bucket", "prefix": "dms"},
                    "tables": [{"schema": "shop", "name": "items", "primary_key": ["id"]}],
                    "targets": {
                        "aurora": {"database": DB, "purge_tombstones_after_hours": 24, "purge_batch_rows": batch}
                    },
                }
            ]
        }
    )[0]
    conn = mariadb.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
            cur.execute(f"CREATE DATABASE `{DB}`")
            cur.execute(DDL)
            began = time.perf_counter()
            cur.execute(FILL, (live, live, live, total // 1_000_000 + 1, total))
            print(f"state table: {live:,} live keys + {deletes:,} tombstones in {time.perf_counter() - began:.0f}s")
            rows_before, size_before = _size(cur)
            live_before = _live_digest(cur)

        longest = 0.0

        def connect():
            return mariadb.connect(autocommit=False)

        # time every DELETE (one transaction each) through a thin connection wrapper
        class Timed:
            def __init__(self):
                self.conn = connect()

            def cursor(self):
                return _TimedCursor(self.conn.cursor())

            def commit(self):
                self.conn.commit()

            def close(self):
                self.conn.close()

        class _TimedCursor:
            def __init__(self, cur):
                self.cur = cur

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.cur.close()

            def execute(self, query, args=None):
                nonlocal longest
                start = time.perf_counter()
                result = self.cur.execute(query, args)
                if query.startswith("DELETE"):
                    longest = max(longest, time.perf_counter() - start)
                return result

            def fetchone(self):
                return self.cur.fetchone()

            def fetchall(self):
                return self.cur.fetchall()

        began = time.perf_counter()
        report = purge_module.purge_table(pipeline, pipeline.tables[0], Timed, now=datetime.now(UTC))
        seconds = time.perf_counter() - began
        with conn.cursor() as cur:
            rows_after, size_after = _size(cur)
            assert _live_digest(cur) == live_before, "the purge changed live rows"
        assert report.purged == deletes, report
        print(f"before: {rows_before:,} rows, {size_before / 2**20:,.0f} MiB (data + indexes)")
        print(
            f"after:  {rows_after:,} rows, {size_after / 2**20:,.0f} MiB — InnoDB keeps the freed pages for "
            "new rows (OPTIMIZE TABLE returns them to the file system)"
        )
        print(
            f"purge: {report.purged:,} tombstones in {report.batches:,} batches of {batch:,}, {seconds:.1f}s "
            f"({report.purged / seconds:,.0f} rows/s); longest batch (one transaction) {longest * 1000:.0f} ms; "
            "live rows unchanged"
        )
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
