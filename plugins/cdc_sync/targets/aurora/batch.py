"""Aurora as a target (targets.base.Target): what it has finished, load one table's batch.

DMS change files are merged (aurora.loader), Firehose objects appended (aurora.append).
Planning is shared with the BigQuery flow (listing, watermarks); the Aurora ledger decides
what is applied, so the same batch can feed BigQuery and Aurora at once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cdc_sync.config import Pipeline
from cdc_sync.errors import SetupError
from cdc_sync.planning import FinishedCheck
from cdc_sync.protocols import Connect, Connection, S3Client
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.aurora.append import AuroraAppendLoader
from cdc_sync.targets.aurora.ledger import LOADED, AuroraLedger
from cdc_sync.targets.aurora.loader import AuroraMergeLoader
from cdc_sync.targets.base import Target


class AuroraDatabaseMissing(SetupError):
    """The target database of a pipeline does not exist: cdc-sync creates tables, not databases."""


def checked_connect(pipeline: Pipeline, connect: Connect) -> Connect:
    """Wrap `connect` so that "Unknown database" says what to do.

    The server answers 1049 at connect time when the connection names the missing database."""
    import pymysql

    def opened() -> Connection:
        try:
            return connect()
        except pymysql.err.OperationalError as error:
            if error.args and error.args[0] == 1049:
                raise _database_missing(pipeline) from error
            raise

    return opened


def _database_missing(pipeline: Pipeline) -> AuroraDatabaseMissing:
    target = pipeline.aurora
    assert target is not None
    return AuroraDatabaseMissing(
        f"pipeline {pipeline.name}: the Aurora database `{target.database}` (targets.aurora.database, connection "
        f"`{target.mysql_conn_id}`) does not exist. cdc-sync creates its own tables there but not the "
        f"database ({target.mode} mode); create it once: CREATE DATABASE `{target.database}` CHARACTER SET utf8mb4;"
    )


def _require_database(conn: Connection, pipeline: Pipeline) -> None:
    assert pipeline.aurora is not None
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (pipeline.aurora.database,))
        if cur.fetchone() is None:
            raise _database_missing(pipeline)


class Aurora(Target):
    """Aurora MySQL as a pipeline's target: its ledger says what is finished; merge or append loads."""

    name = "aurora"

    def __init__(self, pipeline: Pipeline, connect: Connect):
        if pipeline.aurora is None:
            raise ValueError(f"pipeline {pipeline.name} has no Aurora target")
        super().__init__(pipeline)
        self.target = pipeline.aurora
        self.connect = checked_connect(pipeline, connect)

    def finished(self, table_name: str, files: list[LandedObject], replay: set[str]) -> set[tuple[str, str]]:
        ledger = AuroraLedger(self.target, self.pipeline.name, self.pipeline.table(table_name).qualified_name)
        conn = self.connect()
        try:
            if not ledger.exists(conn):
                _require_database(conn, self.pipeline)
                return set()
            outcomes = ledger.outcomes(conn, files)
        finally:
            conn.close()
        return {pair for pair, status in outcomes.items() if status == LOADED or pair[0] not in replay}

    def load_batch(
        self, batch: dict, s3_client: S3Client, *, replay: bool = False, workdir: Path | None = None
    ) -> LoadReport:
        table = self.pipeline.table(batch["table"])
        files = [LandedObject.from_dict(f) for f in batch["files"]]
        conn = self.connect()
        try:
            _require_database(conn, self.pipeline)
        finally:
            conn.close()
        loader = AuroraAppendLoader if self.pipeline.source.kind == "firehose" else AuroraMergeLoader
        with tempfile.TemporaryDirectory(prefix="cdc-sync-aurora-", dir=workdir) as scratch:
            return loader(self.pipeline, table, self.connect, s3_client, Path(scratch)).load(
                files, replay_quarantined=replay
            )


def finished_in_aurora(pipeline: Pipeline, connect: Connect) -> FinishedCheck:
    """What the pipeline's Aurora target has finished, as planning asks it (see Aurora.finished)."""
    return Aurora(pipeline, connect).finished


def load_batch(
    pipeline: Pipeline,
    batch: dict,
    s3_client: S3Client,
    connect: Connect,
    *,
    replay: bool = False,
    workdir: Path | None = None,
) -> LoadReport:
    """Load one table's batch into the pipeline's Aurora target (see Aurora.load_batch)."""
    return Aurora(pipeline, connect).load_batch(batch, s3_client, replay=replay, workdir=workdir)
