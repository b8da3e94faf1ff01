"""Records the transform Lambda refused: Firehose writes them under the error prefix
(`processing-failed/YYYY/MM/DD/HH/…`), one JSON document per line with `attemptsMade`,
`arrivalTimestamp`, `errorCode`, `errorMessage`, `attemptEndingTimestamp`, `rawData`
(base64) and `lambdaArn`. This reads the objects past a watermark and summarises them."""

from __future__ import annotations

import base64
import gzip
import json
from collections import Counter
from dataclasses import dataclass, field

from cdc_sync.sources.firehose.layout import delivery_layout, is_delivered_object

SAMPLES = 5


@dataclass
class FailedRecords:
    objects: list[str] = field(default_factory=list)
    count: int = 0
    by_error: Counter = field(default_factory=Counter)
    samples: list[dict] = field(default_factory=list)

    def summary(self, bucket: str) -> str:
        if not self.count:
            return "no records were refused by the transform Lambda"
        lines = [
            f"{self.count} record(s) refused by the transform Lambda in {len(self.objects)} object(s) "
            f"under s3://{bucket}/…: " + ", ".join(f"{code} ×{n}" for code, n in self.by_error.most_common())
        ]
        for sample in self.samples:
            lines.append(
                f"  s3://{bucket}/{sample['key']}: {sample['errorCode']}: {sample['errorMessage']} — "
                f"data: {sample['data']!r}"
            )
        return "\n".join(lines)


def read_failed_records(s3_client, bucket: str, error_prefix: str, after: str | None) -> FailedRecords:
    found = FailedRecords()
    params: dict = {"Bucket": bucket, "Prefix": delivery_layout(error_prefix).listing_prefix}
    if after:
        params["StartAfter"] = after
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(**params):
        for item in page.get("Contents", []):
            key = item["Key"]
            if not is_delivered_object(key, error_prefix) and not _in_error_folders(key, error_prefix):
                continue
            found.objects.append(key)
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
            if key.endswith(".gz"):
                body = gzip.decompress(body)
            for line in body.decode("utf-8", errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                except json.JSONDecodeError:
                    document = {"errorCode": "Unreadable", "errorMessage": "line is not JSON", "rawData": ""}
                found.count += 1
                code = str(document.get("errorCode", "Unknown"))
                found.by_error[code] += 1
                if len(found.samples) < SAMPLES:
                    found.samples.append(
                        {
                            "key": key,
                            "errorCode": code,
                            "errorMessage": str(document.get("errorMessage", ""))[:300],
                            "data": _excerpt(document.get("rawData", "")),
                        }
                    )
    return found


def _in_error_folders(key: str, error_prefix: str) -> bool:
    # processing-failed/YYYY/MM/DD/HH/<stream>-… : the same naming as delivered objects
    if "!{" in error_prefix:  # with expressions: the layout's names only
        return False
    rest = key[len(error_prefix) :]
    return rest[:4].isdigit() and rest.count("/") >= 4


def _excerpt(raw: str) -> str:
    try:
        return base64.b64decode(raw).decode("utf-8", errors="replace")[:200]
    except ValueError:
        return str(raw)[:200]
