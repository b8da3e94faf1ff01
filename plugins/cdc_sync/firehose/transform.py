"""Kinesis Data Firehose transform Lambda: JSON records → validated CSV lines.

Firehose calls the Lambda with `{"records": [{"recordId", "approximateArrivalTimestamp",
"data": <base64>}, ...]}` and expects every recordId back with `result` `Ok` (and the new
base64 `data`), `Dropped`, or `ProcessingFailed` (Firehose then writes the record to the
error prefix, `processing-failed/…`; the reason is logged by the Lambda). Each record is
checked against a JSON Schema (jsonschema) and written as one CSV line by Python's csv
module: commas, quotes, newlines and any UTF-8 survive, ready for `LOAD DATA … FIELDS
TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"'`.

Deploy `handler` as the Lambda entry point (`cdc_sync.firehose.transform.handler`) with
the environment variable CDC_SYNC_TRANSFORM_SPEC naming a JSON file
`{"columns": [...], "schema": {...}}` packaged with it.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator

NULL = "\\N"  # how LOAD DATA (ESCAPED BY '\\') reads NULL


@dataclass(frozen=True)
class TransformSpec:
    columns: tuple[str, ...]
    schema: dict

    @classmethod
    def from_dict(cls, data: dict) -> "TransformSpec":
        Draft202012Validator.check_schema(data["schema"])
        return cls(columns=tuple(data["columns"]), schema=data["schema"])


class RecordError(ValueError):
    pass


def to_csv_line(record: dict, columns: tuple[str, ...]) -> str:
    """One CSV line (with its newline). NULL as \\N; backslashes doubled for ESCAPED BY '\\'."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow([_cell(record.get(column)) for column in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value).replace("\\", "\\\\")


def transform_records(event: dict, spec: TransformSpec, log: Callable[[str], None] = print) -> dict:
    validator = Draft202012Validator(spec.schema)
    out = []
    for record in event.get("records", []):
        try:
            document = _decode(record["data"])
            errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
            if errors:
                where = "/".join(str(p) for p in errors[0].absolute_path) or "(record)"
                raise RecordError(f"{where}: {errors[0].message}")
            line = to_csv_line(document, spec.columns)
            out.append({"recordId": record["recordId"], "result": "Ok",
                        "data": base64.b64encode(line.encode("utf-8")).decode("ascii")})
        except (RecordError, ValueError, KeyError) as error:
            # Firehose takes recordId/result/data only; the reason goes to the Lambda's log
            # (CloudWatch), one JSON line per refused record.
            log(json.dumps({"recordId": record.get("recordId"), "result": "ProcessingFailed",
                            "reason": str(error)[:1000]}))
            out.append({"recordId": record.get("recordId"), "result": "ProcessingFailed",
                        "data": record.get("data", "")})
    return {"records": out}


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
