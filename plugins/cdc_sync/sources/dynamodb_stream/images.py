"""DynamoDB stream records → DMS-style changes of declared, typed columns.

Values go through boto3's TypeDeserializer: `N` becomes a Decimal (never a float), `B` bytes,
sets/lists/maps JSON text (sets sorted, numbers written digit for digit, binary as base64).
Each declared column has a MySQL type (as DMS CSV columns do); a value that the column
cannot hold exactly is refused with an error naming the table, attribute, shard and
sequence number. Attributes a table does not declare go to its extra-attributes JSON column
or, without one, are refused: nothing in an item is dropped silently.

Op: INSERT → I, MODIFY → U, REMOVE → D. Inserts and modifies take the NewImage; removes
the OldImage when the stream has it, else the Keys.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
from boto3.dynamodb.types import Binary, TypeDeserializer

from cdc_sync.errors import BadInput, SetupError
from cdc_sync.sources.dms.mysql_types import arrow_type_for_mysql
from cdc_sync.sources.dms.writer import Change

OPS = {"INSERT": "I", "MODIFY": "U", "REMOVE": "D"}
VIEW_TYPES_WITH_NEW_IMAGE = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
_INT_RANGES = {
    pa.int8(): (-(2**7), 2**7 - 1),
    pa.int16(): (-(2**15), 2**15 - 1),
    pa.int32(): (-(2**31), 2**31 - 1),
    pa.int64(): (-(2**63), 2**63 - 1),
}
_deserializer = TypeDeserializer()


class RecordError(BadInput):
    """A stream record whose values cannot be written exactly; names table, attribute, position."""


@dataclass(frozen=True)
class ItemColumns:
    """How a DynamoDB table's items become rows: declared columns, key, extra-attributes column."""

    table: str  # `<schema>.<name>`, for messages
    columns: tuple[tuple[str, str], ...]  # (attribute name, MySQL type)
    key: tuple[str, ...]
    extra_column: str | None = None

    @property
    def arrow_columns(self) -> list[tuple[str, pa.DataType]]:
        """The change file's columns: the declared ones, then the extra-attributes JSON text."""
        out = [(name, arrow_type_for_mysql(kind)) for name, kind in self.columns]
        if self.extra_column:
            out.append((self.extra_column, pa.string()))
        return out

    def check_view_type(self, view_type: str, stream: str) -> None:
        """Refuse a stream whose records lack the image inserts and updates need."""
        if view_type not in VIEW_TYPES_WITH_NEW_IMAGE:
            raise SetupError(
                f"{self.table}: stream {stream} has StreamViewType {view_type}, whose INSERT and MODIFY "
                "records carry no NewImage; set the table's stream to NEW_AND_OLD_IMAGES (or NEW_IMAGE)"
            )

    def change(self, record: dict, where: str) -> Change:
        """The change one stream record stands for; `where` names shard and sequence number."""
        name = record.get("eventName")
        if name not in OPS:
            raise RecordError(f"{self.table}: record {where}: eventName {name!r} is not INSERT, MODIFY or REMOVE")
        body = record["dynamodb"]
        op = OPS[name]
        if op == "D":
            image = body.get("OldImage") or body.get("Keys")
        else:
            image = body.get("NewImage")
            if image is None:
                raise SetupError(
                    f"{self.table}: record {where} ({name}) has no NewImage: the stream's view type "
                    f"{body.get('StreamViewType')} lacks it; use NEW_AND_OLD_IMAGES"
                )
        if not image:
            raise RecordError(f"{self.table}: record {where} ({name}) has neither an image nor Keys")
        when = body.get("ApproximateCreationDateTime")
        if isinstance(when, (int, float, Decimal)):
            when = datetime.fromtimestamp(float(when), UTC)
        if not isinstance(when, datetime):
            raise RecordError(f"{self.table}: record {where} has no ApproximateCreationDateTime")
        return Change(op=op, row=self.row(image, where), commit_ts=when.astimezone(UTC))

    def row(self, image: dict, where: str) -> dict:
        """Declared columns from an image (missing attributes are NULL), the rest as JSON."""
        row: dict[str, Any] = {}
        declared = {name for name, _ in self.columns}
        for name, kind in self.columns:
            attribute = image.get(name)
            if attribute is None:
                if name in self.key:
                    raise RecordError(f"{self.table}: record {where}: key attribute {name!r} is missing")
                row[name] = None
                continue
            row[name] = self._value(name, kind, attribute, where)
        extra = {k: v for k, v in image.items() if k not in declared}
        if extra:
            if not self.extra_column:
                raise RecordError(
                    f"{self.table}: record {where}: attribute(s) {', '.join(sorted(extra))} are not declared "
                    "columns and the table has no extra_attributes_column; declare them or set one"
                )
            row[self.extra_column] = (
                "{"
                + ",".join(
                    f"{json.dumps(k, ensure_ascii=False)}:{json_text(_deserializer.deserialize(v))}"
                    for k, v in sorted(extra.items())
                )
                + "}"
            )
        elif self.extra_column:
            row[self.extra_column] = None
        return row

    def _value(self, name: str, kind: str, attribute: dict, where: str) -> Any:
        arrow_type = arrow_type_for_mysql(kind)
        ((type_key, _),) = attribute.items()
        try:
            value = _deserializer.deserialize(attribute)
        except (TypeError, InvalidOperation, ArithmeticError) as error:
            raise RecordError(f"{self.table}: record {where}: attribute {name!r}: {error}") from error

        def refuse(why: str) -> RecordError:
            return RecordError(
                f"{self.table}: record {where}: attribute {name!r} ({type_key}) cannot be held exactly "
                f"by column {name} {kind}: {why}"
            )

        if value is None:
            return None
        if pa.types.is_string(arrow_type):
            if type_key == "S":
                return value
            if type_key in ("SS", "NS", "BS", "L", "M", "N", "BOOL"):
                return json_text(value)
            raise refuse("binary into a text column")
        if pa.types.is_binary(arrow_type):
            if type_key == "B":
                return bytes(value.value if isinstance(value, Binary) else value)
            raise refuse("only B values go into a binary column")
        if pa.types.is_integer(arrow_type):
            if type_key == "BOOL":
                return int(value)
            if type_key != "N" or value != value.to_integral_value():
                raise refuse("not an integer")
            low, high = _INT_RANGES[arrow_type]
            if not low <= value <= high:
                raise refuse("out of range")
            return int(value)
        if pa.types.is_decimal(arrow_type):
            if type_key != "N":
                raise refuse("not a number")
            exponent = value.as_tuple().exponent
            scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            digits = len(value.as_tuple().digits) + max(0, exponent if isinstance(exponent, int) else 0)
            if scale > arrow_type.scale and value != value.quantize(Decimal(1).scaleb(-arrow_type.scale)):
                raise refuse(f"more than {arrow_type.scale} decimal places")
            if digits - scale > arrow_type.precision - arrow_type.scale:
                raise refuse(f"more than {arrow_type.precision - arrow_type.scale} integer digits")
            return value
        if pa.types.is_floating(arrow_type):
            if type_key != "N":
                raise refuse("not a number")
            as_float = float(value)
            if pa.types.is_float32(arrow_type):
                import numpy as np

                as_float = float(np.float32(as_float))
            if Decimal(as_float) != value:
                raise refuse("not exactly a binary floating-point value")
            return as_float
        if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
            if type_key != "S":
                raise refuse("dates and times are read from ISO 8601 strings")
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError as error:
                raise refuse(str(error)) from error
            if pa.types.is_date(arrow_type):
                if parsed.time() != datetime.min.time() or parsed.tzinfo:
                    raise refuse("not a plain date")
                return date(parsed.year, parsed.month, parsed.day)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        raise refuse(f"no conversion to {arrow_type}")


def json_text(value: Any) -> str:
    """Deserialized DynamoDB value as JSON: sets sorted, numbers digit for digit, bytes as base64."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value == value.to_integral_value() or abs(value.adjusted()) < 30 else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (Binary, bytes, bytearray)):
        raw = value.value if isinstance(value, Binary) else bytes(value)
        return json.dumps(base64.b64encode(raw).decode("ascii"))
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{json_text(v)}" for k, v in sorted(value.items()))
            + "}"
        )
    if isinstance(value, set):
        return (
            "[" + ",".join(sorted(json_text(v) for v in value)) + "]"
            if not value or not all(isinstance(v, Decimal) for v in value)
            else "[" + ",".join(json_text(v) for v in sorted(value)) + "]"
        )
    if isinstance(value, list):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    raise TypeError(f"no JSON form for {type(value).__name__}")
