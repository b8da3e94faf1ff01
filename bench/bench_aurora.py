"""Aurora load rates on a 1,000,000-row change file against the local MariaDB: one run of
three rounds, each measuring every rate in a database of its own (dropped at its end); it
prints the medians.

  floor        raw LOAD DATA LOCAL INFILE of the same rows (CSV) into a bare table
  merge        the pipeline's merge load of the DMS Parquet file (download from moto,
               CSV chunks of 500,000 rows on two connections while the file is converted,
               LOAD DATA, position-guarded upsert, ledger): into the empty table, then a
               CDC file of 1,000,000 new keys (inserts only: loaded directly), then one
               updating every key of the first; the first load also from a DMS CSV file
  append       the pipeline's append load of a Firehose object holding the same rows
               (ledger row + LOAD DATA into the table, one transaction)
  executemany  pymysql executemany INSERTs, 1,000 rows a batch (on 200,000 rows); and, for
               comparison with merge, executemany of the merge's position-guarded upsert

Prints rows/s and the ratios the issue sets as targets (append ≥ 0.8× floor, merge ≥ 0.5×
floor, both ≥ 3× executemany).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import yaml  # noqa: E402

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))  # smaller for a quick check of the bench itself
DB = "cdc_sync_bench"


def make_rows(n: int) -> pa.Table:
    ids = np.arange(1, n + 1, dtype=np.int64)
    return pa.table(
        {
            "id": ids,
            "qty": (ids % 1000).astype(np.int32),
            "amount": pa.array([Decimal(int(i) * 3 % 100000) / 100 for i in ids], pa.decimal128(18, 4)),
            "name": pa.array([f"customer-{i:x}" for i in ids]),
        }
    )


ROUNDS = int(
    os.environ.get("BENCH_ROUNDS", "3")
)  # every rate is the median of this many rounds: the floor alone moves ±15% run to run


def main() -> None:
    from tools.local_stack import LocalStack

    data = make_rows(ROWS)
    with LocalStack.start() as stack, tempfile.TemporaryDirectory(prefix="cdc-bench-aurora-") as tmp:
        tmpdir = Path(tmp)
        admin = stack.mariadb.connect()
        with admin.cursor() as cur:
            for db in (DB, *(f"{DB}_r{n}" for n in range(1, ROUNDS + 1))):
                cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{DB}` CHARACTER SET utf8mb4")
            cur.execute("SELECT @@version, @@innodb_buffer_pool_size, @@innodb_log_file_size")
            server = cur.fetchone()
        files = _write_files(stack, data, tmpdir)
        # rounds interleave the measurements, so a machine that speeds up or slows down
        # during the run moves the floor and the pipeline's rates alike
        rounds = [_round(stack, admin, data, files, tmpdir, n) for n in range(1, ROUNDS + 1)]
        upsert_many, update_many = _executemany_upserts(stack, data)
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE `{DB}`")
        admin.close()
    _print(rounds, upsert_many, update_many, server)


def _write_files(stack, data: pa.Table, tmpdir: Path) -> dict[str, dict]:
    """The same rows as a raw CSV (the floor, and the Firehose object), a DMS Parquet
    file of inserts, one of updates of every key an hour later, and a DMS CSV file of the
    inserts; {table} in a key is filled in per round, so each round's tables start empty."""
    stack.boto3_client("s3").create_bucket(Bucket="bench-aurora")
    csv_path = tmpdir / "raw.csv"
    pacsv.write_csv(data, csv_path, write_options=pacsv.WriteOptions(include_header=False))
    when = "2026-11-23 07:00:00.000000"
    change_file = pa.table(
        {
            "Op": pa.array(["I"] * ROWS),
            "cdc_commit_ts": pa.array([when] * ROWS),
            **{n: data.column(n) for n in data.column_names},
        }
    )
    updates = change_file.set_column(0, "Op", pa.array(["U"] * ROWS)).set_column(
        1, "cdc_commit_ts", pa.array(["2026-11-23 08:00:00.000000"] * ROWS)
    )
    new_keys = change_file.set_column(1, "cdc_commit_ts", pa.array(["2026-11-23 07:30:00.000000"] * ROWS)).set_column(
        2, "id", pc.add(data.column("id"), ROWS)
    )
    pq.write_table(change_file, tmpdir / "inserts.parquet")
    pq.write_table(new_keys, tmpdir / "new_keys.parquet")
    pq.write_table(updates, tmpdir / "updates.parquet")
    pacsv.write_csv(
        change_file,
        tmpdir / "inserts.csv",
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"),
    )
    return {
        "raw": {"path": csv_path},
        "firehose": {"path": csv_path, "key": "processed/2026/11/23/07/web-1-2026-11-23-07-00-00-0f0e3c9a-{table}"},
        "inserts": {"path": tmpdir / "inserts.parquet", "key": "dms/shop/{table}/20261123-070000000.parquet"},
        "new_keys": {"path": tmpdir / "new_keys.parquet", "key": "dms/shop/{table}/20261123-073000000.parquet"},
        "updates": {"path": tmpdir / "updates.parquet", "key": "dms/shop/{table}/20261123-080000000.parquet"},
        "dms_csv": {"path": tmpdir / "inserts.csv", "key": "dms/shop/{table}/20261123-070000000.csv"},
    }


