"""The Firehose → Aurora (append) flow as a plain function: append one batch of objects."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from cdc_sync.aurora.append import AuroraAppendLoader
from cdc_sync.config import Pipeline
from cdc_sync.dms.layout import DmsFile
from cdc_sync.landed import LoadReport


def load_batch(
    pipeline: Pipeline, batch: dict, s3_client, connect: Callable, *, replay: bool = False, workdir: Path | None = None,
) -> LoadReport:
    table = pipeline.table(batch["table"])
    files = [DmsFile.from_dict(f) for f in batch["files"]]
    with tempfile.TemporaryDirectory(prefix="cdc-sync-firehose-", dir=workdir) as scratch:
        return AuroraAppendLoader(pipeline, table, connect, s3_client, Path(scratch)).load(
            files, replay_quarantined=replay
        )
