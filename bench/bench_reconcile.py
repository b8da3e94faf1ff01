"""Reconciliation on 1,000,000-row tables, one run, side by side with reladiff.

  MariaDB ↔ MariaDB: two tables that differ in 10 rows (4 updates, 3 deletes, 3 inserts)
    cdc-sync   bucket checksums in each database, bisection, rows of small segments
    reladiff   the maintained fork of data-diff, hashdiff (the method for two databases),
               bisection factor 32, threshold 16384, 2 threads per side
  both must name the same 10 keys; target: cdc-sync in at most half of reladiff's time.
  In sync (the 10 rows put back): cdc-sync vs COUNT(*) over both tables; target ≤ 3×.
    Both 1M-row tables (~240 MB) do not fit the default 128 MB buffer pool, so both read
    pages; the same comparison on 250,000-row copies that stay in memory is printed too.
  MariaDB ↔ BigQuery emulator: the same source against the table loaded into the emulator,
    in sync and with the 10 differences (reladiff cannot reach the emulator: see README).
  Each in-sync and BigQuery figure is printed for the strong checksums too (SHA-256 rows,
  a digest of the sorted row hashes per bucket: reconcile.checksum: strong).

Usage: python bench/bench_reconcile.py [rows]   (needs MariaDB; starts the local stack for the emulator)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from cdc_sync.reconcile.diff import Settings, compare  # noqa: E402
from cdc_sync.reconcile.sides import BigQuerySide, MySqlSide  # noqa: E402
from tools.local_stack import LocalStack, MariaDB  # noqa: E402

DB = "cdc_sync_bench_reconcile"
DDL = """CREATE TABLE `{db}`.`{name}` (
  id BIGINT NOT NULL PRIMARY KEY, qty INT, amount DECIMAL(18,4), name VARCHAR(100), notes TEXT,
  updated_at DATETIME(6), birthday DATE, active TINYINT(1), score DOUBLE
) DEFAULT CHARSET utf8mb4"""
FILL = """INSERT INTO `{db}`.`{name}`
WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 999),
     s AS (SELECT a.n * 1000 + b.n + 1 AS id FROM d a CROSS JOIN d b)
SELECT id, id % 1000, id * 1.2345, CONCAT('name-', id), REPEAT('x', id % 50),
       TIMESTAMP('2026-01-01') + INTERVAL id SECOND, DATE('2000-01-01') + INTERVAL (id % 9000) DAY, id % 2,
       id / 7