def _batch(stack, landed: dict, table: str) -> dict:
    """Land this round's copy of a file in moto and return the one-file batch the loaders
    take. (Uploaded each time: moto's copy_object of a multipart object breaks its checksum.)"""
    s3 = stack.boto3_client("s3")
    key = landed["key"].replace("{table}", table)
    s3.upload_file(str(landed["path"]), "bench-aurora", key)
    head = s3.head_object(Bucket="bench-aurora", Key=key)
    return {
        "table": f"shop.{table}",
        "files": [{"key": key, "etag": head["ETag"].strip('"'), "size": head["ContentLength"], "phase": 1}],
    }


def _round(stack, admin, data: pa.Table, files: dict, tmpdir: Path, n: int) -> dict[str, float]:
    """One measurement of every rate (rows/s), into a database of its own that is dropped
    at the end, so every round starts from the same server state."""
    from cdc_sync.config import load_pipelines
    from cdc_sync.targets.aurora import batch as aurora_target

    s3 = stack.boto3_client("s3")

    def connect():  # as the DAG connects: the hook's LocalFileGuard
        from cdc_sync.orchestration.hooks.mysql import connect as guarded

        server = stack.mariadb
        return guarded(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            charset="utf8mb4",
            local_infile=True,
            autocommit=False,
        )

    def pipeline(doc: dict):
        config = tmpdir / "p.yaml"
        config.write_text(yaml.safe_dump({"pipelines": [doc]}))
        return load_pipelines(config)[0]

    def timed_load(p, batch) -> tuple[float, object]:
        began = time.perf_counter()
        report = aurora_target.load_batch(p, batch, s3, connect, workdir=tmpdir)
        seconds = time.perf_counter() - began
        assert report.loaded == {batch["files"][0]["key"]: ROWS}, report
        return ROWS / seconds, report

    rates: dict[str, float] = {}
    db = f"{DB}_r{n}"
    bare, appended = f"bare_{n}", f"appended_{n}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
        cur.execute(
            f"CREATE TABLE `{db}`.{bare} (id BIGINT PRIMARY KEY, qty INT, amount DECIMAL(18,4), "
            "name VARCHAR(100)) CHARSET utf8mb4"
        )
        cur.execute(f"CREATE TABLE `{db}`.bare_many_{n} LIKE `{db}`.{bare}")
        cur.execute(f"CREATE TABLE `{db}`.{appended} LIKE `{db}`.{bare}")
        # its own table: the same object appended twice to one table is a repeated delivery
        cur.execute(f"CREATE TABLE `{db}`.{appended}_rfc4180 LIKE `{db}`.{bare}")

    # floor: raw LOAD DATA LOCAL INFILE
    conn = connect()
    began = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(
            f"LOAD DATA LOCAL INFILE '{files['raw']['path']}' INTO TABLE `{db}`.{bare} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'"
        )
    conn.commit()
    rates["floor"] = ROWS / (time.perf_counter() - began)

    # executemany on a subset
    subset = data.slice(0, 200_000).to_pylist()
    began = time.perf_counter()
    with conn.cursor() as cur:
        for start in range(0, len(subset), 1000):
            cur.executemany(
                f"INSERT INTO `{db}`.bare_many_{n} (id, qty, amount, name) VALUES (%s, %s, %s, %s)",
                [tuple(r.values()) for r in subset[start : start + 1000]],
            )
    conn.commit()
    rates["many"] = len(subset) / (time.perf_counter() - began)
    conn.close()

    # the pipeline's merge load of a DMS CDC file holding the same rows as inserts, then
    # (steady state) a second file updating every one of those keys
    table = f"customers_{n}"
    merge = pipeline(
        {
            "name": "bench",
            "source": {"kind": "dms", "bucket": "bench-aurora", "prefix": "dms"},
            "tables": [
                {"schema": "shop", "name": table, "primary_key": ["id"], "commit_timestamp_column": "cdc_commit_ts"}
            ],
            "targets": {"aurora": {"database": db, "method": "local_infile"}},
        }
    )
    rates["merge"], report = timed_load(merge, _batch(stack, files["inserts"], table))
    rates["merge_db"] = ROWS / report.database_seconds
    rates["new_keys"], _ = timed_load(merge, _batch(stack, files["new_keys"], table))
    rates["updates"], report = timed_load(merge, _batch(stack, files["updates"], table))
    rates["updates_db"] = ROWS / report.database_seconds
    with admin.cursor() as cur:
        cur.execute(f"SELECT _cdc_commit_ts, COUNT(*) FROM `{db}`.shop_{table} GROUP BY 1 ORDER BY 1")
        assert cur.fetchall() == ((dt.datetime(2026, 11, 23, 7, 30), ROWS), (dt.datetime(2026, 11, 23, 8), ROWS)), (
            "the new keys or the updates did not all apply"
        )

    # the same first load from a DMS CSV file (DataFormat csv): the worker parses and types the text
    table = f"customers_csv_{n}"
    rates["merge_csv"], _ = timed_load(
        pipeline(
            {
                "name": "bench_csv",
                "source": {"kind": "dms", "bucket": "bench-aurora", "prefix": "dms", "file_format": "csv"},
                "tables": [
                    {
                        "schema": "shop",
                        "name": table,
                        "primary_key": ["id"],
                        "commit_timestamp_column": "cdc_commit_ts",
                        "columns": ["id bigint", "qty int", "amount decimal(18,4)", "name varchar(100)"],
                    }
                ],
                "targets": {"aurora": {"database": db, "method": "local_infile"}},
            }
        ),
        _batch(stack, files["dms_csv"], table),
    )

    # the pipeline's append load of a Firehose object with the same rows (CSV lines), in both
    # dialects: backslash_escaped goes straight to LOAD DATA, rfc4180 (the default) is
    # rewritten by the worker on the way
    for measure, dialect, table in (
        ("append", "backslash_escaped", appended),
        ("append_rfc4180", "rfc4180", f"{appended}_rfc4180"),
    ):
        firehose = pipeline(
            {
                "name": f"bench_{measure}_{n}",
                "source": {"kind": "firehose", "bucket": "bench-aurora", "csv_dialect": dialect},
                "tables": [{"schema": "web", "name": "clicks", "columns": ["id", "qty", "amount", "name"]}],
                "targets": {"aurora": {"database": db, "mode": "append", "table": table, "method": "local_infile"}},
            }
        )
        batch = _batch(stack, files["firehose"], f"{measure}_r{n}")
        batch["table"] = "web.clicks"
        rates[measure], _ = timed_load(firehose, batch)
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE `{db}`")
    return rates


