"""Landed objects as the loaders handle them: what was listed, exact downloads, quarantine markers, reports."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.protocols import S3Client

log = logging.getLogger(__name__)
DOWNLOAD_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, order=True)
class LandedObject:
    """One landed object as it was listed. Ordered as it must be applied: full load (phase 0) first, then by key."""

    phase: int
    key: str
    etag: str
    size: int

    def to_dict(self) -> dict:
        return {"key": self.key, "etag": self.etag, "size": self.size, "phase": self.phase}

    @classmethod
    def from_dict(cls, data: dict) -> LandedObject:
        return cls(phase=int(data["phase"]), key=data["key"], etag=data["etag"], size=int(data["size"]))


@dataclass
class LoadReport:
    """What one load of one table's batch did with each object, for the task's result and the watermark."""

    table: str
    target: str = "bigquery"
    job_id: str | None = None
    loaded: dict[str, int] = field(default_factory=dict)  # key -> rows
    quarantined: dict[str, str] = field(default_factory=dict)  # key -> reason
    already_loaded: list[str] = field(default_factory=list)
    previously_quarantined: list[str] = field(default_factory=list)
    changed_since_listing: list[str] = field(default_factory=list)
    database_seconds: float = 0.0  # time spent in the target database (Aurora loads)

    @property
    def handled_keys(self) -> list[str]:
        """Keys the watermark may pass: everything decided, up to the first file not yet decided."""
        handled = [*self.loaded, *self.quarantined, *self.already_loaded, *self.previously_quarantined]
        if self.changed_since_listing:
            first_open = min(self.changed_since_listing)
            handled = [k for k in handled if k < first_open]
        return handled

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "target": self.target,
            "handled_keys": self.handled_keys,
            "job_id": self.job_id,
            "loaded": self.loaded,
            "quarantined": self.quarantined,
            "already_loaded": self.already_loaded,
            "previously_quarantined": self.previously_quarantined,
            "changed_since_listing": self.changed_since_listing,
        }


def download_exact(s3_client: S3Client, bucket: str, f: LandedObject, path: Path) -> None:
    """Stream the object to local disk in fixed-size chunks.

    IfMatch: exactly the version that was listed, and that the ledger will name, is loaded
    (412 if it changed since)."""
    response = s3_client.get_object(Bucket=bucket, Key=f.key, IfMatch=f.etag)
    body = response["Body"]
    with path.open("wb") as out:
        while chunk := body.read(DOWNLOAD_CHUNK_BYTES):
            out.write(chunk)


def write_quarantine_marker(
    s3_client: S3Client,
    pipeline: Pipeline,
    table: TableSpec,
    target: str,
    f: LandedObject,
    reason: str,
) -> None:
    """The file stays where it landed; a marker under the quarantine prefix says why."""
    source = pipeline.source
    marker = f"{source.quarantine_prefix.rstrip('/')}/{pipeline.name}/{f.key}.json"
    if target != "bigquery":
        marker = f"{source.quarantine_prefix.rstrip('/')}/{pipeline.name}/{target}/{f.key}.json"
    body = json.dumps(
        {
            "pipeline": pipeline.name,
            "table": table.qualified_name,
            "target": target,
            "bucket": source.bucket,
            "key": f.key,
            "etag": f.etag,
            "reason": reason,
            "quarantined_at": datetime.now(UTC).isoformat(),
        },
        indent=2,
    )
    try:
        s3_client.put_object(Bucket=source.bucket, Key=marker, Body=body.encode(), ContentType="application/json")
    except Exception as error:  # noqa: BLE001 - the ledger row is the record; the marker is a convenience
        log.warning("could not write quarantine marker s3://%s/%s: %s", source.bucket, marker, error)