FROM s WHERE id <= {rows}"""
UPDATED, DELETED, INSERTED = (17, 250_000, 500_001, 999_983), (3, 400_000, 777_777), (2_000_001, 2_000_002, 3_000_000)


def _drift(cur, table: str) -> None:
    cur.execute(f"UPDATE {table} SET name = 'changed' WHERE id IN {UPDATED[:2]}")
    cur.execute(f"UPDATE {table} SET updated_at = updated_at + INTERVAL 1 MICROSECOND WHERE id = {UPDATED[2]}")
    cur.execute(f"UPDATE {table} SET notes = NULL WHERE id = {UPDATED[3]}")
    cur.execute(f"DELETE FROM {table} WHERE id IN {DELETED}")
    for i in INSERTED:
        cur.execute(f"INSERT INTO {table} (id, name) VALUES ({i}, 'extra')")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


NO_RECHECK = Settings(recheck_seconds=0)  # nothing changes during the benchmark


def _ours(source: MySqlSide, target):
    result, seconds = _timed(lambda: compare("bench", source, target, ["id"], settings=NO_RECHECK))
    return {d.key["id"] for d in result.differences}, seconds, result


def _reladiff(mariadb: MariaDB):
    import reladiff

    uri = (
        f"mysql://root@{mariadb.host}:{mariadb.port}/{DB}"
        if not mariadb.password
        else f"mysql://{mariadb.user}:{mariadb.password}@{mariadb.host}:{mariadb.port}/{DB}"
    )
    columns = ("qty", "amount", "name", "notes", "updated_at", "birthday", "active", "score")
    a = reladiff.connect_to_table(uri, "source", "id", thread_count=2)
    b = reladiff.connect_to_table(uri, "target", "id", thread_count=2)
    start = time.perf_counter()
    diff = list(
        reladiff.diff_tables(
            a,
            b,
            extra_columns=columns,
            algorithm=reladiff.Algorithm.HASHDIFF,
            threaded=True,
            max_threadpool_size=4,
            skip_sort_results=True,
        )
    )  # its sort trips over NULLs (str < None)
    seconds = time.perf_counter() - start
    for table in (a, b):
        table.database.close()  # its connections keep a transaction (and metadata locks) open
    return {int(row[0]) for _, row in diff}, seconds


def main(rows: int) -> int:
    mariadb = MariaDB.from_env()
    mariadb.ensure_running()
    conn = mariadb.connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
        cur.execute(f"CREATE DATABASE `{DB}`")
        for name in ("source", "target"):
            cur.execute(DDL.format(db=DB, name=name))
        print(f"filling two {rows:,}-row tables ...", flush=True)
        cur.execute(FILL.format(db=DB, name="source", rows=rows))
        cur.execute(f"INSERT INTO `{DB}`.target SELECT * FROM `{DB}`.source")
        _drift(cur, f"`{DB}`.target")
    expected = set(UPDATED) | set(DELETED) | set(INSERTED)

    def side(name: str, hash_function: str = "crc32") -> MySqlSide:
        return MySqlSide(name, lambda: mariadb.connect(autocommit=False), DB, name, hash_function=hash_function)

    ours_keys, ours_s, result = _ours(side("source"), side("target"))
    rel_keys, rel_s = _reladiff(mariadb)
    print(f"\nMariaDB ↔ MariaDB, {rows:,} rows, 10 differences")
    print(
        f"  cdc-sync   {ours_s:7.2f} s  keys found {len(ours_keys):3d}  same as injected: {ours_keys == expected}"
        f"  ({result.levels} level(s), {result.buckets} buckets, {result.rows_fetched} rows fetched)"
    )
    print(f"  reladiff   {rel_s:7.2f} s  keys found {len(rel_keys):3d}  same as injected: {rel_keys == expected}")
    print(f"  ratio      {ours_s / rel_s:.2f}× reladiff's time (target ≤ 0.5×)")
    strong_keys, strong_s, strong_result = _ours(side("source", "sha256"), side("target", "sha256"))
    print(
        f"  cdc-sync, strong checksums {strong_s:5.2f} s  keys found {len(strong_keys):3d}  same as injected: "
        f"{strong_keys == expected}  ({strong_result.levels} level(s), {strong_result.rows_fetched} rows fetched)"
    )

    with conn.cursor() as cur:  # put the 10 rows back: in sync
        cur.execute(f"DELETE FROM `{DB}`.target WHERE id IN {UPDATED + INSERTED}")
        cur.execute(f"INSERT INTO `{DB}`.target SELECT * FROM `{DB}`.source WHERE id IN {UPDATED + DELETED}")
    counts = []
    for _ in range(3):

        def count_both():
            with conn.cursor() as cur:
                for name in ("source", "target"):
                    cur.execute(f"SELECT COUNT(*) FROM `{DB}`.`{name}`")
                    cur.fetchall()

        counts.append(_timed(count_both)[1])
    insync = [_ours(side("source"), side("target")) for _ in range(3)]
    count_s = min(counts)
    in_s = min(s for _, s, _ in insync)
    print(f"\nMariaDB ↔ MariaDB in sync, {rows:,} rows (best of 3)")
    print(f"  COUNT(*) over both tables {count_s:6.2f} s")
    print(
        f"  cdc-sync                  {in_s:6.2f} s  differences {len(insync[0][0])}  "
        f"→ {in_s / count_s:.1f}× COUNT(*) (target ≤ 3×)"
    )
    strong = [_ours(side("source", "sha256"), side("target", "sha256")) for _ in range(3)]
    strong_s = min(s for _, s, _ in strong)
    print(
        f"  cdc-sync, strong checksums {strong_s:5.2f} s  differences {len(strong[0][0])}  "
        f"→ {strong_s / count_s:.1f}× COUNT(*), {strong_s / in_s:.1f}× the fast mode"
    )
    _in_memory(conn, side)
    _bigquery(conn, rows, side)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{DB}`")
    return 0


def _in_memory(conn, side, rows: int = 250_000) -> None:
    """The same in-sync comparison on copies small enough that both stay in InnoDB's buffer
    pool (128 MB by default): COUNT(*) then reads no page from disk, the row hashes still
    evaluate every value."""
    with conn.cursor() as cur:
        for name in ("source", "target"):
            cur.execute(f"CREATE TABLE `{DB}`.`{name}_small` LIKE `{DB}`.`{name}`")
            cur.execute(f"INSERT INTO `{DB}`.`{name}_small` SELECT * FROM `{DB}`.`{name}` WHERE id <= {rows}")
    conn.commit()

    def count_both():
        with conn.cursor() as cur:
            for name in ("source_small", "target_small"):
                cur.execute(f"SELECT COUNT(*) FROM `{DB}`.`{name}`")
                cur.fetchall()

    count_s = min(_timed(count_both)[1] for _ in range(3))
    insync = [_ours(side("source_small"), side("target_small")) for _ in range(3)]
    in_s = min(s for _, s, _ in insync)
    strong = [_ours(side("source_small", "sha256"), side("target_small", "sha256")) for _ in range(3)]
    strong_s = min(s for _, s, _ in strong)
    print(f"\nMariaDB ↔ MariaDB in sync, {rows:,} rows in the buffer pool (best of 3)")
    print(f"  COUNT(*) over both tables {count_s:6.3f} s")
    print(
        f"  cdc-sync                  {in_s:6.3f} s  differences {len(insync[0][0])}  → {in_s / count_s:.1f}× COUNT(*)"
    )
    print(
        f"  cdc-sync, strong          {strong_s:6.3f} s  differences {len(strong[0][0])}  "
        f"→ {strong_s / count_s:.1f}× COUNT(*)"
    )
    # what single pieces cost on one table, against COUNT(*) on it
    from cdc_sync.reconcile.dialects import HashColumn, MySqlDialect

    score = HashColumn("score", "float", native=True)
    row_text = "CONCAT_WS(',', id, qty, amount, name, notes, updated_at, birthday, active, score)"
    pieces = {
        "COUNT(*)": "COUNT(*)",
        "SUM(LENGTH(notes)), one text column": "SUM(LENGTH(notes))",
        "a double as printed, CRC32": "SUM(CRC32(score))",
        "a double as exponent:mantissa, CRC32": f"SUM(CRC32({MySqlDialect('crc32').native(score)}))",
        "the row's text, CRC32": f"SUM(CRC32({row_text}))",
        "the row's text, MD5 (60 bits)": f"SUM(CAST(CONV(SUBSTRING(MD5({row_text}), 1, 15), 16, 10) AS UNSIGNED))",
    }
    base = None
    for label, expression in pieces.items():

        def piece(expression=expression):
            with conn.cursor() as cur:
                cur.execute(f"SELECT {expression} FROM `{DB}`.`source_small`")
                cur.fetchall()

        seconds = min(_timed(piece)[1] for _ in range(3))
        base = base or seconds
        print(f"  {label:38s} {seconds:6.3f} s  {seconds / base:4.1f}× COUNT(*)")


def _bigquery(conn, rows: int, side) -> None:
    """The source against a BigQuery table in the emulator holding the same rows."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from google.cloud import bigquery

    with LocalStack.start() as stack:
        client = stack.bigquery_client()
        client.create_dataset("local.bench_reconcile", exists_ok=True)
        print(f"\nloading {rows:,} rows into the BigQuery emulator ...", flush=True)
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(f"SELECT * FROM `{DB}`.source ORDER BY id")
            names = [d[0] for d in cur.description]
            data = list(zip(*cur.fetchall(), strict=True))
        table = pa.table({n: list(col) for n, col in zip(names, data, strict=True)})
        table = table.set_column(
            names.index("updated_at"), "updated_at", table["updated_at"].cast(pa.timestamp("us", tz="UTC"))
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET, write_disposition="WRITE_TRUNCATE")
        client.load_table_from_file(buffer, "local.bench_reconcile.target", job_config=config).result()
        bq = BigQuerySide("bigquery", client, "local", "bench_reconcile", "target")
        _, in_s, result = _ours(side("source", "md5"), bq)
        print(
            f"MariaDB ↔ BigQuery emulator in sync: cdc-sync {in_s:.2f} s, status {result.status}, "
            f"{result.rows_fetched} rows fetched" + (f" — {result.summary()}" if result.status != "in_sync" else "")
        )
        bq_strong = BigQuerySide("bigquery", client, "local", "bench_reconcile", "target", hash_function="sha256")
        _, strong_s, result = _ours(side("source", "sha256"), bq_strong)
        print(
            f"MariaDB ↔ BigQuery emulator in sync, strong checksums: cdc-sync {strong_s:.2f} s, status {result.status}"
        )
        client.query("UPDATE `local.bench_reconcile.target` SET name = 'changed' WHERE id IN (17, 250000)").result()
        client.query("DELETE FROM `local.bench_reconcile.target` WHERE id IN (3, 400000, 777777)").result()
        keys, drift_s, result = _ours(side("source", "md5"), bq)
        print(
            f"MariaDB ↔ BigQuery emulator, 5 differences: cdc-sync {drift_s:.2f} s, keys "
            f"{sorted(keys)} ({result.levels} level(s), {result.rows_fetched} rows fetched)"
        )
        keys, drift_s, result = _ours(side("source", "sha256"), bq_strong)
        print(
            f"MariaDB ↔ BigQuery emulator, 5 differences, strong checksums: cdc-sync {drift_s:.2f} s, keys "
            f"{sorted(keys)} ({result.levels} level(s), {result.rows_fetched} rows fetched)"
        )


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000))