def _print(rounds: list[dict[str, float]], upsert_many: float, update_many: float, server: tuple) -> None:
    """Medians of the rounds, and each ratio's range over the rounds."""

    def median(name: str) -> float:
        return statistics.median(r[name] for r in rounds)

    def ratio(name: str, base: str) -> str:
        each = [r[name] / r[base] for r in rounds]
        return (
            f"{median(name) / median(base):.2f}x {'floor' if base == 'floor' else 'executemany'} "
            f"({min(each):.2f}–{max(each):.2f})"
        )

    version, pool, redo = server
    print(
        f"rows: {ROWS:,} ({dt.date.today()}); medians of {len(rounds)} rounds, each ratio's range over the "
        f"rounds in brackets; MariaDB {version}, buffer pool {int(pool) >> 20} MiB, redo log {int(redo) >> 20} MiB"
    )
    print(f"floor  raw LOAD DATA LOCAL INFILE : {median('floor'):10,.0f} rows/s")
    print(
        f"append pipeline (end to end)      : {median('append'):10,.0f} rows/s  = {ratio('append', 'floor')}, "
        f"{ratio('append', 'many')}"
    )
    print(
        f"append, rfc4180 (worker rewrites)  : {median('append_rfc4180'):10,.0f} rows/s  = "
        f"{ratio('append_rfc4180', 'floor')}, {ratio('append_rfc4180', 'many')}"
    )
    print(
        f"merge  first load, empty table    : {median('merge'):10,.0f} rows/s  = {ratio('merge', 'floor')}, "
        f"{ratio('merge', 'many')} (end to end)"
    )
    print(
        f"         in the database          : {median('merge_db'):10,.0f} rows/s  = {ratio('merge_db', 'floor')} "
        "(time a connection was busy: LOAD DATA + ledger)"
    )
    print(
        f"merge  new keys, table has rows   : {median('new_keys'):10,.0f} rows/s  = {ratio('new_keys', 'floor')}, "
        f"{ratio('new_keys', 'many')} (end to end; a CDC file of inserts only)"
    )
    print(
        f"merge  first load from DMS CSV    : {median('merge_csv'):10,.0f} rows/s  = {ratio('merge_csv', 'floor')} "
        "(end to end; the same rows as DMS CSV text)"
    )
    print(
        f"merge  updates of existing keys   : {median('updates'):10,.0f} rows/s  = {ratio('updates', 'floor')}, "
        f"{ratio('updates', 'many')} (end to end)"
    )
    print(
        f"         in the database          : {median('updates_db'):10,.0f} rows/s  = "
        f"{ratio('updates_db', 'floor')} (time a connection was busy: staging + upsert + ledger)"
    )
    print(f"executemany (1,000 per batch)     : {median('many'):10,.0f} rows/s")
    print(
        f"executemany of the merge's own upsert (same state table, position guard, 1,000 per batch; one round):\n"
        f"  into an empty state table       : {upsert_many:10,.0f} rows/s → merge first load "
        f"{median('merge') / upsert_many:.1f}x it"
    )
    print(
        f"  updates of existing keys        : {update_many:10,.0f} rows/s → merge updates "
        f"{median('updates') / update_many:.1f}x it"
    )


