"""DynamoDB Streams capture rate against its floor, on moto.

The floor is bare GetRecords iteration of the same stream (TRIM_HORIZON, pages of 1,000
records until an empty page), records discarded. The capture step does that plus the seed's
filter, typed values into declared columns, the Parquet change file and its S3 put, and
three checkpoint writes. Both read the same records, alternately, three times; the figures
are the median records/s and their ratio (target: capture ≥ 0.7× the floor).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from boto3.dynamodb.types import Binary, TypeSerializer  # noqa: E402

from cdc_sync.sources.dynamodb_stream.capture import StreamCapture, capture  # noqa: E402
from cdc_sync.sources.dynamodb_stream.filters import FilterCriteria  # noqa: E402
from cdc_sync.sources.dynamodb_stream.images import ItemColumns  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

RECORDS, ROUNDS = 20_000, 3
TABLE, BUCKET = "webAnalyticsBench", "bench-ddb-stream"
SEED_FILTER = {
    "Filters": [
        {
            "Pattern": json.dumps(
                {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"page": {"S": [{"exists": True}]}}}}
            )
        }
    ]
}
COLUMNS = ItemColumns(
    table="web.clicks",
    columns=(
        ("event_id", "varchar(64)"),
        ("user_id", "bigint"),
        ("page", "varchar(200)"),
        ("amount", "decimal(38,4)"),
        ("payload", "blob"),
        ("is_bot", "tinyint(1)"),
        ("tags", "json"),
        ("props", "json"),
    ),
    key=("event_id",),
    extra_column="extra",
)


def item(n: int) -> dict:
    serializer = TypeSerializer()
    value = {
        "event_id": f"e{n:08d}",
        "user_id": Decimal(n),
        "page": f"/page/{n % 100}",
        "amount": Decimal(f"{n}.1234"),
        "payload": Binary(n.to_bytes(4, "big")),
        "is_bot": n % 7 == 0,
        "tags": {"a", f"t{n % 10}"},
        "props": {"ref": "ads", "depth": Decimal(n % 5)},
        "campaign": "winter",
    }
    return {k: serializer.serialize(v) for k, v in value.items()}


def floor(streams, arn: str, shard_id: str) -> int:
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    count = 0
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        count += len(page["Records"])
        if not page["Records"]:
            return count
        iterator = page["NextShardIterator"]


def main() -> None:
    with LocalStack.start() as stack:
        ddb, streams, s3 = (stack.boto3_client(s) for s in ("dynamodb", "dynamodbstreams", "s3"))
        s3.create_bucket(Bucket=BUCKET)
        ddb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "event_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "event_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        began = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: ddb.put_item(TableName=TABLE, Item=item(n)), range(RECORDS)))
        print(f"seeded {RECORDS:,} stream records in {time.perf_counter() - began:.0f}s")
        arn = ddb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        shard_id = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]

        floor_rates, capture_rates = [], []
        for round_ in range(ROUNDS):
            began = time.perf_counter()
            assert floor(streams, arn, shard_id) == RECORDS
            floor_rates.append(RECORDS / (time.perf_counter() - began))
            spec = StreamCapture(
                stream=TABLE,
                columns=COLUMNS,
                bucket=BUCKET,
                table_prefix="ddb/web/clicks/",
                checkpoint_key=f"cdc-sync/checkpoints/bench/round{round_}.json",  # from TRIM_HORIZON each round
                commit_timestamp_column="cdc_commit_ts",
                filters=FilterCriteria.parse(SEED_FILTER),
            )
            began = time.perf_counter()
            report = capture(spec, streams, ddb, s3)
            capture_rates.append(RECORDS / (time.perf_counter() - began))
            assert report.records == report.written == RECORDS, report
        floor_rate, capture_rate = statistics.median(floor_rates), statistics.median(capture_rates)
        print(f"records: {RECORDS:,} in one shard, {ROUNDS} rounds each, medians")
        print(f"bare GetRecords (floor): {floor_rate:,.0f} records/s  ({', '.join(f'{r:,.0f}' for r in floor_rates)})")
        print(
            f"capture step:            {capture_rate:,.0f} records/s  ({', '.join(f'{r:,.0f}' for r in capture_rates)})"
        )
        print(f"capture / floor: {capture_rate / floor_rate:.2f}× (target ≥ 0.7×)")


if __name__ == "__main__":
    main()
