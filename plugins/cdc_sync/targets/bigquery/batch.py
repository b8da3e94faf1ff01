"""The DMS → BigQuery flow as plain functions: what BigQuery has finished, load one batch.

The DAG's tasks call these with clients built from Airflow connections; tests and the
benchmarks call them with clients of their own. Nothing here needs a scheduler.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from cdc_sync.config import Pipeline
from cdc_sync.planning import FinishedCheck
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.bigquery.ledger import LOADED, QUARANTINED, BigQueryLedger
from cdc_sync.targets.bigquery.loader import ChangelogLoader

log = logging.getLogger(__name__)
_warned_no_commit_ts: set[tuple[str, str]] = set()


def finished_in_bigquery(pipeline: Pipeline, bq_client) -> FinishedCheck:
    target = pipeline.bigquery
    assert target is not None
    ledger = BigQueryLedger(bq_client, target, pipeline.name)
    ledger_ready = _ledger_exists(bq_client, target)

    def check(table_name: str, files: list[LandedObject], replay: set[str]) -> set[tuple[str, str]]:
        if not ledger_ready:
            return set()
        state = ledger.current(table_name, [f.key for f in files])
        return {
            pair for pair, entry in state.items()
            if entry.status == LOADED or (entry.status == QUARANTINED and pair[0] not in replay)
        }

    return check


def load_batch(
    pipeline: Pipeline, batch: dict, s3_client, bq_client, *, replay: bool = False, workdir: Path | None = None,
) -> LoadReport:
    table = pipeline.table(batch["table"])
    files = [LandedObject.from_dict(f) for f in batch["files"]]
    if not table.commit_timestamp_column and (pipeline.name, table.qualified_name) not in _warned_no_commit_ts:
        _warned_no_commit_ts.add((pipeline.name, table.qualified_name))
        log.warning(
            "%s: no commit_timestamp_column; changes are ordered by file name and row only, so after a DMS "
            "task restart a replayed older change can win over a newer one. Set TimestampColumnName on the "
            "DMS endpoint and commit_timestamp_column in the pipeline config.", table.qualified_name,
        )
    with tempfile.TemporaryDirectory(prefix="cdc-sync-", dir=workdir) as scratch:
        return ChangelogLoader(pipeline, table, bq_client, s3_client, Path(scratch)).load(
            files, replay_quarantined=replay
        )


def _ledger_exists(bq_client, target) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        bq_client.get_table(f"{target.project}.{target.dataset}.{target.ledger_table}")
        return True
    except NotFound:
        return False
