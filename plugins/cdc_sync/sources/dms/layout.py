"""How AWS DMS names the files it writes to an S3 target, and what that means for listing.

Under `<prefix>/<schema>/<table>/` DMS writes
  * full-load files `LOAD00000001.parquet`, `LOAD00000002.parquet`, ... (numbered), and
  * CDC files `20261123-074501123.parquet` (UTC time of the file, to the millisecond),
    optionally inside date folders when DatePartitionEnabled is set: `2026/11/23/` by
    default, or as DatePartitionSequence (YYYYMMDD, YYYYMMDDHH, YYYYMM) and
    DatePartitionDelimiter (SLASH, DASH, UNDERSCORE, NONE) lay them out — `2026-11-23-07/`,
    `202611/`. Those sort by time, which listing from a watermark needs; MMYYYYDD and
    DDMMYYYY do not, and their keys are not recognised (planning warns about them).

Digits sort before letters, so in S3's lexicographic order every CDC key of a table comes
before its first LOAD key. Listing therefore keeps two cursors per table: one over the
LOAD files (Prefix `.../LOAD`) and one over the CDC files that stops at the LOAD region.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

_EXTENSIONS = {"parquet": r"\.parquet", "csv": r"\.csv(\.gz)?"}
_CDC_NAME = re.compile(r"^(?P<ts>\d{8}-\d{9})")
REPAIR_SUFFIX = r"-repair-[0-9a-f]{8}"
# year, month[, day[, hour]], one delimiter throughout (none for NONE), then the file's "/"
_DATE_FOLDERS = re.compile(r"^(?P<date>\d{4}(?P<sep>[/_-]?)\d{2}(?:(?P=sep)\d{2}(?:(?P=sep)\d{2})?)?)/")
_FOLDER_FIELDS = ("%Y", "%m", "%d", "%H")


class FileKind(StrEnum):
    FULL_LOAD = "full_load"
    CDC = "cdc"

    @property
    def phase(self) -> int:
        """Every full-load row sorts before every CDC change of its table."""
        return 0 if self is FileKind.FULL_LOAD else 1


def classify(key: str, table_prefix: str, file_format: str = "parquet") -> FileKind | None:
    """FULL_LOAD, CDC, or None for anything else under the prefix (manifests, other formats)."""
    if not key.startswith(table_prefix):
        return None
    relative = key[len(table_prefix) :]
    if match := _DATE_FOLDERS.match(relative):
        relative = relative[match.end() :]
    if "/" in relative:
        return None
    extension = _EXTENSIONS[file_format]
    if re.fullmatch(rf"LOAD[0-9A-Fa-f]+{extension}", relative):
        return FileKind.FULL_LOAD
    # cdc-sync's own repair files carry a suffix so that they can never replace a DMS file
    if re.fullmatch(rf"\d{{8}}-\d{{9}}({REPAIR_SUFFIX})?{extension}", relative):
        return FileKind.CDC
    return None


def load_region_start(table_prefix: str) -> str:
    """First key of the LOAD region of a table (CDC listing stops here)."""
    return f"{table_prefix}LOAD"


def time_key(table_prefix: str, when: datetime, dated_folders: str | None = None, zone: tzinfo = UTC) -> str:
    """The key prefix a CDC file written at `when` starts with (for StartAfter / StopAt).

    `dated_folders` is None for the flat layout, else the date folder's strftime format as
    dated_folders_of gives it (DatePartitionEnabled), e.g. "%Y/%m/%d". `zone` is the one DMS
    writes names in: UTC, or the endpoint's DatePartitionTimezone."""
    when = when.astimezone(zone)
    stamp = when.strftime("%Y%m%d-%H%M%S") + f"{when.microsecond // 1000:03d}"
    if dated_folders:
        return f"{table_prefix}{when.strftime(dated_folders)}/{stamp}"
    return f"{table_prefix}{stamp}"


def dated_folders_of(key: str, table_prefix: str) -> str | None:
    """The strftime format of the DMS date folder `key` sits in ("%Y/%m/%d", "%Y-%m-%d-%H",
    "%Y%m", …), or None when it sits in none."""
    match = _DATE_FOLDERS.match(key[len(table_prefix) :]) if key.startswith(table_prefix) else None
    if not match:
        return None
    fields = 1 + len(re.sub(r"\D", "", match["date"][4:])) // 2  # the year, then two digits a field
    return match["sep"].join(_FOLDER_FIELDS[:fields])


def grace_start_after(cdc_after: str | None, table_prefix: str, grace: timedelta, zone: tzinfo = UTC) -> str | None:
    """StartAfter for the CDC cursor: the watermark moved back by `grace`.

    A file that lands late with an older name than the watermark is still found as long
    as it is less than `grace` late; the ledger drops the files already loaded. Keys that
    do not follow DMS naming are used as they are.
    """
    if not cdc_after or not grace:
        return cdc_after
    relative = cdc_after[len(table_prefix) :] if cdc_after.startswith(table_prefix) else None
    if relative is None:
        return cdc_after
    folders = _DATE_FOLDERS.match(relative)
    name = relative[folders.end() :] if folders else relative
    match = _CDC_NAME.match(name)
    if not match:
        return cdc_after
    named = datetime.strptime(match["ts"][:15], "%Y%m%d-%H%M%S") + timedelta(milliseconds=int(match["ts"][15:]))
    # in a zone with daylight saving, the hour repeated in autumn names files that sort before
    # ones written an hour earlier: the grace reaches back over that hour too
    return time_key(
        table_prefix,
        named.replace(tzinfo=zone).astimezone(UTC) - grace - _repeated_hour(zone),
        dated_folders_of(cdc_after, table_prefix),
        zone,
    )


def _repeated_hour(zone: tzinfo) -> timedelta:
    """How far names written in `zone` can step back (its daylight-saving shift, if any)."""
    year = datetime.now(UTC).year
    offsets = [datetime(year, month, 1, tzinfo=UTC).astimezone(zone).utcoffset() or timedelta(0) for month in (1, 7)]
    return abs(offsets[1] - offsets[0])
