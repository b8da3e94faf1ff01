"""The DMS → Aurora (merge) flow as a plain function: apply one table's batch.

Planning is shared with the BigQuery flow (listing, watermarks); the Aurora ledger decides
what is applied, so the same batch can feed BigQuery and Aurora at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from cdc_sync.aurora.loader import AuroraMergeLoader
from cdc_sync.config import Pipeline
from cdc_sync.dms.layout import DmsFile
from cdc_sync.landed import LoadReport


def load_batch(pipeline: Pipeline, batch: dict, s3_client, connect: Callable, *, workdir: Path | None = None) -> LoadReport:
    table = pipeline.table(batch["table"])
    files = [DmsFile.from_dict(f) for f in batch["files"]]
    with tempfile.TemporaryDirectory(prefix="cdc-sync-aurora-", dir=workdir) as scratch:
        return AuroraMergeLoader(pipeline, table, connect, s3_client, Path(scratch)).load(files)
