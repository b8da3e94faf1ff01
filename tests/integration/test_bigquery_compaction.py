"""BigQuery compaction: the latest-state view over state table ∪ recent changelog partitions
gives, at every moment, what ranking the whole changelog gives (the view before compaction
existed, kept here as the reference query) and what the source database holds.

Real BigQuery emulator, moto and MariaDB source; dag.test() for the compaction task.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from cdc_sync.errors import SetupError
from cdc_sync.sources.dms.writer import cdc_file_name
from cdc_sync.targets.bigquery import compaction as compaction_module
from cdc_sync.targets.bigquery import loader as loader_module
from cdc_sync.targets.bigquery.compaction import DONE, Compactor, timestamp_literal
from tests.integration.harness import World, customer, expected_row

pytestmark = pytest.mark.services

# The latest-state view as it was before compaction: the whole changelog ranked per key.
REFERENCE = """
SELECT * EXCEPT (_cdc_op, _cdc_row)
FROM (
  SELECT * FROM `{changelog}` WHERE TRUE
  QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY _cdc_position DESC) = 1
)
WHERE _cdc_op != 'D'
"""


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    w.write_config(bigquery={"compaction": {"every_loads": 1}})
    yield w
    w.close()


def _compactor(world: World) -> Compactor:
    pipeline = world.pipeline
    return Compactor(pipeline, pipeline.table(world.customers), world.bq)


def _full_rows(world: World, sql: str) -> dict:
    return {r["id"]: dict(r) for r in world.bq.query(sql).result()}


def assert_view_correct(world: World) -> None:
    """The view equals the reference query (every column, metadata included) and the source."""
    base = f"local.{world.dataset}.{world.db}_customers"
    view = _full_rows(world, f"SELECT * FROM `{base}`")
    reference = _full_rows(world, REFERENCE.format(changelog=f"{base}_changelog"))
    assert view == reference
    assert world.view_rows() == world.source_rows(world.customers)


def _state_ops(world: World) -> dict:
    state = f"local.{world.dataset}.{world.db}_customers_state"
    return {r["id"]: r["_cdc_op"] for r in world.bq.query(f"SELECT id, _cdc_op FROM `{state}`").result()}


def test_view_equals_the_reference_through_loads_interleaved_with_compactions(world):
    world.seed(range(1, 7))
    world.run_library()
    assert_view_correct(world)  # not compacted yet: the view ranks the changelog
    compactor = _compactor(world)
    assert "load(s) since the last compaction" in compactor.due()
    first = compactor.compact()
    assert first.merged_rows == 6 and compactor.due() == ""
    assert_view_correct(world)

    deleted: list[int] = []
    for n in range(3):
        world.dms.update(world.customers, {"id": 1}, {"qty": 1000 + n})
        victim = 2 + n
        world.dms.delete(world.customers, {"id": victim})  # deleted in this round ...
        deleted.append(victim)
        if n > 0:  # ... and inserted again in the next one, across a compaction
            world.dms.insert(world.customers, customer(victim - 1, name=f"back in round {n}"))
            deleted.remove(victim - 1)
        world.dms.insert(world.customers, customer(100 + n))
        world.dms.flush(world.customers)
        world.run_library()
        assert_view_correct(world)  # right after a load, before any compaction
        if n >= 1:
            compactor.compact()
            assert_view_correct(world)

    # the state keeps deletes as tombstones: an older insert that arrives later must lose to them
    ops = _state_ops(world)
    assert sorted(k for k, op in ops.items() if op == "D") == deleted == [4]  # deleted in the last round
    done = compactor.marks().done
    view = world.bq.get_table(f"local.{world.dataset}.{world.db}_customers")
    # the view reads only the changelog partitions from the done watermark on (a constant: pruning)
    # (the emulator stores the view's text normalised: `CAST('…' AS TIMESTAMP)`)
    literal = view.view_query.split("_cdc_loaded_at >= ", 1)[1][:60]
    assert done.strftime("%Y-%m-%d %H:%M:%S.%f") in literal, literal
    assert f"{world.db}_customers_state" in view.view_query

    world.add_loyalty_points({})  # a column added in the source: the state table follows
    world.run_library()
    assert_view_correct(world)
    compactor.compact()
    assert_view_correct(world)
    assert world.view_rows()[1]["loyalty_points"] is not None


def _reconciled(world: World) -> tuple:
    """Reconciliation of the customers table, source against the BigQuery view."""
    from cdc_sync.reconcile.run import reconcile_table

    (comparison,) = reconcile_table(
        world.pipeline,
        world.customers,
        source_connect=lambda: world.stack.mariadb.connect(autocommit=False),
        run_id=f"compaction-{datetime.now(UTC):%H%M%S%f}",
        bigquery_client=world.bq,
        targets=["bigquery"],
    )
    return comparison.status, comparison.target_rows


def test_a_late_older_file_after_a_compaction_wins_or_loses_by_position(world):
    world.write_config(
        bigquery={"compaction": {"every_loads": 1}}, reconcile={"source_conn_id": "mysql_source", "recheck_seconds": 0}
    )
    expected = world.seed(range(1, 4))
    world.run_library()
    world.dms.update(world.customers, {"id": 1}, {"qty": 1})
    world.dms.update(world.customers, {"id": 2}, {"name": "before the delete"})
    world.dms.insert(world.customers, customer(7))
    early = world.dms.tables[world.customers].pending
    world.dms.tables[world.customers].pending = []
    early_time = world.dms.tick()
    world.dms.update(world.customers, {"id": 1}, {"qty": 2})
    world.dms.delete(world.customers, {"id": 2})
    late_key = world.dms.flush(world.customers)
    world.run_library()
    _compactor(world).compact()  # the newer update and the delete are now in the state table

    early_key = late_key.rsplit("/", 1)[0] + "/" + cdc_file_name(early_time)
    world.s3.put_object(Bucket=world.bucket, Key=early_key, Body=world.dms.cdc_file_body(world.customers, early))
    reports = world.run_library()
    assert [list(r.loaded) for r in reports] == [[early_key]]
    expected[1]["qty"] = 2
    del expected[2]
    expected[7] = expected_row(customer(7))
    assert world.view_rows() == expected  # key 1 and key 2 lose to the state's newer changes
    assert_view_correct(world)
    assert _reconciled(world) == ("in_sync", 3)  # reconciliation reads the compacted view
    _compactor(world).compact()  # and compacting the late file changes nothing
    assert world.view_rows() == expected
    assert_view_correct(world)
    assert _reconciled(world) == ("in_sync", 3)
    assert _state_ops(world)[2] == "D"


def test_a_compaction_killed_midway_then_retried_and_two_at_once_apply_nothing_twice(world, monkeypatch):
    world.seed(range(1, 6))
    world.run_library()
    compactor = _compactor(world)
    compactor.compact()
    world.dms.update(world.customers, {"id": 1}, {"name": "after the first compaction"})
    world.dms.delete(world.customers, {"id": 2})
    world.dms.flush(world.customers)
    world.run_library()

    real_record = Compactor._record

    def killed_before_done(self, compaction_id, phase, watermark, merged_rows):
        if phase == DONE:
            raise RuntimeError("worker killed after the MERGE")
        return real_record(self, compaction_id, phase, watermark, merged_rows)

    monkeypatch.setattr(Compactor, "_record", killed_before_done)
    before = compactor.marks().done
    with pytest.raises(RuntimeError, match="worker killed"):
        compactor.compact()
    monkeypatch.setattr(Compactor, "_record", real_record)
    # the state holds the new changes, the view still reads from the old watermark: still right
    assert compactor.marks().done == before
    assert _state_ops(world)[2] == "D"
    assert_view_correct(world)

    retried = compactor.compact()
    assert retried.merged_rows == 0  # the position guard: the killed run's MERGE already applied them
    assert_view_correct(world)

    world.dms.update(world.customers, {"id": 3}, {"qty": 33})
    world.dms.insert(world.customers, customer(9))
    world.dms.flush(world.customers)
    world.run_library()
    errors: list[Exception] = []

    def run() -> None:
        try:
            _compactor(world).compact()
        except Exception as error:  # noqa: BLE001  # collected: asserted below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert_view_correct(world)
    assert sorted(_state_ops(world)) == [1, 2, 3, 4, 5, 9]  # one row per key ever seen


def test_a_load_stamped_before_a_compaction_watermark_is_restamped_not_skipped(world, monkeypatch):
    """A load writes its rows' `_cdc_loaded_at`, then its claim; a compaction announces its
    watermark in between and MERGEs before the load job commits. Without the handshake those
    rows would sit below the watermark, outside both the state and the view's partitions."""
    world.seed(range(1, 4))
    world.run_library()
    _compactor(world).compact()
    world.dms.update(world.customers, {"id": 1}, {"name": "loaded across a compaction"})
    world.dms.insert(world.customers, customer(8))
    world.dms.flush(world.customers)

    real_settle = loader_module.ChangelogLoader._settle_other_claims
    compactions: list = []

    def compaction_in_between(self, files, job_id):
        real_settle(self, files, job_id)
        if not compactions:  # the first attempt only: its rows are already stamped
            compactions.append(Compactor(self.pipeline, self.table, self.client).compact())

    monkeypatch.setattr(loader_module.ChangelogLoader, "_settle_other_claims", compaction_in_between)
    world.run_library()
    watermark = compactions[0].watermark
    assert compactions[0].settled_claims == 1  # it saw the load's claim and fenced its job id
    changelog = f"local.{world.dataset}.{world.db}_customers_changelog"
    stamps = [
        r["_cdc_loaded_at"]
        for r in world.bq.query(f"SELECT _cdc_loaded_at FROM `{changelog}` WHERE _cdc_op != 'I' OR id = 8").result()
    ]
    assert stamps and all(s > watermark for s in stamps)  # restamped after the watermark
    assert_view_correct(world)
    monkeypatch.setattr(loader_module.ChangelogLoader, "_settle_other_claims", real_settle)
    _compactor(world).compact()
    assert_view_correct(world)
    assert world.view_rows()[1]["name"] == "loaded across a compaction"


