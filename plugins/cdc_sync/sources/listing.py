"""Incremental S3 listing: cost grows with new files, not with a prefix's history.

A `Cursor` is one ListObjectsV2 walk: a Prefix, a StartAfter taken from the remembered
watermark, and an optional StopAt key where the walk ends early. The same cursors drive
the synchronous listing (boto3, in tasks) and the asynchronous one (aiobotocore, in the
trigger), so both cost the same: one call per cursor when nothing new has landed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo

from cdc_sync.sources.dms.layout import FileKind, classify, grace_start_after, load_region_start, time_key
from cdc_sync.sources.firehose.layout import delivery_layout, is_delivered_object
from cdc_sync.sources.firehose.layout import grace_start_after as firehose_grace_start
from cdc_sync.sources.landed import LandedObject

FIREHOSE = "firehose"  # the file_format of a Firehose source


@dataclass(frozen=True)
class Cursor:
    table: str  # qualified name `<schema>.<table>`
    prefix: str
    start_after: str | None = None
    stop_at: str | None = None
    # keys this walk passes over as not new: the handled files inside the late-file grace
    # (the sensor's walk; the planner's walks skip nothing, its ledgers decide)
    skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "skip", tuple(sorted(self.skip)))  # a list after serialisation

    def skips(self, key: str) -> bool:
        at = bisect.bisect_left(self.skip, key)
        return at < len(self.skip) and self.skip[at] == key

    def request(self, bucket: str, continuation: str | None, page_size: int) -> dict:
        params: dict = {"Bucket": bucket, "Prefix": self.prefix, "MaxKeys": page_size}
        if continuation:
            params["ContinuationToken"] = continuation
        elif self.start_after:
            params["StartAfter"] = self.start_after
        return params

    def stops_at(self, key: str) -> bool:
        return self.stop_at is not None and key >= self.stop_at


@dataclass(frozen=True)
class Watermark:
    """Last keys handed to a load, per cursor. Empty on the first run."""

    cdc_after: str | None = None
    load_after: str | None = None
    # CDC keys at or before cdc_after, inside the late-file grace, that every target handled:
    # the sensor lists the grace too and wakes for any other key there (a late file)
    recent: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"cdc_after": self.cdc_after, "load_after": self.load_after, "recent": list(self.recent)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "Watermark":
        data = data or {}
        return cls(
            cdc_after=data.get("cdc_after"), load_after=data.get("load_after"), recent=tuple(data.get("recent") or ())
        )

    def advanced(
        self, table_prefix: str, keys: list[str], grace_floor: Callable[[str | None], str | None] | None = None
    ) -> "Watermark":
        """Move the marks past `keys`.

        With `grace_floor` (the grace walk's StartAfter for a CDC watermark), the handled CDC
        keys inside the grace are remembered in `recent`."""
        load_region = load_region_start(table_prefix)
        load_keys = [k for k in keys if k.startswith(load_region)]
        cdc_keys = [k for k in keys if not k.startswith(load_region)]
        cdc_after = max([k for k in [self.cdc_after, *cdc_keys] if k], default=None)
        recent: tuple[str, ...] = ()
        if grace_floor is not None and cdc_after is not None:
            floor = grace_floor(cdc_after)
            recent = tuple(
                sorted(k for k in {*self.recent, *cdc_keys} if (floor is None or k > floor) and k <= cdc_after)
            )
        return Watermark(
            cdc_after=cdc_after,
            load_after=max([k for k in [self.load_after, *load_keys] if k], default=None),
            recent=recent,
        )

    def remembering(self, keys: Iterable[str]) -> "Watermark":
        """Add handled CDC `keys` inside the grace to `recent`, marks unchanged.

        Keys past cdc_after are left for advance_watermarks."""
        if self.cdc_after is None:
            return self
        added = {k for k in keys if k <= self.cdc_after}
        return replace(self, recent=tuple(sorted({*self.recent, *added})))


def table_cursors(
    table: str,
    table_prefix: str,
    watermark: Watermark,
    grace: timedelta = timedelta(0),
    file_format: str = "parquet",
    zone: tzinfo = UTC,
    *,
    skip_recent: bool = False,
) -> list[Cursor]:
    """The two walks of one DMS table folder (see dms.layout for why two); Firehose
    delivers in time order under one prefix, so there it is one walk. The CDC walk starts
    `grace` before the watermark; with `skip_recent` (the sensor) it passes over the keys
    there that every target already handled, so only new and late files count."""
    skip = watermark.recent if skip_recent else ()
    floor = grace_floor(table_prefix, grace, file_format, zone)(watermark.cdc_after)
    if file_format == FIREHOSE:
        return [Cursor(table, delivery_layout(table_prefix).listing_prefix, start_after=floor, skip=skip)]
    load_region = load_region_start(table_prefix)
    return [
        Cursor(table, load_region, start_after=watermark.load_after),
        Cursor(table, table_prefix, stop_at=load_region, start_after=floor, skip=skip),
    ]


def grace_floor(
    table_prefix: str, grace: timedelta, file_format: str, zone: tzinfo = UTC
) -> Callable[[str | None], str | None]:
    """StartAfter of the CDC walk for a CDC watermark: the watermark moved back by `grace`."""
    if file_format == FIREHOSE:
        return lambda cdc_after: firehose_grace_start(cdc_after, table_prefix, grace)
    return lambda cdc_after: grace_start_after(cdc_after, table_prefix, grace, zone)


def window_cursors(
    table: str,
    table_prefix: str,
    start: datetime,
    end: datetime,
    dated_folders: str | None,
    grace: timedelta = timedelta(0),
    zone: tzinfo = UTC,
) -> list[Cursor]:
    """A backfill run's walks: every LOAD file, and the CDC files written in [start − grace, end)."""
    load_region = load_region_start(table_prefix)
    return [
        Cursor(table, load_region),
        Cursor(
            table,
            table_prefix,
            start_after=time_key(table_prefix, start - grace, dated_folders, zone),
            stop_at=min(load_region, time_key(table_prefix, end, dated_folders, zone)),
        ),
    ]


def firehose_window_cursor(table: str, table_prefix: str, start: datetime, end: datetime) -> Cursor:
    """A backfill run's walk of a Firehose prefix: the time folders of [start, end).

    A folder that starts before `end` is listed whole, so with folders coarser than the
    schedule (daily folders, hourly runs) a run takes its whole folder; the ledgers make a
    file that two runs list load once."""
    layout = delivery_layout(table_prefix)
    first, last = layout.folders_for(start), layout.folders_for(end)
    if first is None or last is None:  # a prefix with a value only Firehose knows: list it all
        return Cursor(table, layout.listing_prefix)
    # `end` on a folder boundary (the usual case): stop at its folder; otherwise list through it
    ends_on_boundary = last != layout.folders_for(end - timedelta(microseconds=1))
    return Cursor(table, layout.listing_prefix, start_after=first, stop_at=last if ends_on_boundary else None)


def in_firehose_window(key: str, table_prefix: str, start: datetime, end: datetime) -> bool:
    """Whether a delivered object's time folder starts inside [start, end) or holds `start`."""
    folder = delivery_layout(table_prefix).folder_time(key)
    return folder is None or folder < end


def accept(
    page_items: list[dict], cursor: Cursor, table_prefix: str, file_format: str, stats: ListingStats | None = None
) -> tuple[list[LandedObject], bool]:
    """Turn one ListObjectsV2 page into DMS files; the flag says the walk reached StopAt.
    Objects not named as the source names its files are counted in `stats`."""
    files: list[LandedObject] = []
    for item in page_items:
        key = item["Key"]
        if cursor.stops_at(key):
            return files, True
        if cursor.skip and cursor.skips(key):
            continue
        if file_format == FIREHOSE:
            phase = FileKind.CDC.phase if is_delivered_object(key, table_prefix) else None
        else:
            kind = classify(key, table_prefix, file_format)
            phase = kind.phase if kind is not None else None
        if phase is not None:
            files.append(LandedObject(phase=phase, key=key, etag=item["ETag"].strip('"'), size=int(item["Size"])))
        elif stats is not None and not key.endswith("/"):  # a "folder" made in the console is no file
            stats.unrecognised += 1
            if len(stats.unrecognised_examples) < 3:
                stats.unrecognised_examples.append(key)
    return files, False


@dataclass
class ListingStats:
    calls: int = 0
    unrecognised: int = 0  # objects under the prefix not named as the source's files
    unrecognised_examples: list[str] = field(default_factory=list)


def list_new_files(
    s3_client,
    bucket: str,
    cursor: Cursor,
    table_prefix: str,
    file_format: str,
    *,
    page_size: int = 1000,
    stats: ListingStats | None = None,
) -> Iterator[LandedObject]:
    """Walk one cursor with a boto3 S3 client."""
    continuation = None
    while True:
        page = s3_client.list_objects_v2(**cursor.request(bucket, continuation, page_size))
        if stats is not None:
            stats.calls += 1
        files, stopped = accept(page.get("Contents", []), cursor, table_prefix, file_format, stats)
        yield from files
        continuation = page.get("NextContinuationToken")
        if stopped or not page.get("IsTruncated") or not continuation:
            return


async def any_new_file(
    async_client, bucket: str, cursor: Cursor, table_prefix: str, file_format: str, page_size: int = 1000
) -> LandedObject | None:
    """Walk one cursor with an aiobotocore client until the first new DMS file."""
    continuation = None
    while True:
        page = await async_client.list_objects_v2(**cursor.request(bucket, continuation, page_size))
        files, stopped = accept(page.get("Contents", []), cursor, table_prefix, file_format)
        if files:
            return files[0]
        continuation = page.get("NextContinuationToken")
        if stopped or not page.get("IsTruncated") or not continuation:
            return None
