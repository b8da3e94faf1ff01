"""BigQuery as a target (targets.base.Target): what it has finished, load one table's batch.

The DAG's tasks call these with clients built from Airflow connections; tests and the
benchmarks call them with clients of their own. Nothing here needs a scheduler.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from google.cloud import bigquery

from cdc_sync.config import BigQueryTarget, Pipeline
from cdc_sync.planning import FinishedCheck
from cdc_sync.protocols import S3Client
from cdc_sync.sources.landed import LandedObject, LoadReport
from cdc_sync.targets.base import Target
from cdc_sync.targets.bigquery.ledger import LOADED, QUARANTINED, BigQueryLedger
from cdc_sync.targets.bigquery.loader import ChangelogLoader

log = logging.getLogger(__name__)
_warned_no_commit_ts: set[tuple[str, str]] = set()


class BigQuery(Target):
    """BigQuery as a pipeline's target: its ledger says what is finished; loads append to changelogs."""

    name = "bigquery"

    def __init__(self, pipeline: Pipeline, bq_client: bigquery.Client):
        if pipeline.bigquery is None:
            raise ValueError(f"pipeline {pipeline.name} has no BigQuery target")
        super().__init__(pipeline)
        self.target = pipeline.bigquery
        self.client = bq_client
        self.ledger = BigQueryLedger(bq_client, self.target, pipeline.name)
        self._ledger_ready = False

    def finished(self, table_name: str, files: list[LandedObject], replay: set[str]) -> set[tuple[str, str]]:
        if not self._ledger_ready:
            self._ledger_ready = _ledger_exists(self.client, self.target)
            if not self._ledger_ready:
                return set()
        state = self.ledger.current(table_name, [f.key for f in files])
        return {
            pair
            for pair, entry in state.items()
            if entry.status == LOADED or (entry.status == QUARANTINED and pair[0] not in replay)
        }

    def load_batch(
        self, batch: dict, s3_client: S3Client, *, replay: bool = False, workdir: Path | None = None
    ) -> LoadReport:
        table = self.pipeline.table(batch["table"])
        files = [LandedObject.from_dict(f) for f in batch["files"]]
        if not table.commit_timestamp_column and (self.pipeline.name, table.qualified_name) not in _warned_no_commit_ts:
            _warned_no_commit_ts.add((self.pipeline.name, table.qualified_name))
            log.warning(
                "%s: no commit_timestamp_column; changes are ordered by file name and row only, so after a DMS "
                "task restart a replayed older change can win over a newer one. Set TimestampColumnName on the "
                "DMS endpoint and commit_timestamp_column in the pipeline config.",
                table.qualified_name,
            )
        with tempfile.TemporaryDirectory(prefix="cdc-sync-", dir=workdir) as scratch:
            return ChangelogLoader(self.pipeline, table, self.client, s3_client, Path(scratch)).load(
                files, replay_quarantined=replay
            )


def finished_in_bigquery(pipeline: Pipeline, bq_client: bigquery.Client) -> FinishedCheck:
    """What the pipeline's BigQuery target has finished, as planning asks it (see BigQuery.finished)."""
    return BigQuery(pipeline, bq_client).finished


def load_batch(
    pipeline: Pipeline,
    batch: dict,
    s3_client: S3Client,
    bq_client: bigquery.Client,
    *,
    replay: bool = False,
    workdir: Path | None = None,
) -> LoadReport:
    """Load one table's batch into the pipeline's BigQuery target (see BigQuery.load_batch)."""
    return BigQuery(pipeline, bq_client).load_batch(batch, s3_client, replay=replay, workdir=workdir)


def _ledger_exists(bq_client: bigquery.Client, target: BigQueryTarget) -> bool:
    from google.api_core.exceptions import NotFound

    try:
        bq_client.get_table(f"{target.project}.{target.dataset}.{target.ledger_table}")
        return True
    except NotFound:
        return False
