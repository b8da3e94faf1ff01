"""How Kinesis Data Firehose names the objects it delivers to S3.

`<prefix>YYYY/MM/DD/HH/<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>[.ext]` (UTC hour
folders by default). Keys sort by delivery time, so one StartAfter cursor lists what is new.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_OBJECT = re.compile(
    r"^(?P<folder>\d{4}/\d{2}/\d{2}/\d{2})/(?P<stream>[A-Za-z0-9_.-]+)-\d+-"
    r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-fA-F-]+(\.[a-z0-9]+)?$"
)


def is_delivered_object(key: str, prefix: str, stream: str | None = None) -> bool:
    if not key.startswith(prefix):
        return False
    match = _OBJECT.match(key[len(prefix):])
    if match is None:
        return False
    return stream is None or match["stream"] == stream


def grace_start_after(after: str | None, prefix: str, grace: timedelta) -> str | None:
    """StartAfter moved back to the hour folder `grace` before the watermark's folder."""
    if not after or not grace or not after.startswith(prefix):
        return after
    match = _OBJECT.match(after[len(prefix):])
    if not match:
        return after
    folder_time = datetime.strptime(match["folder"], "%Y/%m/%d/%H").replace(tzinfo=UTC)
    # the folder name sorts before every key inside it
    return f"{prefix}{(folder_time - grace):%Y/%m/%d/%H}"
