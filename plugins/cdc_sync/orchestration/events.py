"""Event-driven runs: S3 notifications of landed files, read from SQS by an asset watcher.

With `source.notifications` a pipeline DAG's schedule is "cron OR asset": the asset
`cdc_sync_<pipeline>_landed` has an `AssetWatcher` whose trigger (the amazon provider's
`SqsSensorTrigger`, a `BaseEventTrigger` on Airflow 3.0.6 as on 3.3) long-polls the queue in
the triggerer; a message becomes an asset event and the scheduler starts an
`asset_triggered` run. The trigger deletes the messages it receives, so a message is no
promise of a load: the run lists from the watermark like any run (the message only woke it),
and the cron runs stay as the sweep that finds whatever a lost message or failed run left.
"""

from __future__ import annotations

from cdc_sync.config import Pipeline

# ReceiveMessage long-polls this long (SQS's maximum): an idle queue costs 3 calls a minute
WAIT_TIME_SECONDS = 20
# pause between two receives; a message arriving meanwhile waits for the next long poll
WAITER_DELAY_SECONDS = 1
MAX_MESSAGES = 10  # SQS's maximum per ReceiveMessage; one asset event per batch


def asset_name(pipeline: Pipeline) -> str:
    """The asset whose events (one per batch of messages) start the pipeline's runs."""
    return f"cdc_sync_{pipeline.name}_landed"


def landed_files_asset(pipeline: Pipeline):
    """The asset watched through the pipeline's SQS queue."""
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
    from airflow.sdk import Asset, AssetWatcher

    notifications = pipeline.source.notifications
    assert notifications is not None
    trigger = SqsSensorTrigger(
        sqs_queue=notifications.queue_url,
        aws_conn_id=notifications.aws_conn_id or pipeline.source.aws_conn_id,
        max_messages=MAX_MESSAGES,
        wait_time_seconds=WAIT_TIME_SECONDS,
        waiter_delay=WAITER_DELAY_SECONDS,
    )
    name = asset_name(pipeline)
    return Asset(
        name=name, uri=f"cdc-sync://{pipeline.name}/landed", watchers=[AssetWatcher(name=name, trigger=trigger)]
    )


def event_schedule(pipeline: Pipeline, timetable):
    """The cron timetable OR the landed-files asset; the timetable alone without notifications."""
    if pipeline.source.notifications is None:
        return timetable
    from cdc_sync._compat import AssetOrTimeSchedule

    return AssetOrTimeSchedule(timetable=timetable, assets=landed_files_asset(pipeline))


def is_asset_triggered(context) -> bool:
    """A run an asset event (here: an S3 notification) started."""
    return str(getattr(context.get("dag_run"), "run_type", "")).lower().endswith("asset_triggered")
