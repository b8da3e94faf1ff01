"""The transform Lambda's output, delivered by Firehose (moto server) to S3, loads into MySQL
with LOAD DATA exactly as the records were sent: the CSV encoding round-trips."""

from __future__ import annotations

import base64

import pytest

from cdc_sync.sources.firehose.transform import TransformSpec, transform_records
from tools.firehose_standin import create_delivery_stream, lambda_event

pytestmark = pytest.mark.services

SPEC = TransformSpec.from_dict(
    {
        "columns": ["event_id", "user_id", "page", "referrer"],
        "schema": {
            "type": "object",
            "required": ["event_id", "user_id", "page"],
            "properties": {
                "event_id": {"type": "string"},
                "user_id": {"type": "integer"},
                "page": {"type": "string"},
                "referrer": {"type": ["string", "null"]},
            },
        },
    }
)
DOCUMENTS = [
    {"event_id": "e1", "user_id": 1, "page": "plain", "referrer": "https://example.com/?a=1,b=2"},
    {"event_id": "e2", "user_id": 2, "page": 'quote " and, comma', "referrer": None},
    {"event_id": "e3", "user_id": 3, "page": "new\nline and 4-byte 😀 𝄞", "referrer": ""},
    {"event_id": "e4", "user_id": 4, "page": "back\\slash \\N not null", "referrer": "\\"},
    {"event_id": "e5", "user_id": 5, "page": "NULL", "referrer": "\\N"},  # LOAD DATA reads an unquoted NULL as NULL
]


def test_transformed_records_delivered_by_firehose_load_into_mysql_unchanged(stack, unique_name, tmp_path):
    s3, firehose = stack.boto3_client("s3"), stack.boto3_client("firehose")
    bucket, stream = f"clicks-{unique_name}", f"webAnalytics{unique_name}"
    s3.create_bucket(Bucket=bucket)
    create_delivery_stream(firehose, stream, bucket, BufferingHints={"SizeInMBs": 1, "IntervalInSeconds": 60})
    transformed = transform_records(lambda_event(DOCUMENTS), SPEC)["records"]
    assert all(r["result"] == "Ok" for r in transformed)
    firehose.put_record_batch(
        DeliveryStreamName=stream, Records=[{"Data": base64.b64decode(r["data"])} for r in transformed]
    )

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="processed/")["Contents"]]
    assert len(keys) == 1 and keys[0].split("/")[5].startswith(f"{stream}-")  # processed/YYYY/MM/DD/HH/<stream>-…
    local = tmp_path / "delivered.csv"
    s3.download_file(bucket, keys[0], str(local))

    db = f"fh_{unique_name}"
    conn = stack.mariadb.connect(local_infile=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
            cur.execute(
                f"CREATE TABLE `{db}`.clicks (event_id VARCHAR(20) PRIMARY KEY, user_id BIGINT, "
                "page TEXT, referrer TEXT) CHARSET utf8mb4"
            )
            cur.execute(
                f"LOAD DATA LOCAL INFILE '{local}' INTO TABLE `{db}`.clicks CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' "
                "LINES TERMINATED BY '\\n' (event_id, user_id, page, referrer)"
            )
            cur.execute("SHOW WARNINGS")
            assert cur.fetchall() == ()
            cur.execute(f"SELECT event_id, user_id, page, referrer FROM `{db}`.clicks ORDER BY event_id")
            loaded = [
                dict(zip(["event_id", "user_id", "page", "referrer"], row, strict=True)) for row in cur.fetchall()
            ]
        assert loaded == DOCUMENTS
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        conn.close()
