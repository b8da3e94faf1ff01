"""Aurora as a target, as plain functions: what it has finished, load one table's batch.

DMS change files are merged (aurora.loader), Firehose objects appended (aurora.append).
Planning is shared with the BigQuery flow (listing, watermarks); the Aurora ledger decides
what is applied, so the same batch can feed BigQuery and Aurora at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from cdc_sync.aurora.append import AuroraAppendLoader
from cdc_sync.aurora.loader import AuroraLoaderBase, AuroraMergeLoader
from cdc_sync.config import Pipeline
from cdc_sync.dms.layout import DmsFile
from cdc_sync.landed import LoadReport
from cdc_sync.mysql_catalog import table_exists
from cdc_sync.planning import FinishedCheck


def finished_in_aurora(pipeline: Pipeline, connect: Callable) -> FinishedCheck:
    def check(table_name: str, files: list[DmsFile], replay: set[str]) -> set[tuple[str, str]]:
        loader = AuroraLoaderBase(pipeline, pipeline.table(table_name), connect, None, Path("."))
        conn = connect()
        try:
            if not _ledger_exists(conn, pipeline):
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
    files = [DmsFile.from_dict(f) for f in batch["files"]]
    loader = AuroraAppendLoader if pipeline.source.kind == "firehose" else AuroraMergeLoader
    with tempfile.TemporaryDirectory(prefix="cdc-sync-aurora-", dir=workdir) as scratch:
        return loader(pipeline, table, connect, s3_client, Path(scratch)).load(
            files, replay_quarantined=replay
        )


def _ledger_exists(conn, pipeline: Pipeline) -> bool:
    assert pipeline.aurora is not None
    return table_exists(conn, pipeline.aurora.database, pipeline.aurora.ledger_table)
