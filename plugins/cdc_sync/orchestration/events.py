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

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_plus

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

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
    from airflow.sdk import Asset, AssetWatcher

    notifications = pipeline.source.notifications
    assert notifications is not None
    trigger = SqsNotificationsTrigger(
        queue_url=notifications.queue_url,
        aws_conn_id=notifications.aws_conn_id or pipeline.source.aws_conn_id,
    )
    name = asset_name(pipeline)
    # an x- scheme: Airflow loads no provider's URI handlers for it (seconds of DAG parsing)
    return Asset(
        name=name, uri=f"x-cdc-sync://{pipeline.name}/landed", watchers=[AssetWatcher(name=name, trigger=trigger)]
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


class SqsNotificationsTrigger(BaseEventTrigger):
    """The amazon provider's `SqsSensorTrigger`, imported only where it runs (the triggerer):
    importing it while parsing the DAG file (boto3 and the AWS hooks) costs seconds.

    Receives up to MAX_MESSAGES messages per long poll and deletes them; fires one event
    with the S3 keys they name (an `s3:TestEvent` names none)."""

    def __init__(self, *, queue_url: str, aws_conn_id: str | None):
        super().__init__()
        self.queue_url = queue_url
        self.aws_conn_id = aws_conn_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"queue_url": self.queue_url, "aws_conn_id": self.aws_conn_id},
        )

    def sqs_trigger(self):
        from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

        return SqsSensorTrigger(
            sqs_queue=self.queue_url,
            aws_conn_id=self.aws_conn_id,
            max_messages=MAX_MESSAGES,
            wait_time_seconds=WAIT_TIME_SECONDS,
            waiter_delay=WAITER_DELAY_SECONDS,
            delete_message_on_reception=True,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self.sqs_trigger().run():
            messages = event.payload.get("message_batch") or []
            keys = [key for message in messages for key in s3_keys(message.get("Body", ""))]
            self.log.info("%d message(s) on %s: %s", len(messages), self.queue_url, ", ".join(keys) or "no S3 keys")
            yield TriggerEvent({"status": event.payload.get("status"), "messages": len(messages), "keys": keys[:100]})
            return


def s3_keys(body: str) -> list[str]:
    """The object keys an S3 event notification names (URL-encoded there); none for others."""
    import json

    try:
        records = json.loads(body).get("Records") or []
    except (ValueError, AttributeError):
        return []
    return [unquote_plus(r["s3"]["object"]["key"]) for r in records if isinstance(r, dict) and "s3" in r]
