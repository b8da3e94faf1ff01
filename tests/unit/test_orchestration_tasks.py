"""The DAG's task bodies as plain functions: called with a pipeline and a context dict, no dag.test()."""

from __future__ import annotations

import logging

import pytest

from cdc_sync._compat import AirflowFailException
from cdc_sync.config import parse_pipelines
from cdc_sync.errors import BadInput, SetupError, TransientError
from cdc_sync.orchestration import tasks
from cdc_sync.sources.landed import LoadReport


def _pipeline(**extra):
    (pipeline,) = parse_pipelines(
        {
            "pipelines": [
                {
                    "name": "p",
                    "source": {"kind": "dms", "bucket": "landing"},
                    "tables": [
                        {"schema": "s", "name": "t", "primary_key": ["id"]},
                        {"schema": "s", "name": "u", "primary_key": ["id"]},
                    ],
                    "targets": {"bigquery": {"project": "local", "dataset": "d"}},
                    **extra,
                }
            ]
        }
    )
    return pipeline


@pytest.mark.parametrize("family", [SetupError, BadInput])
def test_setup_and_bad_input_errors_fail_the_task_without_retry_in_their_own_words(family):
    @tasks.by_family
    def body(table: str) -> None:
        raise family(f"{table}: what is wrong and what to do")

    with pytest.raises(AirflowFailException) as failed:  # Airflow does not retry this one
        body("s.t")
    assert str(failed.value) == "s.t: what is wrong and what to do"
    assert type(failed.value.__cause__) is family  # the original stays in the traceback


@pytest.mark.parametrize("error", [TransientError("lock wait timeout"), ConnectionResetError("peer reset")])
def test_transient_and_unknown_errors_pass_through_for_airflow_to_retry(error):
    @tasks.by_family
    def body() -> None:
        raise error

    with pytest.raises(type(error)) as raised:
        body()
    assert raised.value is error and not isinstance(raised.value, AirflowFailException)


def test_by_family_keeps_the_result_and_the_signature():
    @tasks.by_family
    def body(a: int, *, b: int) -> int:
        """Adds."""
        return a + b

    assert body(1, b=2) == 3
    assert (body.__name__, body.__doc__) == ("body", "Adds.")


def test_tables_to_check_takes_the_param_or_every_table_and_names_an_unknown_one():
    pipeline = _pipeline()
    assert tasks.tables_to_check(pipeline, {"params": {"tables": []}}) == ["s.t", "s.u"]
    assert tasks.tables_to_check(pipeline, {"params": {"tables": ["s.u"]}}) == ["s.u"]
    with pytest.raises(AirflowFailException, match="pipeline 'p' has no table 's.nope'"):
        tasks.tables_to_check(pipeline, {"params": {"tables": ["s.t", "s.nope"]}})


def test_finish_logs_what_a_load_did_and_returns_the_report(caplog):
    report = LoadReport(
        table="s.t",
        target="bigquery",
        job_id="job-1",
        loaded={"dms/s/t/LOAD00000001.parquet": 5, "dms/s/t/20261123-080000000.parquet": 2},
        already_loaded=["dms/s/t/20261122-080000000.parquet"],
    )
    with caplog.at_level(logging.INFO, logger="cdc_sync.orchestration.tasks"):
        result = tasks.finish(_pipeline(), report)
    assert result == report.to_dict()
    assert caplog.messages == [
        "s.t → bigquery: loaded 2 file(s), 7 change row(s) (job job-1); already loaded 1; quarantined 0"
    ]


def test_finish_fails_without_retry_naming_each_quarantined_file():
    report = LoadReport(
        table="s.t",
        target="aurora",
        loaded={"dms/s/t/a.parquet": 1},
        quarantined={"dms/s/t/b.parquet": "not a readable Parquet file"},
    )
    with pytest.raises(AirflowFailException) as failed:
        tasks.finish(_pipeline(), report)
    assert str(failed.value) == (
        "s.t → aurora: 1 file(s) quarantined — s3://landing/dms/s/t/b.parquet: not a readable Parquet file. "
        "Fix them and trigger the DAG with params.replay_keys to load them again."
    )


def test_all_in_sync_counts_the_comparisons(caplog):
    with caplog.at_level(logging.INFO, logger="cdc_sync.orchestration.tasks"):
        assert tasks.all_in_sync({"comparisons": 4, "drift": 0}) == 4
    assert caplog.messages == ["4 comparison(s), none with drift"]


def test_fail_run_names_the_pipeline_and_where_to_look():
    with pytest.raises(AirflowFailException, match=r"pipeline p: a load failed in this run .* plan_batches"):
        tasks.fail_run(_pipeline())


def test_backfill_is_read_from_the_dag_runs_type():
    from airflow.utils.types import DagRunType

    class Run:
        def __init__(self, run_type: DagRunType):
            self.run_type = run_type

    assert tasks.is_backfill({"dag_run": Run(DagRunType.BACKFILL_JOB)})
    assert not any(tasks.is_backfill({"dag_run": Run(t)}) for t in DagRunType if t != DagRunType.BACKFILL_JOB)
    assert not tasks.is_backfill({})


def test_a_manual_window_is_read_from_the_params_in_utc():
    from datetime import UTC, datetime

    assert tasks.requested_window({}) is None
    assert tasks.requested_window({"window_start": None, "window_end": None}) is None
    assert tasks.requested_window(
        {"window_start": "2026-11-01T00:00:00Z", "window_end": "2026-11-08T09:00:00+09:00"}
    ) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 8, tzinfo=UTC),
    )
    assert tasks.requested_window({"window_start": "2026-11-01T00:00:00", "window_end": "2026-11-02"}) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 2, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"window_start": "2026-11-01T00:00:00Z"}, "go together"),
        ({"window_start": "yesterday", "window_end": "2026-11-02"}, "expected ISO 8601"),
        ({"window_start": "2026-11-02", "window_end": "2026-11-01"}, "must be before window_end"),
    ],
)
def test_a_manual_window_that_cannot_be_used_is_refused_with_what_to_give(params, message):
    with pytest.raises(SetupError, match=message):
        tasks.requested_window(params)
