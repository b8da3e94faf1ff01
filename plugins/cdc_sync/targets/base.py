"""The contract every target implements, and what their loaders do with landed objects alike.

A target (targets/<name>/batch.py) answers two questions for the DAG's tasks:
  `finished(table, files, replay)`  which (key, etag) of the listed objects it has decided
                                    (loaded, or quarantined and not to be replayed)
  `load_batch(batch, s3, ...)`      load one table's batch exactly once, a `LoadReport` of it
Its loader (`ObjectLoader`) fetches exactly the listed version of each object (a vanished one
is quarantined, a changed one left for the next run), reads its column types, and
quarantines what cannot be loaded as it is: the target's ledger records the reason, a marker
under the quarantine prefix says why, the report lists it, and the rest goes on.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from botocore.exceptions import ClientError

from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.errors import BadInput
from cdc_sync.protocols import S3Client
from cdc_sync.sources.change_files import ChangeFile, ChangeFileError
from cdc_sync.sources.column_types import ColumnType, column_type
from cdc_sync.sources.landed import LandedObject, LoadReport, download_exact, write_quarantine_marker

log = logging.getLogger(__name__)
_GONE = ("404", "NoSuchKey")
_CHANGED = ("412", "PreconditionFailed")


def what_is_wrong(error: BadInput) -> str:
    """The reason a quarantine records for bad input: the problem, without the object's key the marker names."""
    problem = getattr(error, "problem", None)
    return problem if isinstance(problem, str) else str(error)


class Target(ABC):
    """One target of a pipeline (Aurora MySQL, BigQuery): what it has finished, and loading a batch."""

    name: ClassVar[str]

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    @abstractmethod
    def finished(self, table_name: str, files: list[LandedObject], replay: set[str]) -> set[tuple[str, str]]:
        """The (key, etag) of `files` this target has loaded, or quarantined unless the key is in `replay`."""

    @abstractmethod
    def load_batch(
        self, batch: dict, s3_client: S3Client, *, replay: bool = False, workdir: Path | None = None
    ) -> LoadReport:
        """Load one table's batch ({"table": ..., "files": [LandedObject.to_dict(), ...]}) exactly once."""


class ObjectLoader(ABC):
    """What both targets' loaders do with landed objects: fetch the listed version, read types, quarantine."""

    target_name: ClassVar[str]

    def __init__(self, pipeline: Pipeline, table: TableSpec, s3_client: S3Client, workdir: Path):
        self.pipeline = pipeline
        self.table = table
        self.s3 = s3_client
        self.workdir = Path(workdir)

    @abstractmethod
    def _record_quarantine(self, f: LandedObject, reason: str, conn: Any) -> None:
        """Write the object's 'quarantined' outcome with the reason to the target's ledger."""

    def _quarantine(self, report: LoadReport, f: LandedObject, reason: str, conn: Any = None) -> None:
        """The object cannot be loaded as it is: ledger, report and marker say why; the rest goes on."""
        reason = reason.removeprefix(": ")
        self._record_quarantine(f, reason, conn)
        log.error(
            "%s: quarantined s3://%s/%s for %s: %s",
            self.table.qualified_name,
            self.pipeline.source.bucket,
            f.key,
            self.target_name,
            reason,
        )
        report.quarantined[f.key] = reason
        write_quarantine_marker(self.s3, self.pipeline, self.table, self.target_name, f, reason)

    def _fetch(self, f: LandedObject, path: Path, report: LoadReport, conn: Any = None) -> bool:
        """True when the listed version is on local disk at `path`.

        A vanished object is quarantined, a changed one left for a later run (it is listed
        again under its new ETag); any other S3 error fails the task (retried)."""
        try:
            download_exact(self.s3, self.pipeline.source.bucket, f, path)
            return True
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _GONE:
                self._quarantine(report, f, "object no longer exists in S3", conn)
            elif code in _CHANGED:
                log.warning(
                    "%s: s3://%s/%s changed since it was listed; its new version is loaded by a later run",
                    self.table.qualified_name,
                    self.pipeline.source.bucket,
                    f.key,
                )
                report.changed_since_listing.append(f.key)
            else:
                raise  # throttling, permissions, network: the task fails and retries; nothing quarantined
            return False

    @staticmethod
    def _column_types(change_file: ChangeFile) -> dict[str, ColumnType | None]:
        """The column type of each data column of a fetched file (None: only NULLs so far).

        Raises ChangeFileError (bad input) naming the column when a type cannot be declared."""
        types: dict[str, ColumnType | None] = {}
        for fld in change_file.data_schema():
            try:
                types[fld.name] = column_type(fld.type)
            except BadInput as error:
                raise ChangeFileError(change_file.key, f"column {fld.name}: {error}") from error
        return types
