"""A change whose primary key value is NULL: both targets quarantine its file alike.

The file goes through the pipeline's library calls into BigQuery and the Aurora stand-in
(MariaDB); neither target may show any row of it, both name the file, column and row in
the same words, and the files beside it load.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from cdc_sync.sources.dms.writer import Change, write_change_file
from tests.integration.harness import World, customer

pytestmark = pytest.mark.services
UTC = dt.UTC


def test_null_primary_key_value_is_quarantined_alike_in_bigquery_and_aurora(stack, unique_name, tmp_path):
    world = World(stack, unique_name, tmp_path, aurora=True)
    try:
        expected = world.seed(range(1, 4))
        assert not any(r.quarantined for r in world.run_aurora())
        assert not any(r.quarantined for r in world.run_library())
        prefix = f"dms/{world.db}/customers/"
        bad_key = prefix + "20261123-080000000.parquet"
        at = dt.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
        body = write_change_file(
            world.dms.tables[world.customers].columns,
            [Change("U", customer(2, qty=2222), at), Change("I", {**customer(4), "id": None}, at)],
            timestamp_column="cdc_commit_ts",
            include_op=True,
        )
        world.s3.put_object(Bucket=world.bucket, Key=bad_key, Body=body)
        world.dms.update(world.customers, {"id": 3}, {"qty": 33})
        good_key = world.dms.flush(world.customers, file_time=dt.datetime(2026, 11, 23, 8, 1, tzinfo=UTC))
        expected[3]["qty"] = 33

        aurora = world.run_aurora()
        bigquery = world.run_library()

        reason = "primary key column id is NULL in row 1"
        assert [r.quarantined for r in aurora] == [{bad_key: reason}]
        assert [r.quarantined for r in bigquery] == [{bad_key: reason}]
        assert [list(r.loaded) for r in aurora] == [[good_key]]
        assert [list(r.loaded) for r in bigquery] == [[good_key]]
        # nothing of the file in either target: key 2 keeps its qty, no row without a key
        assert world.view_rows() == expected
        assert world.aurora_rows() == expected
        assert world.changelog_count() == 3 + 1
        for marker in (
            f"cdc-sync/quarantine/{world.pipeline.name}/{bad_key}.json",
            f"cdc-sync/quarantine/{world.pipeline.name}/aurora/{bad_key}.json",
        ):
            record = json.loads(world.s3.get_object(Bucket=world.bucket, Key=marker)["Body"].read())
            assert record["reason"] == reason and record["key"] == bad_key
    finally:
        world.close()
