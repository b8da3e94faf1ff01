"""What surrounds the transform Lambda in AWS, for the tests and the demo: the event Firehose
invokes it with, DynamoDB stream records as they reach Firehose, a delivery stream on moto,
and the error-prefix object Firehose writes for records the Lambda refused (moto's Firehose
does not call a Lambda)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

from cdc_sync.sources.firehose.transform import TransformSpec, transform_records


def lambda_event(documents: list[dict | bytes]) -> dict:
    """The event Firehose invokes the transform Lambda with: JSON documents (or raw bytes)."""
    return {
        "records": [
            {
                "recordId": str(n),
                "approximateArrivalTimestamp": 0,
                "data": base64.b64encode(
                    d if isinstance(d, bytes) else json.dumps(d, ensure_ascii=False).encode()
                ).decode(),
            }
            for n, d in enumerate(documents)
        ]
    }


def transformed_lines(documents: list[dict | bytes], spec: TransformSpec) -> list[bytes]:
    """The CSV lines the transform Lambda makes of the documents it accepts."""
    return [
        base64.b64decode(r["data"])
        for r in transform_records(lambda_event(documents), spec)["records"]
        if r["result"] == "Ok"
    ]


def typed_image(item: dict) -> dict:
    """A plain item as DynamoDB-typed JSON (`{"S": …}`, `{"N": …}`), by boto3's TypeSerializer."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {name: serializer.serialize(value) for name, value in item.items()}


def dynamodb_stream_record(event_name: str, new_image: dict | None, event_id: str, keys: dict | None = None) -> dict:
    """A Kinesis Data Streams for DynamoDB record as Firehose receives it; `new_image` typed,
    None for a REMOVE (or a KEYS_ONLY stream)."""
    dynamodb: dict = {"ApproximateCreationDateTime": 1763881200000, "Keys": keys or {}, "SizeBytes": 120}
    if new_image is not None:
        dynamodb["NewImage"] = new_image
    return {
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "eventName": event_name,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": "clicks",
        "dynamodb": dynamodb,
        "eventSource": "aws:dynamodb",
    }


def create_delivery_stream(firehose, stream: str, bucket: str, **s3_settings) -> None:
    """A DirectPut stream delivering to `processed/`, refused records to `processing-failed/`."""
    firehose.create_delivery_stream(
        DeliveryStreamName=stream,
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": "arn:aws:iam::123456789012:role/firehose",
            "BucketARN": f"arn:aws:s3:::{bucket}",
            "Prefix": "processed/",
            "ErrorOutputPrefix": "processing-failed/",
            **s3_settings,
        },
    )


def write_processing_failed(s3, bucket: str, stream: str, refused: list[dict]) -> str:
    """What Firehose writes under the error prefix for records the Lambda answered
    ProcessingFailed (the Lambda's response records); returns the object's key."""
    now = dt.datetime.now(dt.UTC)
    key = f"processing-failed/{now:%Y/%m/%d/%H}/{stream}-1-{now:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    body = "".join(
        json.dumps(
            {
                "attemptsMade": 1,
                "arrivalTimestamp": 0,
                "errorCode": "Lambda.ProcessingFailed",
                "errorMessage": "The record was marked ProcessingFailed by the Lambda",
                "attemptEndingTimestamp": 0,
                "rawData": r["data"],
                "lambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:transform",
            }
        )
        + "\n"
        for r in refused
    )
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    return key