def test_rebuild_from_the_changelog_and_retention_that_drops_only_compacted_partitions(world):
    world.seed(range(1, 5))
    world.run_library()
    changelog = f"local.{world.dataset}.{world.db}_customers_changelog"
    # the full load as if it had been loaded ten days ago: old history
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    world.bq.query(
        f"UPDATE `{changelog}` SET _cdc_loaded_at = TIMESTAMP '{timestamp_literal(ten_days_ago)}' WHERE TRUE"
    ).result()
    world.dms.delete(world.customers, {"id": 4})
    world.dms.flush(world.customers)
    world.run_library()
    compactor = _compactor(world)
    rebuilt = compactor.compact(rebuild=True)
    assert rebuilt.merged_rows == 4  # keys 1-3 and the tombstone of 4
    assert_view_correct(world)

    world.write_config(bigquery={"compaction": {"every_loads": 1, "retention_days": 2}})
    compactor = _compactor(world)
    world.dms.update(world.customers, {"id": 1}, {"qty": 5})
    world.dms.flush(world.customers)
    world.run_library()  # loaded after the rebuild: not compacted when retention runs below
    rows_before = world.changelog_count()
    compactor.compact()
    # the four full-load rows are gone from the changelog; the state holds them
    assert world.changelog_count() == rows_before - 4
    assert world.view_rows() == world.source_rows(world.customers)
    with pytest.raises(SetupError, match="retention_days"):
        compactor.compact(rebuild=True)