def _executemany_upserts(stack, data) -> tuple[float, float]:
    """What a hand-written loader of the same merge would do: executemany of the position-
    guarded INSERT … ON DUPLICATE KEY UPDATE into a table shaped like the state table (200,000
    rows: first into an empty table, then the same keys again with a later position)."""
    conn = stack.mariadb.connect(autocommit=False)
    rows = data.slice(0, 200_000).to_pylist()
    columns = "id, qty, amount, name, _cdc_position, _cdc_deleted, _cdc_commit_ts, _cdc_loaded_at"
    guarded = ", ".join(
        f"{c} = IF(VALUES(_cdc_position) > _cdc_position, VALUES({c}), {c})"
        for c in ("qty", "amount", "name", "_cdc_deleted", "_cdc_commit_ts", "_cdc_loaded_at")
    )
    sql = (
        f"INSERT INTO `{DB}`.state_many ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON DUPLICATE KEY UPDATE {guarded}, _cdc_position = GREATEST(_cdc_position, VALUES(_cdc_position))"
    )
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{DB}`.state_many (id BIGINT NOT NULL PRIMARY KEY, qty BIGINT, "
            "amount DECIMAL(18,4), name LONGTEXT, _cdc_position VARCHAR(1024) COLLATE utf8mb4_bin NOT NULL, "
            "_cdc_deleted TINYINT(1) NOT NULL, _cdc_commit_ts DATETIME(6), _cdc_loaded_at DATETIME(6) NOT NULL) "
            "CHARSET utf8mb4"
        )
    rates = []
    loaded_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # a parameter: pymysql batches only %s VALUES
    for hour in ("07", "08"):
        when = f"2026-11-23 {hour}:00:00"
        head = f"1|{hour}|20261123-{hour}0000000.parquet|"
        began = time.perf_counter()
        with conn.cursor() as cur:
            for start in range(0, len(rows), 1000):
                cur.executemany(
                    sql,
                    [
                        (r["id"], r["qty"], r["amount"], r["name"], f"{head}{i:012d}", 0, when, loaded_at)
                        for i, r in enumerate(rows[start : start + 1000], start)
                    ],
                )
        conn.commit()
        rates.append(len(rows) / (time.perf_counter() - began))
    conn.close()
    return rates[0], rates[1]


if __name__ == "__main__":
    main()
