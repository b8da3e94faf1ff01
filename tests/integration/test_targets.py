"""Both targets through their one contract (targets.base.Target), on the same batch: what they
finish, what they load, and what they do with an object that vanished or changed after listing."""

from __future__ import annotations

import json

import pytest

from cdc_sync import planning
from cdc_sync.sources.landed import LandedObject
from cdc_sync.targets.aurora.batch import Aurora
from cdc_sync.targets.base import Target
from cdc_sync.targets.bigquery.batch import BigQuery
from tests.integration.harness import World

pytestmark = pytest.mark.services


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path, aurora=True)
    yield w
    w.close()


def _targets(world: World) -> list[Target]:
    return [BigQuery(world.pipeline, world.bq), Aurora(world.pipeline, world.aurora_connection)]


def _plan(world: World, targets: list[Target]) -> list[dict]:
    return planning.plan_batches(world.pipeline, world.s3, world.watermarks.read, [t.finished for t in targets])


def _marker(world: World, key: str) -> dict:
    body = world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read()
    return json.loads(body)


def test_both_targets_quarantine_an_object_gone_after_listing_and_load_a_changed_one_in_its_new_version(world):
    expected = world.seed(range(1, 4))
    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    gone = world.dms.flush(world.customers)
    expected[2]["qty"] = 22
    targets = _targets(world)
    (batch,) = _plan(world, targets)
    full_load = f"dms/{world.db}/customers/LOAD00000001.parquet"
    assert [f["key"] for f in batch["files"]] == [full_load, gone]

    # between planning and loading, one object is deleted and the other rewritten (a DMS reload)
    world.s3.delete_object(Bucket=world.bucket, Key=gone)
    world.dms.update(world.customers, {"id": 1}, {"qty": 77})
    world.dms.full_load(world.customers)
    expected[1]["qty"] = 77

    reports = [t.load_batch(batch, world.s3, workdir=world.tmp_path) for t in targets]
    for target, report in zip(targets, reports, strict=True):
        assert report.target == target.name
        assert report.quarantined == {gone: "object no longer exists in S3"}
        assert report.changed_since_listing == [full_load] and report.loaded == {}
        # the vanished object is finished (quarantined), the changed one is not: the next run lists it again
        listed = [LandedObject.from_dict(f) for f in batch["files"]]
        gone_etag = next(f.etag for f in listed if f.key == gone)
        assert target.finished(world.customers, listed, set()) == {(gone, gone_etag)}
    markers = {
        "bigquery": f"cdc-sync/quarantine/p_{world.uid}/{gone}.json",
        "aurora": f"cdc-sync/quarantine/p_{world.uid}/aurora/{gone}.json",
    }
    for name, marker_key in markers.items():
        marker = _marker(world, marker_key)
        assert (marker["target"], marker["key"], marker["reason"]) == (name, gone, "object no longer exists in S3")
    world.advance(reports, targets=2)

    # the next run loads the rewritten object's new version into both, and only it
    (again,) = _plan(world, targets)
    assert [f["key"] for f in again["files"]] == [full_load]
    reports = [t.load_batch(again, world.s3, workdir=world.tmp_path) for t in targets]
    assert [list(r.loaded) for r in reports] == [[full_load], [full_load]]
    assert world.aurora_rows() == expected
    assert world.view_rows() == world.source_rows(world.customers)
    assert {k: row["qty"] for k, row in world.view_rows().items()} == {1: 77, 2: 22, 3: expected[3]["qty"]}
