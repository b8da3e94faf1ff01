"""Decode CloudWatch Logs subscription records as Kinesis carries them.

CloudWatch Logs puts each delivery on the stream as gzip-compressed JSON (Kinesis adds
base64 on the wire; boto3/aiobotocore remove it): ``messageType`` is ``DATA_MESSAGE``
with ``logGroup``, ``logStream`` and ``logEvents[]`` (``id``, ``timestamp``, ``message``),
or ``CONTROL_MESSAGE`` (sent once when the subscription is created: no log data).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass

from cdc_sync.errors import BadInput


@dataclass(frozen=True)
class LogEvent:
    """One CloudWatch log event: its id, its time in ms since the epoch, its text."""

    id: str
    timestamp: int
    message: str


@dataclass(frozen=True)
class SubscriptionRecord:
    """One decoded subscription record: where it came from and its log events."""

    message_type: str
    log_group: str
    log_stream: str
    events: tuple[LogEvent, ...]

    @property
    def is_control(self) -> bool:
        return self.message_type == "CONTROL_MESSAGE"


def decode_record(data: bytes, where: str) -> SubscriptionRecord:
    """Decode one Kinesis record's data (the gzip bytes CloudWatch Logs wrote).

    `where` names the record (stream, shard, sequence number) in every error. Raises
    BadInput for data that is not gzip, not UTF-8 JSON, or not a subscription envelope.
    """
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{where}: not a CloudWatch Logs record: gzip data expected ({exc})") from exc
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{where}: CloudWatch Logs record is not UTF-8 JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise BadInput(f"{where}: CloudWatch Logs record is not a JSON object")
    message_type = body.get("messageType")
    if message_type == "CONTROL_MESSAGE":
        return SubscriptionRecord(message_type, str(body.get("logGroup", "")), str(body.get("logStream", "")), ())
    if message_type != "DATA_MESSAGE":
        raise BadInput(f"{where}: messageType {message_type!r} is neither DATA_MESSAGE nor CONTROL_MESSAGE")
    raw_events = body.get("logEvents")
    if not isinstance(raw_events, list):
        raise BadInput(f"{where}: DATA_MESSAGE without a logEvents list")
    events = []
    for index, item in enumerate(raw_events):
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            raise BadInput(f"{where}: logEvents[{index}] has no message text")
        events.append(LogEvent(str(item.get("id", index)), int(item.get("timestamp", 0)), item["message"]))
    return SubscriptionRecord(
        message_type, str(body.get("logGroup", "")), str(body.get("logStream", "")), tuple(events)
    )
