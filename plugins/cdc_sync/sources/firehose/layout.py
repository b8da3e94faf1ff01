"""How Kinesis Data Firehose names the objects it delivers to S3.

`<evaluated prefix><stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>[.ext]`. The prefix is the
delivery stream's `Prefix` (or `ErrorOutputPrefix`) as configured there, expressions and
all: `!{timestamp:<Java DateTimeFormatter>}` is evaluated from the oldest record's arrival
time, `!{firehose:error-output-type}` and `!{firehose:random-string}` as Firehose does. A
prefix without a timestamp expression gets Firehose's default hour folders appended
(`yyyy/MM/dd/HH/`), so `processed/` delivers to `processed/YYYY/MM/DD/HH/…`.

Keys sort by delivery time as long as the time folders run from the year down, so one
StartAfter cursor under the prefix's static part lists what is new; the late-object grace
goes back whole time folders.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from cdc_sync.errors import SetupError

_SUFFIX = (
    r"(?P<stream>[A-Za-z0-9_.-]+)-\d+-"
    r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-fA-F-]+(\.[a-z0-9]+)?$"
)
_EXPRESSION = re.compile(r"!\{([A-Za-z]+):([^}]*)\}")
# Java DateTimeFormatter letters Firehose users put in folders, as strftime and as a field
_TIME_LETTERS = {"yyyy": ("%Y", "year"), "MM": ("%m", "month"), "dd": ("%d", "day"), "HH": ("%H", "hour")}
_FIELD_ORDER = ["year", "month", "day", "hour"]
_FIREHOSE_VALUES = {"error-output-type": r"[A-Za-z0-9-]+", "random-string": r"[A-Za-z0-9]+"}
DEFAULT_TIME_FOLDERS = "!{timestamp:yyyy/MM/dd/HH}/"


class PrefixError(SetupError, ValueError):
    """A delivery prefix this project cannot list in time order."""


@dataclass(frozen=True)
class DeliveryLayout:
    listing_prefix: str  # the static part before the first expression: ListObjectsV2's Prefix
    pattern: re.Pattern  # a whole delivered object's key
    parts: tuple[tuple[str, str], ...]  # ("text", literal) | ("time", strftime) | ("firehose", value)

    def folder_time(self, key: str) -> datetime | None:
        """When the key's time folders start (UTC or the stream's CustomTimeZone, as named)."""
        match = self.pattern.match(key)
        if match is None or match.groupdict().get("year") is None:
            return None
        fields = {name: int(value) for name, value in match.groupdict().items() if name in _FIELD_ORDER and value}
        return datetime(fields["year"], fields.get("month", 1), fields.get("day", 1), fields.get("hour", 0), tzinfo=UTC)

    def folders_for(self, when: datetime) -> str | None:
        """The evaluated prefix of objects delivered at `when`; None when the prefix holds a
        value only Firehose knows (`random-string`, `error-output-type`)."""
        if any(kind == "firehose" for kind, _ in self.parts):
            return None
        return "".join(when.strftime(value) if kind == "time" else value for kind, value in self.parts)


@lru_cache(maxsize=64)
def delivery_layout(prefix: str) -> DeliveryLayout:
    """The layout a delivery stream with this `Prefix` writes; PrefixError says why a
    prefix cannot be followed."""
    if "!{timestamp:" not in prefix:
        prefix += DEFAULT_TIME_FOLDERS
    parts: list[tuple[str, str]] = []
    regex: list[str] = []
    fields_in_order: list[str] = []
    position = 0
    for expression in _EXPRESSION.finditer(prefix):
        literal = prefix[position : expression.start()]
        if literal:
            parts.append(("text", literal))
            regex.append(re.escape(literal))
        namespace, value = expression.group(1), expression.group(2)
        if namespace == "timestamp":
            strftime, time_regex = _timestamp(value, fields_in_order)
            parts.append(("time", strftime))
            regex.append(time_regex)
        elif namespace == "firehose" and value in _FIREHOSE_VALUES:
            parts.append(("firehose", value))
            regex.append(_FIREHOSE_VALUES[value])
        elif namespace in ("partitionKeyFromQuery", "partitionKeyFromLambda"):
            raise PrefixError(
                f"{expression.group(0)}: with dynamic partitioning objects do not sort by delivery "
                "time under one prefix; configure one pipeline per partition value, with the value "
                "written into its prefix"
            )
        else:
            raise PrefixError(
                f"{expression.group(0)}: unknown expression (Firehose knows !{{timestamp:…}}, "
                "!{firehose:error-output-type} and !{firehose:random-string})"
            )
        position = expression.end()
    if "!{" in prefix[position:]:
        raise PrefixError(f"{prefix[position:]!r}: an expression that is not closed")
    if prefix[position:]:
        parts.append(("text", prefix[position:]))
        regex.append(re.escape(prefix[position:]))
    distinct = list(dict.fromkeys(fields_in_order))
    if distinct != _FIELD_ORDER[: len(distinct)]:
        raise PrefixError(
            "the timestamp expressions must run from the year down (yyyy, then MM, dd, HH), so that "
            f"keys sort by delivery time; this prefix has {', '.join(distinct)}"
        )
    static = prefix[: prefix.index("!{")]
    return DeliveryLayout(static, re.compile("^" + "".join(regex) + _SUFFIX), tuple(parts))


def _timestamp(value: str, fields_in_order: list[str]) -> tuple[str, str]:
    """One `!{timestamp:…}` value as strftime and as a regex. A field's first appearance in
    the prefix is a named group; every timestamp expression evaluates the same instant, so
    later ones only need to match."""
    strftime: list[str] = []
    regex: list[str] = []
    rest = value
    while rest:
        letters = next((t for t in _TIME_LETTERS if rest.startswith(t)), None)
        if letters:
            code, name = _TIME_LETTERS[letters]
            digits = rf"\d{{{len(letters)}}}"
            strftime.append(code)
            regex.append(digits if name in fields_in_order else f"(?P<{name}>{digits})")
            fields_in_order.append(name)
            rest = rest[len(letters) :]
        elif rest[0].isalpha() or rest[0] == "'":
            raise PrefixError(
                f"!{{timestamp:{value}}}: only yyyy, MM, dd and HH (and separators) are followed here, not {rest[0]!r}"
            )
        else:
            strftime.append(rest[0].replace("%", "%%"))
            regex.append(re.escape(rest[0]))
            rest = rest[1:]
    return "".join(strftime), "".join(regex)


def is_delivered_object(key: str, prefix: str, stream: str | None = None) -> bool:
    match = delivery_layout(prefix).pattern.match(key)  # anchored: it starts with the static part
    if match is None:
        return False
    return stream is None or match["stream"] == stream


def grace_start_after(after: str | None, prefix: str, grace: timedelta) -> str | None:
    """StartAfter moved back to the time folder `grace` before the watermark's folder."""
    if not after or not grace:
        return after
    layout = delivery_layout(prefix)
    folder_time = layout.folder_time(after)
    if folder_time is None:
        return after
    # the evaluated prefix sorts before every key inside its folder
    return layout.folders_for(folder_time - grace) or after
