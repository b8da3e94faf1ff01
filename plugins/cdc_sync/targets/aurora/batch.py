"""Aurora as a target, as plain functions: what it has finished, load one table's batch.

DMS change files are merged (aurora.loader), Firehose objects appended (aurora.append).
Planning is shared with the BigQuery flow (listing, watermarks); the Aurora ledger decides
what is applied, so the same batch can feed BigQuery and Aurora at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from cdc_sync.config import Pipeline
from cdc_sync.errors import SetupError
from cdc_sync.mysql_catalog import table_exists
from cdc_sync.planning import FinishedCheck
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.aurora.append import AuroraAppendLoader
from cdc_sync.targets.aurora.loader import AuroraLoaderBase, AuroraMergeLoader


class AuroraDatabaseMissing(SetupError):
    """The target database of a pipeline does not exist: cdc-sync creates tables, not databases."""


def checked_connect(pipeline: Pipeline, connect: Callable) -> Callable:
    """Wrap `connect` so that "Unknown database" says what to do.

    The server answers 1049 at connect time when the connection names the missing database."""
    import pymysql

    def opened():
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


def _require_database(conn, pipeline: Pipeline) -> None:
    assert pipeline.aurora is not None
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (pipeline.aurora.database,))
        if cur.fetchone() is None:
            raise _database_missing(pipeline)


def finished_in_aurora(pipeline: Pipeline, connect: Callable) -> FinishedCheck:
    connect = checked_connect(pipeline, connect)

    def check(table_name: str, files: list[LandedObject], replay: set[str]) -> set[tuple[str, str]]:
        loader = AuroraLoaderBase(pipeline, pipeline.table(table_name), connect, None, Path("."))
        conn = connect()
        try:
            if not _ledger_exists(conn, pipeline):
                _require_database(conn, pipeline)
                return set()
            outcomes = loader.outcomes(conn, files)
        finally:
            conn.close()
        return {pair for pair, status in outcomes.items() if status == "loaded" or pair[0] not in replay}

    return check


def load_batch(
    pipeline: Pipeline, batch: dict, s3_client, connect: Callable, *, replay: bool = False, workdir: Path | None = None,
) -> LoadReport:
    table = pipeline.table(batch["table"])
    files = [LandedObject.from_dict(f) for f in batch["files"]]
    connect = checked_connect(pipeline, connect)
    conn = connect()
    try:
        _require_database(conn, pipeline)
    finally:
        conn.close()
    loader = AuroraAppendLoader if pipeline.source.kind == "firehose" else AuroraMergeLoader
    with tempfile.TemporaryDirectory(prefix="cdc-sync-aurora-", dir=workdir) as scratch:
        return loader(pipeline, table, connect, s3_client, Path(scratch)).load(
            files, replay_quarantined=replay
        )


def _ledger_exists(conn, pipeline: Pipeline) -> bool:
    assert pipeline.aurora is not None
    return table_exists(conn, pipeline.aurora.database, pipeline.aurora.ledger_table)
