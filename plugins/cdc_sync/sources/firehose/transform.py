"""Kinesis Data Firehose transform Lambda: JSON records → validated CSV lines.

Firehose calls the Lambda with `{"records": [{"recordId", "approximateArrivalTimestamp",
"data": <base64>}, ...]}` and expects every recordId back with `result` `Ok` (and the new
base64 `data`), `Dropped`, or `ProcessingFailed` (Firehose then writes the record to the
error prefix, `processing-failed/…`; the reason is logged by the Lambda). Each record is
checked against a JSON Schema (jsonschema) and written as one CSV line by Python's csv
module in the `backslash_escaped` dialect (firehose.dialects: NULL as \\N, backslashes
doubled, every field quoted): commas, quotes, newlines and any UTF-8 survive, ready for
`LOAD DATA … FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY '\\\\'`. A
Firehose source fed by this Lambda says `csv_dialect: backslash_escaped`.

A record may also be a DynamoDB stream record (from DynamoDB Streams, or Kinesis Data
Streams for DynamoDB: `"eventSource": "aws:dynamodb"`): then its `NewImage` is the document,
unmarshalled by boto3's TypeDeserializer (numbers exact, sets as sorted lists, binary as
base64), and the columns `_event_id` / `_event_name` take the record's `eventID` /
`eventName` (a unique key on `_event_id` makes repeated deliveries harmless). A REMOVE has no
new image: it is `Dropped`.

Deploy `handler` as the Lambda entry point (`cdc_sync.sources.firehose.transform.handler`) with
the environment variable CDC_SYNC_TRANSFORM_SPEC naming a JSON file
`{"columns": [...], "schema": {...}}` packaged with it.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

from cdc_sync.errors import BadInput
from cdc_sync.sources.firehose.dialects import ESCAPED_NULL, escaped_line

NULL = ESCAPED_NULL  # how LOAD DATA (ESCAPED BY '\\') reads NULL


@dataclass(frozen=True)
class TransformSpec:
    columns: tuple[str, ...]
    schema: dict

    @classmethod
    def from_dict(cls, data: dict) -> "TransformSpec":
        Draft202012Validator.check_schema(data["schema"])
        return cls(columns=tuple(data["columns"]), schema=data["schema"])


class RecordError(BadInput):
    pass


# columns a DynamoDB stream record fills from its envelope rather than from its image
STREAM_RECORD_COLUMNS = {"_event_id": "eventID", "_event_name": "eventName"}


class Dropped(Exception):
    """A record with nothing to append (a DynamoDB REMOVE): answered `Dropped`."""


def to_csv_line(record: dict, columns: tuple[str, ...]) -> str:
    """One CSV line (with its newline) in the `backslash_escaped` dialect (firehose.dialects):
    NULL as \\N, backslashes doubled, every field quoted."""
    return escaped_line([_cell(record.get(column)) for column in columns])


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def transform_records(event: dict, spec: TransformSpec, log: Callable[[str], None] = print) -> dict:
    """Firehose's response: every record of the event answered `Ok`, `Dropped` or
    `ProcessingFailed`, whatever it holds.

    Each record is handled on its own: any exception a record raises (also RecursionError
    from JSON nested too deeply, or an error inside jsonschema or boto3) fails that record
    only, so the other records of the invocation still get their answer."""
    validator = Draft202012Validator(spec.schema)
    out = []
    for record in event.get("records", []):
        if not isinstance(record, dict):
            record = {"recordId": None, "data": ""}
        try:
            document, envelope = _item(_decode(record["data"]))
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
            if errors:
                where = "/".join(str(p) for p in errors[0].absolute_path) or "(record)"
                raise RecordError(f"{where}: {errors[0].message}")
            line = to_csv_line({**document, **envelope}, spec.columns)
            out.append(
                {
                    "recordId": record["recordId"],
                    "result": "Ok",
                    "data": base64.b64encode(line.encode("utf-8")).decode("ascii"),
                }
            )
        except Dropped as dropped:
            log(json.dumps({"recordId": record.get("recordId"), "result": "Dropped", "reason": str(dropped)}))
            out.append({"recordId": record.get("recordId"), "result": "Dropped", "data": record.get("data", "")})
        except Exception as error:  # noqa: BLE001 - one record's failure must not fail the batch
            # Firehose takes recordId/result/data only; the reason goes to the Lambda's log
            # (CloudWatch), one JSON line per refused record.
            log(
                json.dumps(
                    {"recordId": record.get("recordId"), "result": "ProcessingFailed", "reason": _reason(error)[:1000]}
                )
            )
            out.append(
                {"recordId": record.get("recordId"), "result": "ProcessingFailed", "data": record.get("data", "")}
            )
    return {"records": out}


def _reason(error: Exception) -> str:
    """Why a record failed, in words for the Lambda's log."""
    if isinstance(error, RecursionError):
        return f"nested too deeply to process ({error})"
    if isinstance(error, (RecordError, ValueError, KeyError, TypeError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _decode(data: str) -> dict:
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as error:
        raise RecordError(f"data is not base64 UTF-8 ({error})") from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"not JSON: {error}") from error
    if not isinstance(document, dict):
        raise RecordError("a record must be a JSON object")
    return document


def _item(document: dict) -> tuple[dict, dict]:
    """(the document to validate and write, envelope columns). A DynamoDB stream record gives
    its unmarshalled NewImage; any other JSON object is the document itself."""
    if document.get("eventSource") != "aws:dynamodb" or not isinstance(document.get("dynamodb"), dict):
        return document, {}
    image = document["dynamodb"].get("NewImage")
    event = document.get("eventName")
    if image is None:
        if event == "REMOVE":
            raise Dropped("a DynamoDB REMOVE: no new image to append")
        raise RecordError(
            f"DynamoDB {event or 'stream'} record without NewImage: the table's stream view type "
            "must be NEW_IMAGE or NEW_AND_OLD_IMAGES"
        )
    from boto3.dynamodb.types import TypeDeserializer  # in every Lambda Python runtime

    try:
        item = TypeDeserializer().deserialize({"M": _binary_decoded(image)})
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise RecordError(f"dynamodb.NewImage is not DynamoDB-typed JSON ({error})") from error
    envelope = {column: document.get(field) for column, field in STREAM_RECORD_COLUMNS.items()}
    return {name: _plain(value) for name, value in item.items()}, envelope


def _binary_decoded(typed: Any) -> Any:
    """DynamoDB JSON as it travels (B and BS as base64 text) → what TypeDeserializer takes (bytes)."""
    if isinstance(typed, list):
        return [_binary_decoded(v) for v in typed]
    if not isinstance(typed, dict):
        return typed
    if len(typed) == 1:
        ((tag, value),) = typed.items()
        if tag == "B" and isinstance(value, str):
            return {"B": base64.b64decode(value, validate=True)}
        if tag == "BS" and isinstance(value, list):
            return {"BS": [base64.b64decode(v, validate=True) if isinstance(v, str) else v for v in value]}
    return {k: _binary_decoded(v) for k, v in typed.items()}  # an M, an L's items, an image's attributes


def _plain(value: Any, nested: bool = False) -> Any:
    """A DynamoDB value as JSON would have it: whole numbers as int (JSON Schema's integer);
    other numbers exact at the top level (written as text) and float inside maps and lists
    (written as JSON); sets as sorted lists; binary as base64 text."""
    from boto3.dynamodb.types import Binary

    if isinstance(value, Decimal):
        if value == value.to_integral_value():
            return int(value)
        return float(value) if nested else value
    if isinstance(value, Binary):
        return base64.b64encode(value.value).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v, True) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v, True) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, True) for v in value]
    return value


@cache
def _spec_from_env() -> TransformSpec:
    path = os.environ.get("CDC_SYNC_TRANSFORM_SPEC")
    if not path:
        raise RuntimeError("set CDC_SYNC_TRANSFORM_SPEC to the JSON file with columns and schema")
    with open(path, encoding="utf-8") as handle:
        return TransformSpec.from_dict(json.load(handle))


def handler(event: dict, context: Any = None, *, spec_loader: Callable[[], TransformSpec] = _spec_from_env) -> dict:
    """The Lambda entry point."""
    return transform_records(event, spec_loader())
