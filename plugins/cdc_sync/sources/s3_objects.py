"""Small JSON documents on S3: the capture steps' checkpoints and the files they name.

The DynamoDB-stream, binlog and audit-trail captures keep their positions as one JSON object
each and check that the change files a checkpoint names as pending are on S3.
"""

from __future__ import annotations

import json

from botocore.exceptions import ClientError

_MISSING = ("404", "NoSuchKey", "NotFound")


def read_json(s3, bucket: str, key: str) -> dict | None:
    """The JSON object at `key`; None when there is none (any other error is raised)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise
    return json.loads(body)


def write_json(s3, bucket: str, key: str, document: dict) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document, sort_keys=True).encode())


def object_exists(s3, bucket: str, key: str) -> bool:
    """Whether `key` is on S3 (HEAD); errors other than "not found" are raised."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _MISSING:
            return False
        raise
    return True
