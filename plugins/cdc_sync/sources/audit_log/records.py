"""Decode CloudWatch Logs subscription records as Kinesis carries them.

CloudWatch Logs puts each delivery on the stream as gzip-compressed JSON (Kinesis adds
base64 on the wire; boto3/aiobotocore remove it): ``messageType`` is ``DATA_MESSAGE``
with ``logGroup``, ``logStream`` and ``logEvents[]`` (``id``, ``timestamp``, ``message``),
or ``CONTROL_MESSAGE`` (sent once when the subscription is created: no log data).
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import msgspec

from cdc_sync.errors import BadInput


class LogEvent(msgspec.Struct, frozen=True, gc=False):
    """One CloudWatch log event: its id, its time in ms since the epoch, its text.

    Not tracked by the garbage collector (its fields are strings and ints, never a cycle):
    a batch makes up to a million of them, and each tracked one brings collections nearer."""

    message: str
    id: str | int = ""
    timestamp: int = 0


class _Envelope(msgspec.Struct):
    messageType: str
    logGroup: str = ""
    logStream: str = ""
    logEvents: list[LogEvent] = []


# msgspec (an Airflow dependency) decodes and type-checks the envelope in one C pass.
_DECODER = msgspec.json.Decoder(_Envelope)


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


def gunzip(data: bytes) -> bytes:
    """gzip.decompress, through zlib in one call for the single gzip member CloudWatch Logs
    writes (gzip's own reader costs about twice as much); more members go to gzip's reader."""
    inflater = zlib.decompressobj(wbits=31)
    raw = inflater.decompress(data)
    if not inflater.eof:
        raise EOFError("compressed data ended before the end-of-stream marker was reached")
    if inflater.unused_data:
        return gzip.decompress(data)
    return raw


def decode_record(data: bytes, where: str) -> SubscriptionRecord:
    """Decode one Kinesis record's data (the gzip bytes CloudWatch Logs wrote).

    `where` names the record (stream, shard, sequence number) in every error. Raises
    BadInput for data that is not gzip, not UTF-8 JSON, or not a subscription envelope.
    """
    try:
        raw = gunzip(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise BadInput(f"{where}: not a CloudWatch Logs record: gzip data expected ({exc})") from exc
    try:
        body = _DECODER.decode(raw)
    except msgspec.ValidationError as exc:
        raise BadInput(f"{where}: not a CloudWatch Logs subscription envelope: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadInput(f"{where}: CloudWatch Logs record is not UTF-8 JSON ({exc})") from exc
    if body.messageType == "CONTROL_MESSAGE":
        return SubscriptionRecord(body.messageType, body.logGroup, body.logStream, ())
    if body.messageType != "DATA_MESSAGE":
        raise BadInput(f"{where}: messageType {body.messageType!r} is neither DATA_MESSAGE nor CONTROL_MESSAGE")
    return SubscriptionRecord(body.messageType, body.logGroup, body.logStream, tuple(body.logEvents))
