"""Loader memory: peak RSS of loading a 10 MB and a 1 GB DMS change file into BigQuery,
as Parquet and as DMS CSV.

Each load runs in a fresh process (download from moto → rewrite row group by row group →
one load job to the BigQuery emulator); the process's peak RSS is read from
getrusage. The target: the 1 GB load peaks less than 100 MB above the 10 MB load.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROWS_PER_GROUP = 100_000
SIZES = {"10 MB": 10 * 1024**2, "1 GB": 1024**3}


SCHEMA = pa.schema(
    [
        ("Op", pa.string()),
        ("cdc_commit_ts", pa.string()),
        ("id", pa.int64()),
        ("qty", pa.int32()),
        ("amount", pa.decimal128(18, 4)),
        ("name", pa.string()),
        ("notes", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
CSV_COLUMNS = [
    "id bigint",
    "qty int",
    "amount decimal(18,4)",
    "name varchar(64)",
    "notes text",
    "updated_at datetime(6)",
]


def _change_batches():
    """DMS-style CDC rows, ROWS_PER_GROUP at a time, forever (random, poorly compressible text)."""
    rng = np.random.default_rng(7)
    rows = 0
    while True:
        n = ROWS_PER_GROUP
        ids = np.arange(rows, rows + n, dtype=np.int64)
        text = rng.integers(0, 2**63, size=(n, 4), dtype=np.int64)
        yield pa.record_batch(
            [
                pa.array(np.where(ids % 7 == 0, "D", np.where(ids % 3 == 0, "I", "U"))),
                pa.array(
                    [f"2026-11-23 07:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}000" for i in ids]
                ),
                pa.array(ids % 1_000_000),
                pa.array((ids % 1000).astype(np.int32)),
                pa.array([None] * n, pa.decimal128(18, 4)),
                pa.array([f"name-{a:x}" for a in text[:, 0]]),
                pa.array([f"{a:x}-{b:x}-{c:x}" for a, b, c in text[:, 1:]]),
                pa.array(np.full(n, 1_763_881_200_000_000, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
            ],
            schema=SCHEMA,
        )
        rows += n


def write_change_file(path: Path, target_bytes: int) -> int:
    """A DMS-style Parquet CDC file of about `target_bytes`; returns its rows."""
    rows = 0
    with pq.ParquetWriter(path, SCHEMA, compression="snappy") as writer:
        for batch in _change_batches():
            if path.exists() and path.stat().st_size >= target_bytes:
                break
            writer.write_batch(batch, row_group_size=ROWS_PER_GROUP)
            rows += batch.num_rows
    return rows


def write_change_file_csv(path: Path, target_bytes: int) -> int:
    """The same rows as DMS writes them in CSV (no header, DATETIME as text without a zone)."""
    rows = 0
    with path.open("wb") as out:
        for batch in _change_batches():
            if out.tell() >= target_bytes:
                break
            updated = pc.cast(batch.column("updated_at").cast(pa.timestamp("us")), pa.string())
            batch = batch.set_column(SCHEMA.get_field_index("updated_at"), "updated_at", updated)
            pacsv.write_csv(batch, out, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
            rows += batch.num_rows
    return rows


def child(config: str, batch: str, workdir: str) -> None:
    """Runs in its own process: one load_batch, then print peak RSS."""
    from cdc_sync.config import load_pipelines
    from cdc_sync.targets.bigquery import batch as bigquery_target
    from tools.local_stack import LocalStack

    stack = LocalStack(
        moto_port=int(os.environ["BENCH_MOTO_PORT"]),
        bigquery_port=int(os.environ["BENCH_BQ_PORT"]),
        workdir=Path(workdir),
    )
    pipeline = load_pipelines(config)[0]
    began = time.perf_counter()
    report = bigquery_target.load_batch(
        pipeline, json.loads(batch), stack.boto3_client("s3"), stack.bigquery_client(), workdir=Path(workdir)
    )
    seconds = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": sum(report.loaded.values()),
                "seconds": seconds,
                "peak_mib": peak_kib / 1024,
                "quarantined": report.quarantined,
            }
        )
    )


def main() -> None:
    import yaml

    from tools.local_stack import LocalStack

    with LocalStack.start() as stack, tempfile.TemporaryDirectory(prefix="cdc-bench-") as tmp:
        tmpdir = Path(tmp)
        s3 = stack.boto3_client("s3")
        s3.create_bucket(Bucket="bench-memory")
        results = {}
        for (label, size), file_format in [(item, f) for f in ("parquet", "csv") for item in SIZES.items()]:
            table = "t" + label.replace(" ", "").lower() + f"_{file_format}"
            config = tmpdir / f"{table}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "pipelines": [
                            {
                                "name": "bench",
                                "source": {
                                    "kind": "dms",
                                    "bucket": "bench-memory",
                                    "prefix": "dms",
                                    "file_format": file_format,
                                },
                                "tables": [
                                    {
                                        "schema": "shop",
                                        "name": table,
                                        "primary_key": ["id"],
                                        "commit_timestamp_column": "cdc_commit_ts",
                                        **({"columns": CSV_COLUMNS} if file_format == "csv" else {}),
                                    }
                                ],
                                "targets": {"bigquery": {"project": "local", "dataset": "bench"}},
                            }
                        ]
                    }
                )
            )
            path = tmpdir / f"{table}.{file_format}"
            rows = (write_change_file if file_format == "parquet" else write_change_file_csv)(path, size)
            key = f"dms/shop/{table}/{dt.datetime(2026, 11, 23, 7):%Y%m%d-%H%M%S}000.{file_format}"
            s3.upload_file(str(path), "bench-memory", key)
            etag = s3.head_object(Bucket="bench-memory", Key=key)["ETag"].strip('"')
            batch = {
                "table": f"shop.{table}",
                "files": [{"key": key, "etag": etag, "size": path.stat().st_size, "phase": 1}],
            }
            path.unlink()
            env = {
                **os.environ,
                "BENCH_MOTO_PORT": str(stack.moto_port),
                "BENCH_BQ_PORT": str(stack.bigquery_port),
                "CDC_SYNC_SQL_DIR": str(REPO / "include" / "sql"),
            }
            out = (
                subprocess.run(
                    [sys.executable, __file__, "--child", str(config), json.dumps(batch), tmp],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            result = json.loads(out)
            assert result["rows"] == rows and not result["quarantined"], result
            results[label, file_format] = result
            print(
                f"{label:>6} {file_format:7} file: {batch['files'][0]['size'] / 1024**2:8.1f} MiB, "
                f"{rows:>10,} change rows, loaded in {result['seconds']:6.1f}s, "
                f"peak RSS {result['peak_mib']:6.1f} MiB"
            )
        for file_format in ("parquet", "csv"):
            delta = results["1 GB", file_format]["peak_mib"] - results["10 MB", file_format]["peak_mib"]
            print(f"peak RSS difference 1 GB vs 10 MB, {file_format}: {delta:.1f} MiB (target < 100 MiB)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