@pytest.mark.airflow
def test_dag_compacts_after_its_loads_and_on_compact_now(world, airflow_db):
    world.seed(range(1, 5))
    dag = world.dag()
    run = dag.test()
    assert str(run.state) == "success"
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["compact_bigquery"] == "success"
    compactor = _compactor(world)
    first_done = compactor.marks().done
    assert first_done is not None  # every_loads: 1, one load
    assert_view_correct(world)

    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    world.dms.flush(world.customers)
    world.write_config(bigquery={"compaction": {"every_loads": 5, "every_minutes": 0}})
    dag = world.dag()
    run = dag.test(run_conf={"compact_now": True})
    assert str(run.state) == "success"
    # one load of every_loads: 5 is not due; compact_now compacted it
    assert _compactor(world).marks().done > first_done
    assert _state_ops(world)[2] == "U"
    assert_view_correct(world)


def test_compaction_is_off_by_default_and_the_view_ranks_the_changelog(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    try:
        w.seed(range(1, 3))
        w.run_library()
        assert compaction_module.compact_pipeline(w.pipeline, w.bq)[0].skipped == "not due"
        view = w.bq.get_table(f"local.{w.dataset}.{w.db}_customers")
        assert "_state" not in view.view_query
        assert w.view_rows() == w.source_rows(w.customers)
    finally:
        w.close()
