"""Aurora load rates on a 1,000,000-row change file, one run, against the local MariaDB.

  floor        raw LOAD DATA LOCAL INFILE of the same rows (CSV) into a bare table
  merge        the pipeline's merge load of the DMS Parquet file (download from moto,
               CSV chunks of 500,000 rows on two connections while the file is converted,
               LOAD DATA, position-guarded upsert, ledger); the first load also from a DMS
               CSV file of the same rows
  append       the pipeline's append load of a Firehose object holding the same rows
               (ledger row + LOAD DATA into the table, one transaction)
  executemany  pymysql executemany INSERTs, 1,000 rows a batch (on 200,000 rows); and, for
               comparison with merge, executemany of the merge's position-guarded upsert

Prints rows/s and the ratios the issue sets as targets (append ≥ 0.8× floor, merge ≥ 0.5×
floor, both ≥ 3× executemany).
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

ROWS = 1_000_000
DB = "cdc_sync_bench"


def make_rows(n: int) -> pa.Table:
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pa.table({
        "id": ids,
        "qty": (ids % 1000).astype(np.int32),
        "amount": pa.array([Decimal(int(i) * 3 % 100000) / 100 for i in ids], pa.decimal128(18, 4)),
        "name": pa.array([f"customer-{i:x}" for i in ids]),
    })


def _land(s3, path: Path, key: str, table: str) -> dict:
    """Upload a file and return the one-file batch the loaders take."""
    s3.upload_file(str(path), "bench-aurora", key)
    head = s3.head_object(Bucket="bench-aurora", Key=key)
    return {"table": table, "files": [
        {"key": key, "etag": head["ETag"].strip('"'), "size": head["ContentLength"], "phase": 1}]}


def main() -> None:
    from cdc_sync import to_aurora
    from cdc_sync.config import load_pipelines
    from tools.local_stack import LocalStack

    data = make_rows(ROWS)
    with LocalStack.start() as stack, tempfile.TemporaryDirectory(prefix="cdc-bench-aurora-") as tmp:
        tmpdir = Path(tmp)
        admin = stack.mariadb.connect()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{DB}`")
            cur.execute(f"CREATE DATABASE `{DB}` CHARACTER SET utf8mb4")
            cur.execute(f"CREATE TABLE `{DB}`.bare (id BIGINT PRIMARY KEY, qty INT, amount DECIMAL(18,4), "
                        "name VARCHAR(100)) CHARSET utf8mb4")
            cur.execute(f"CREATE TABLE `{DB}`.bare_many LIKE `{DB}`.bare")

        # floor: raw LOAD DATA LOCAL INFILE
        csv_path = tmpdir / "raw.csv"
        pacsv.write_csv(data, csv_path, write_options=pacsv.WriteOptions(include_header=False))
        conn = stack.mariadb.connect(local_infile=True, autocommit=False)
        began = time.perf_counter()
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{csv_path}' INTO TABLE `{DB}`.bare CHARACTER SET utf8mb4 "
                        "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'")
        conn.commit()
        floor = ROWS / (time.perf_counter() - began)

        # executemany on a subset
        subset = data.slice(0, 200_000).to_pylist()
        began = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(subset), 1000):
                cur.executemany(f"INSERT INTO `{DB}`.bare_many (id, qty, amount, name) VALUES (%s, %s, %s, %s)",
                                [tuple(r.values()) for r in subset[start:start + 1000]])
        conn.commit()
        many = len(subset) / (time.perf_counter() - began)
        conn.close()

        # the pipeline's merge load of a DMS CDC file holding the same rows as inserts
        s3 = stack.boto3_client("s3")
        s3.create_bucket(Bucket="bench-aurora")
        when = "2026-11-23 07:00:00.000000"
        change_file = pa.table({"Op": pa.array(["I"] * ROWS), "cdc_commit_ts": pa.array([when] * ROWS),
                                **{n: data.column(n) for n in data.column_names}})
        parquet_path = tmpdir / "changes.parquet"
        pq.write_table(change_file, parquet_path)
        key = "dms/shop/customers/20261123-070000000.parquet"
        config = tmpdir / "p.yaml"
        config.write_text(yaml.safe_dump({"pipelines": [{
            "name": "bench", "source": {"kind": "dms", "bucket": "bench-aurora", "prefix": "dms"},
            "tables": [{"schema": "shop", "name": "customers", "primary_key": ["id"],
                        "commit_timestamp_column": "cdc_commit_ts"}],
            "targets": {"aurora": {"database": DB, "method": "local_infile"}},
        }]}))
        pipeline = load_pipelines(config)[0]
        batch = _land(s3, parquet_path, key, "shop.customers")
        began = time.perf_counter()
        report = to_aurora.load_batch(
            pipeline, batch, s3, lambda: stack.mariadb.connect(local_infile=True, autocommit=False), workdir=tmpdir)
        merge = ROWS / (time.perf_counter() - began)
        merge_db = ROWS / report.database_seconds
        assert report.loaded == {key: ROWS}, report

        # steady state: a second file updating every one of those keys (staged upsert)
        later = "2026-11-23 08:00:00.000000"
        updates = change_file.set_column(0, "Op", pa.array(["U"] * ROWS)).set_column(
            1, "cdc_commit_ts", pa.array([later] * ROWS))
        pq.write_table(updates, parquet_path)
        key2 = "dms/shop/customers/20261123-080000000.parquet"
        batch2 = _land(s3, parquet_path, key2, "shop.customers")
        began = time.perf_counter()
        report2 = to_aurora.load_batch(
            pipeline, batch2, s3, lambda: stack.mariadb.connect(local_infile=True, autocommit=False), workdir=tmpdir)
        upsert = ROWS / (time.perf_counter() - began)
        upsert_db = ROWS / report2.database_seconds
        assert report2.loaded == {key2: ROWS}, report2
        with admin.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{DB}`.shop_customers")
            assert cur.fetchone()[0] == ROWS
            cur.execute(f"CREATE TABLE `{DB}`.appended LIKE `{DB}`.bare")
        upsert_many, update_many = _executemany_upserts(stack, data)

        # the same first load from a DMS CSV file (DataFormat csv): the worker parses and types the text
        csv_key = "dms/shop/customers_csv/20261123-070000000.csv"
        dms_csv = tmpdir / "changes.csv"
        pacsv.write_csv(change_file, dms_csv, write_options=pacsv.WriteOptions(include_header=False,
                                                                                quoting_style="needed"))
        config.write_text(yaml.safe_dump({"pipelines": [{
            "name": "bench_csv", "source": {"kind": "dms", "bucket": "bench-aurora", "prefix": "dms",
                                            "file_format": "csv"},
            "tables": [{"schema": "shop", "name": "customers_csv", "primary_key": ["id"],
                        "commit_timestamp_column": "cdc_commit_ts",
                        "columns": ["id bigint", "qty int", "amount decimal(18,4)", "name varchar(100)"]}],
            "targets": {"aurora": {"database": DB, "method": "local_infile"}},
        }]}))
        csv_batch = _land(s3, dms_csv, csv_key, "shop.customers_csv")
        began = time.perf_counter()
        report = to_aurora.load_batch(
            load_pipelines(config)[0], csv_batch, s3,
            lambda: stack.mariadb.connect(local_infile=True, autocommit=False), workdir=tmpdir)
        merge_csv = ROWS / (time.perf_counter() - began)
        assert report.loaded == {csv_key: ROWS}, report

        # the pipeline's append load of a Firehose object with the same rows (CSV lines)
        fh_key = "processed/2026/11/23/07/web-1-2026-11-23-07-00-00-0f0e3c9a"
        config.write_text(yaml.safe_dump({"pipelines": [{
            "name": "bench_fh", "source": {"kind": "firehose", "bucket": "bench-aurora"},
            "tables": [{"schema": "web", "name": "clicks", "columns": ["id", "qty", "amount", "name"]}],
            "targets": {"aurora": {"database": DB, "mode": "append", "table": "appended", "method": "local_infile"}},
        }]}))
        fh_pipeline = load_pipelines(config)[0]
        fh_batch = _land(s3, csv_path, fh_key, "web.clicks")
        began = time.perf_counter()
        report = to_aurora.load_batch(
            fh_pipeline, fh_batch, s3, lambda: stack.mariadb.connect(local_infile=True, autocommit=False),
            workdir=tmpdir)
        append = ROWS / (time.perf_counter() - began)
        assert report.loaded == {fh_key: ROWS}, report
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE `{DB}`")
        admin.close()

    print(f"rows: {ROWS:,} ({dt.date.today()})")
    print(f"floor  raw LOAD DATA LOCAL INFILE : {floor:10,.0f} rows/s")
    print(f"append pipeline (end to end)      : {append:10,.0f} rows/s  = {append / floor:.2f}x floor, "
          f"{append / many:.1f}x executemany")
    print(f"merge  first load, empty table    : {merge:10,.0f} rows/s  = {merge / floor:.2f}x floor, "
          f"{merge / many:.1f}x executemany (end to end)")
    print(f"         in the database          : {merge_db:10,.0f} rows/s  = {merge_db / floor:.2f}x floor "
          "(time a connection was busy: LOAD DATA + ledger)")
    print(f"merge  first load from DMS CSV    : {merge_csv:10,.0f} rows/s  = {merge_csv / floor:.2f}x floor "
          "(end to end; the same rows as DMS CSV text)")
    print(f"merge  updates of existing keys   : {upsert:10,.0f} rows/s  = {upsert / floor:.2f}x floor, "
          f"{upsert / many:.1f}x executemany (end to end)")
    print(f"         in the database          : {upsert_db:10,.0f} rows/s  = {upsert_db / floor:.2f}x floor "
          "(time a connection was busy: staging + upsert + ledger)")
    print(f"executemany (1,000 per batch)     : {many:10,.0f} rows/s")
    print(f"executemany of the merge's own upsert (same state table, position guard, 1,000 per batch):\n"
          f"  into an empty state table       : {upsert_many:10,.0f} rows/s → merge first load "
          f"{merge / upsert_many:.1f}x it")
    print(f"  updates of existing keys        : {update_many:10,.0f} rows/s → merge updates "
          f"{upsert / update_many:.1f}x it")


def _executemany_upserts(stack, data) -> tuple[float, float]:
    """What a hand-written loader of the same merge would do: executemany of the position-
    guarded INSERT … ON DUPLICATE KEY UPDATE into a table shaped like the state table (200,000
    rows: first into an empty table, then the same keys again with a later position)."""
    conn = stack.mariadb.connect(autocommit=False)
    rows = data.slice(0, 200_000).to_pylist()
    columns = "id, qty, amount, name, _cdc_position, _cdc_deleted, _cdc_commit_ts, _cdc_loaded_at"
    guarded = ", ".join(f"{c} = IF(VALUES(_cdc_position) > _cdc_position, VALUES({c}), {c})"
                        for c in ("qty", "amount", "name", "_cdc_deleted", "_cdc_commit_ts", "_cdc_loaded_at"))
    sql = (f"INSERT INTO `{DB}`.state_many ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
           f"ON DUPLICATE KEY UPDATE {guarded}, _cdc_position = GREATEST(_cdc_position, VALUES(_cdc_position))")
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{DB}`.state_many (id BIGINT NOT NULL PRIMARY KEY, qty BIGINT, "
                    "amount DECIMAL(18,4), name LONGTEXT, _cdc_position VARCHAR(1024) COLLATE utf8mb4_bin NOT NULL, "
                    "_cdc_deleted TINYINT(1) NOT NULL, _cdc_commit_ts DATETIME(6), _cdc_loaded_at DATETIME(6) NOT NULL) "
                    "CHARSET utf8mb4")
    rates = []
    loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # a parameter: pymysql batches only %s VALUES
    for hour in ("07", "08"):
        when = f"2026-11-23 {hour}:00:00"
        head = f"1|{hour}|20261123-{hour}0000000.parquet|"
        began = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(rows), 1000):
                cur.executemany(sql, [(r["id"], r["qty"], r["amount"], r["name"], f"{head}{i:012d}", 0, when, loaded_at)
                                      for i, r in enumerate(rows[start:start + 1000], start)])
        conn.commit()
        rates.append(len(rows) / (time.perf_counter() - began))
    conn.close()
    return rates[0], rates[1]


if __name__ == "__main__":
    main()
