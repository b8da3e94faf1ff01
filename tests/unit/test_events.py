"""source.notifications: the config it takes and the "cron OR files landed" schedule it gives."""

from __future__ import annotations

import copy
import re

import pytest

from cdc_sync.config import ConfigError, parse_pipelines

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/landed"
DOC = {
    "pipelines": [
        {
            "name": "shop",
            "schedule": "*/30 * * * *",
            "source": {"kind": "dms", "bucket": "my-landing", "prefix": "dms", "notifications": {"queue_url": QUEUE}},
            "tables": [{"schema": "shop", "name": "orders", "primary_key": ["id"]}],
            "targets": {"bigquery": {"project": "my-project-1", "dataset": "cdc"}},
        }
    ]
}


def _pipeline(change=None):
    doc = copy.deepcopy(DOC)
    if change:
        change(doc["pipelines"][0])
    (pipeline,) = parse_pipelines(doc, "pipelines.yaml")
    return pipeline


def test_notifications_read_the_queue_with_the_source_connection_unless_told():
    pipeline = _pipeline()
    assert pipeline.source.notifications.queue_url == QUEUE
    assert pipeline.source.notifications.aws_conn_id is None
    other = _pipeline(lambda p: p["source"]["notifications"].update(aws_conn_id="aws_sqs"))
    assert other.source.notifications.aws_conn_id == "aws_sqs"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(schedule=None), "field source.notifications: needs a cron schedule as the safety sweep"),
        (lambda p: p.update(schedule="@continuous"), "needs a cron schedule as the safety sweep"),
        (lambda p: p.update(schedule="audit_log"), "needs a cron schedule as the safety sweep"),
        (lambda p: p["source"]["notifications"].update(queue_url="landed"), "queue_url"),
        (lambda p: p["source"]["notifications"].update(queue=QUEUE), "queue"),
    ],
)
def test_notification_mistakes_name_the_field(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _pipeline(change)


def test_the_schedule_is_the_cron_or_an_asset_the_sqs_queue_watches():
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
    from airflow.triggers.base import BaseEventTrigger

    from cdc_sync._compat import AssetOrTimeSchedule, CronDataIntervalTimetable
    from cdc_sync.orchestration.dag_factory import build_pipeline_dag

    dag = build_pipeline_dag(_pipeline())
    timetable = dag.timetable
    assert isinstance(timetable, AssetOrTimeSchedule)
    assert isinstance(timetable.timetable, CronDataIntervalTimetable)  # the sweep keeps its data intervals
    asset = timetable.asset_condition
    assert asset.name == "cdc_sync_shop_landed"
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, BaseEventTrigger)  # what AssetWatcher takes
    sqs = watcher.trigger.sqs_trigger()  # what runs in the triggerer
    assert isinstance(sqs, SqsSensorTrigger)
    assert (sqs.sqs_queue, sqs.aws_conn_id, sqs.delete_message_on_reception) == (QUEUE, "aws_default", True)
    assert sqs.wait_time_seconds == 20 and sqs.max_messages == 10  # long polls: 3 receives a minute when idle

    plain = build_pipeline_dag(_pipeline(lambda p: p["source"].pop("notifications")))
    assert isinstance(plain.timetable, CronDataIntervalTimetable)


def test_the_keys_an_s3_notification_names():
    from cdc_sync.orchestration.events import s3_keys

    body = '{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "dms/shop/orders/2026+01%2F1.parquet"}}}]}'
    assert s3_keys(body) == ["dms/shop/orders/2026 01/1.parquet"]
    assert s3_keys('{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "my-landing"}') == []
    assert s3_keys("not json") == []
