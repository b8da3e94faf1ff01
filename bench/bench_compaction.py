"""What reading the BigQuery latest state costs as history grows, with and without compaction.

A table of LIVE keys gets ROUNDS rounds of CHANGES changes each (updates, deletes, re-inserts
and new keys), each round a day of loads (its `_cdc_loaded_at` on its own day: the changelog
is partitioned by day). After each round it prints, for the latest-state query:
  rows read   without compaction: every changelog row (the view ranks the whole history);
              with compaction: the state table's rows + the rows of the changelog partitions
              the view's constant filter keeps (from the done watermark's day on), counted from
              INFORMATION_SCHEMA.PARTITIONS — the emulator reports no bytes processed, and
              BigQuery bills a query by the partitions it keeps;
  its wall time on the emulator (DuckDB scans what it is given: a figure, not BigQuery's);
  the compaction's time, MERGE (the chosen way) against a rebuild of the state from
  state ∪ the new rows (CREATE OR REPLACE TABLE, measured on a copy).
Target: with compaction, rows read ≤ 1.5 × (live rows + changes since the last compaction)
at every round, flat as rounds grow; without it, growing with the rounds.
Every round the compacted view's result is checked against the whole-changelog ranking.

Usage: python bench/bench_compaction.py [live] [rounds] [changes]   (default 200000 10 40000;
the issue's figure is 1000000 20 200000, which takes long on a shared 2-core machine)
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from google.cloud import bigquery  # noqa: E402

from cdc_sync.config import parse_pipelines  # noqa: E402
from cdc_sync.targets.bigquery.compaction import Compactor  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

DATASET = "bench_compaction"
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("qty", pa.int64()),
        ("name", pa.string()),
        ("_cdc_op", pa.string()),
        ("_cdc_commit_ts", pa.timestamp("us", tz="UTC")),
        ("_cdc_position", pa.string()),
        ("_cdc_source_key", pa.string()),
        ("_cdc_row", pa.int64()),
        ("_cdc_loaded_at", pa.timestamp("us", tz="UTC")),
    ]
)


def _pipeline():
    document = {
        "pipelines": [
            {
                "name": "bench",
                "source": {"kind": "dms", "bucket": "bench-bucket", "prefix": "dms"},
                "tables": [{"schema": "shop", "name": "items", "primary_key": ["id"]}],
                "targets": {"bigquery": {"project": "local", "dataset": DATASET, "compaction": {"every_loads": 1}}},
            }
        ]
    }
    return parse_pipelines(document)[0]


def _changes(round_no: int, live: int, count: int, loaded_at: datetime) -> pa.Table:
    """Round 0: the full load of `live` keys. Later rounds: updates of existing keys, every
    tenth change a delete, every twentieth a new key; deterministic."""
    if round_no == 0:
        ids = list(range(1, live + 1))
        ops = ["I"] * live
    else:
        step = 7919  # a prime: the changed keys spread over the table
        ids, ops = [], []
        for i in range(count):
            if i % 20 == 0:
                ids.append(live + round_no * count + i)
                ops.append("I")
            else:
                ids.append((round_no * count + i * step) % live + 1)
                ops.append("D" if i % 10 == 1 else "U")
    n = len(ids)
    commit = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=round_no)
    key = f"dms/shop/items/round-{round_no:04d}.parquet"
    columns = {
        "id": ids,
        "qty": [(i * 31 + round_no) % 1000 for i in ids],
        "name": [f"item {i} round {round_no}" for i in ids],
        "_cdc_op": ops,
        "_cdc_commit_ts": [commit] * n,
        "_cdc_position": [f"{0 if round_no == 0 else 1}|{round_no:020d}|{key}|{r:012d}" for r in range(n)],
        "_cdc_source_key": [key] * n,
        "_cdc_row": list(range(n)),
        "_cdc_loaded_at": [loaded_at] * n,
    }
    return pa.table(columns, schema=SCHEMA)


def _load(client: bigquery.Client, table_id: str, data: pa.Table, workdir: Path) -> None:
    path = workdir / "round.parquet"
    pq.write_table(data, path)
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.PARQUET, write_disposition=bigquery.WriteDisposition.WRITE_APPEND
    )
    with path.open("rb") as stream:
        client.load_table_from_file(stream, table_id, job_config=config).result()


def _partition_rows(client: bigquery.Client, table: str) -> dict[str, int]:
    sql = (
        f"SELECT partition_id, total_rows FROM `local.{DATASET}.INFORMATION_SCHEMA.PARTITIONS` "
        f"WHERE table_name = '{table}'"
    )
    return {r["partition_id"]: int(r["total_rows"]) for r in client.query(sql).result()}


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _first_row(client: bigquery.Client, sql: str) -> tuple:
    return tuple(next(iter(client.query(sql).result())))


def _run(client: bigquery.Client, sql: str) -> None:
    client.query(sql).result()


def _count(client: bigquery.Client, sql: str) -> int:
    return int(next(iter(client.query(sql).result()))[0])


def main() -> None:
    live, rounds, changes = (int(a) for a in (sys.argv[1:] + ["200000", "10", "40000"][len(sys.argv[1:]) :]))
    pipeline = _pipeline()
    table = pipeline.tables[0]
    target = pipeline.bigquery
    assert target is not None
    changelog = f"local.{DATASET}.{target.changelog_table(table)}"
    view = f"local.{DATASET}.{target.latest_view(table)}"
    reference = (
        f"SELECT COUNT(*), SUM(qty), COUNT(DISTINCT name) FROM (SELECT * FROM `{changelog}` WHERE TRUE "
        "QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY _cdc_position DESC) = 1) WHERE _cdc_op != 'D'"
    )
    with LocalStack.start() as stack, tempfile.TemporaryDirectory() as scratch:
        client = stack.bigquery_client()
        client.create_dataset(DATASET, exists_ok=True)
        schema = [bigquery.SchemaField(f.name, "INTEGER" if pa.types.is_integer(f.type) else "STRING") for f in SCHEMA]
        schema = [
            bigquery.SchemaField(f.name, "TIMESTAMP") if pa.types.is_timestamp(SCHEMA.field(f.name).type) else f
            for f in schema
        ]
        created = bigquery.Table(changelog, schema=schema)
        created.time_partitioning = bigquery.TimePartitioning(field="_cdc_loaded_at")
        created.clustering_fields = ["id"]
        client.create_table(created)
        compactor = Compactor(pipeline, table, client)
        first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=rounds + 1)
        print(f"live keys {live:,}; {rounds} rounds of {changes:,} changes; one round = one day's partition")
        print(
            f"{'round':>5} {'changelog':>11} {'plain rows':>11} {'plain s':>8} {'compacted rows':>15} "
            f"{'bound':>11} {'ratio':>6} {'view s':>7} {'compact s':>9} {'merge s':>8} {'rebuild s':>9}"
        )
        for round_no in range(rounds + 1):
            loaded_at = first_day + timedelta(days=round_no, hours=1)
            _load(client, changelog, _changes(round_no, live, changes, loaded_at), Path(scratch))
            total = sum(_partition_rows(client, target.changelog_table(table)).values())
            expected, plain_s = _timed(_first_row, client, reference)
            # the rebuild alternative, on a copy of the state so the MERGE below is measured on the same input
            rebuild_s = 0.0
            state_id = f"local.{DATASET}.{target.state_table(table)}"
            done = compactor.marks().done
            if done is not None:
                client.query(f"CREATE OR REPLACE TABLE `{state_id}_copy` AS SELECT * FROM `{state_id}`").result()
                low = f"TIMESTAMP '{done:%Y-%m-%d %H:%M:%S.%f}+00'"
                rebuild = (
                    f"CREATE OR REPLACE TABLE `{state_id}_copy` CLUSTER BY id AS SELECT * FROM ("
                    f"SELECT * FROM `{state_id}_copy` UNION ALL SELECT * FROM `{changelog}` "
                    f"WHERE _cdc_loaded_at >= {low}) WHERE TRUE "
                    "QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY _cdc_position DESC) = 1"
                )
                _, rebuild_s = _timed(_run, client, rebuild)
            merge_only_s = 0.0
            if done is not None:  # the bare MERGE statement on another copy: like for like with the rebuild
                client.query(f"CREATE OR REPLACE TABLE `{state_id}_copy2` AS SELECT * FROM `{state_id}`").result()
                on_copy = Compactor(pipeline, table, client)
                on_copy.state = f"{target.state_table(table)}_copy2"
                columns = [f.name for f in schema]
                _, merge_only_s = _timed(on_copy._merge, columns, done, loaded_at + timedelta(hours=1))
            report, merge_s = _timed(compactor.compact, now=loaded_at + timedelta(hours=1))
            got, view_s = _timed(_first_row, client, f"SELECT COUNT(*), SUM(qty), COUNT(DISTINCT name) FROM `{view}`")
            assert got == expected, (round_no, got, expected)
            watermark_day = (loaded_at + timedelta(hours=1)).strftime("%Y%m%d")
            state_rows = _count(client, f"SELECT COUNT(*) FROM `{state_id}`")
            kept = sum(
                n for day, n in _partition_rows(client, target.changelog_table(table)).items() if day >= watermark_day
            )
            rows_read = state_rows + kept
            live_now = int(expected[0])
            bound = live_now + (changes if round_no else live)
            print(
                f"{round_no:>5} {total:>11,} {total:>11,} {plain_s:>8.2f} {rows_read:>15,} {bound:>11,} "
                f"{rows_read / bound:>6.2f} {view_s:>7.2f} {merge_s:>9.2f} {merge_only_s:>8.2f} {rebuild_s:>9.2f}"
            )
            assert report.watermark is not None
        print(
            "plain rows: what the uncompacted view reads (the whole changelog); compacted rows: state "
            "table + the changelog partitions from the watermark's day; bound: live rows + changes since "
            "the last compaction; compact s: the whole compaction (watermark, settling claims, MERGE, "
            "ledger rows, view); merge s: its MERGE statement alone; rebuild s: CREATE OR REPLACE of "
            "the state from state ∪ the new rows, the alternative."
        )


if __name__ == "__main__":
    main()
