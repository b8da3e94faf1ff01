"""The pipelines the deployed tests run, each in its own source database, bucket, dataset and
Aurora database, and the ways to watch a real Airflow run them (REST API polling)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.integration.harness import World

TERMINAL = {"success", "failed"}


@dataclass
class Deployment:
    stack: object
    uid: str
    root: Path
    worlds: dict[str, World] = field(default_factory=dict)
    pipelines: list[dict] = field(default_factory=list)
    airflow: object | None = None

    @property
    def config_path(self) -> Path:
        return self.root / "pipelines.yaml"

    @classmethod
    def create(cls, stack, uid: str, root: Path) -> Deployment:
        deployment = cls(stack, uid, root)
        # live: a scheduled pipeline whose run waits (deferred) for files to land
        deployment.add_dms("live", "* * * * *", poke_interval_seconds=5, wait_timeout_minutes=10)
        # ops: triggered by hand (REST API): clear, params
        deployment.add_dms("ops", None)
        # ui: triggered from the trigger form in a browser
        deployment.add_dms("ui", None)
        # daily: backfilled day by day; daily_back: the same files backfilled backwards elsewhere
        daily = deployment.add_dms("daily", "@daily", late_file_grace_minutes=0, wait_timeout_minutes=1)
        back = copy.copy(daily)
        back.dataset, back.target_db = f"{daily.dataset}_back", f"{daily.target_db}_back"
        with daily.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{back.target_db}`")
            cur.execute(f"CREATE DATABASE `{back.target_db}` CHARACTER SET utf8mb4")
        deployment.worlds["daily_back"] = back
        twin = copy.deepcopy(deployment.pipelines[-1])
        twin["name"] = f"daily_back_{uid}"
        twin["targets"]["bigquery"]["dataset"] = back.dataset
        twin["targets"]["aurora"].update(database=back.target_db, mysql_conn_id=f"aurora_daily_back_{uid}")
        deployment.pipelines.append(twin)
        # events: runs started by S3 notifications through SQS; its cron (the sweep) never ticks in a test
        deployment.add_notified_dms("events", "0 0 1 1 *")
        deployment.add_firehose("clicks", "@hourly")
        deployment.add_audited("audited")
        deployment.write_config()
        return deployment

    def add_firehose(self, role: str, schedule: str):
        """A Firehose → Aurora (append) pipeline on the project's transform Lambda's output."""
        from tests.integration.test_firehose_to_aurora import FirehoseWorld

        (self.root / role).mkdir(parents=True, exist_ok=True)
        world = FirehoseWorld(self.stack, f"{self.uid}{role}", self.root / role)
        (pipeline,) = yaml.safe_load(world.config.read_text())["pipelines"]
        pipeline["name"] = f"{role}_{self.uid}"
        pipeline["schedule"] = schedule
        pipeline["targets"]["aurora"]["mysql_conn_id"] = f"aurora_{role}_{self.uid}"
        pipeline["options"].update(late_file_grace_minutes=0, wait_timeout_minutes=1)
        self.pipelines.append(pipeline)
        self.worlds[role] = world
        return world

    def add_dms(self, role: str, schedule: str | None, **options) -> World:
        (self.root / role).mkdir(parents=True, exist_ok=True)
        world = World(self.stack, f"{self.uid}{role}", self.root / role, aurora=True)
        world.write_config(
            tables=[{"schema": world.db, "name": "customers", "primary_key": ["id"]}],
            **{"retries": 0, **options},
        )
        (pipeline,) = yaml.safe_load(world.config_path.read_text())["pipelines"]
        pipeline["name"] = f"{role}_{self.uid}"
        pipeline["schedule"] = schedule
        pipeline["targets"]["aurora"]["mysql_conn_id"] = f"aurora_{role}_{self.uid}"
        self.pipelines.append(pipeline)
        self.worlds[role] = world
        return world

    def add_notified_dms(self, role: str, schedule: str, **options) -> World:
        """A DMS pipeline with source.notifications: the bucket sends ObjectCreated events under
        `dms/` to an SQS queue of its own (moto's server delivers them), `world.queue_url`."""
        world = self.add_dms(role, schedule, **{"poke_interval_seconds": 5, "wait_timeout_minutes": 1, **options})
        world.queue_url = notify_queue(self.stack, world.bucket, "dms/", f"landed-{self.uid}{role}")  # type: ignore[attr-defined]
        self.pipelines[-1]["source"]["notifications"] = {"queue_url": world.queue_url}  # type: ignore[attr-defined]

    def add_audited(self, role: str) -> World:
        """A DMS pipeline scheduled on its tables' audit-log assets: the audit log's CloudWatch
        log group has a subscription filter to a Kinesis stream that the triggerer watches."""
        world = self.add_dms(role, "audit_log")
        kinesis, logs = self.stack.boto3_client("kinesis"), self.stack.boto3_client("logs")
        world.audit_stream, world.audit_group = f"audit-{self.uid}", f"/aws/rds/cluster/shop-{self.uid}/audit"
        kinesis.create_stream(StreamName=world.audit_stream, ShardCount=1)
        kinesis.get_waiter("stream_exists").wait(StreamName=world.audit_stream)
        arn = kinesis.describe_stream(StreamName=world.audit_stream)["StreamDescription"]["StreamARN"]
        logs.create_log_group(logGroupName=world.audit_group)
        logs.create_log_stream(logGroupName=world.audit_group, logStreamName="shop-instance-1")
        logs.put_subscription_filter(
            logGroupName=world.audit_group,
            filterName="audit-to-kinesis",
            filterPattern="",
            destinationArn=arn,
            roleArn="arn:aws:iam::123456789012:role/CWLtoKinesisRole",
        )
        self.pipelines[-1]["source"]["audit_log"] = {
            "stream": world.audit_stream,
            "source_name": f"shop{self.uid}",
            "poll_interval_seconds": 2,
        }
        return world

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump({"pipelines": self.pipelines}, sort_keys=False))

    def connections(self) -> dict[str, str]:
        return {
            p["targets"]["aurora"]["mysql_conn_id"]: self.stack.mariadb.airflow_conn(p["targets"]["aurora"]["database"])
            for p in self.pipelines
        }

    def dag_id(self, role: str) -> str:
        return f"cdc_{role}_{self.uid}"

    def close(self) -> None:
        back = self.worlds.pop("daily_back", None)
        if back is not None:
            with self.worlds["daily"].mysql.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{back.target_db}`")
        for world in self.worlds.values():
            world.close()

    # ------------------------------------------------------------------ watching Airflow
    def wait_for_dags(self, timeout: float = 180) -> None:
        """Until the dag-processor has parsed every pipeline DAG (and no file failed to import)."""
        wanted = {self.dag_id(p["name"].rsplit("_", 1)[0]) for p in self.pipelines}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            errors = self.airflow.api("GET", "/api/v2/importErrors")
            assert errors["total_entries"] == 0, errors
            found = {d["dag_id"] for d in self.airflow.api("GET", "/api/v2/dags?limit=100")["dags"]}
            if wanted <= found:
                return
            time.sleep(1)
        raise AssertionError(f"the dag-processor did not parse {sorted(wanted - found)} within {timeout:.0f}s")

    def wait_until(self, what: str, check, timeout: float = 300, every: float = 1.0):
        """Poll `check()` until it returns something truthy; fail naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(every)

    def runs(self, dag_id: str) -> list[dict]:
        return self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        return self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict:
        return self.wait_until(
            f"run {run_id} of {dag_id} to end",
            lambda: (run := self.run(dag_id, run_id))["state"] in TERMINAL and run,
            timeout,
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances?limit=100")[
            "task_instances"
        ]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, list[str]]:
        states: dict[str, list[str]] = {}
        for ti in sorted(self.task_instances(dag_id, run_id), key=lambda t: (t["task_id"], t["map_index"])):
            states.setdefault(ti["task_id"], []).append(ti["state"])
        return states

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.airflow.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_for_first_scheduled_run(self, role: str) -> dict:
        """Unpause a pipeline and wait until the scheduled run unpausing starts has ended."""
        dag_id = self.dag_id(role)
        self.set_paused(dag_id, False)
        run = self.wait_until(
            f"the first scheduled run of {dag_id}",
            lambda: next((r for r in self.runs(dag_id) if r["run_type"] == "scheduled"), None),
        )
        return self.wait_for_run(dag_id, run["dag_run_id"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.airflow.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}/logs/{try_number}"
        answer = self.airflow.api("GET", f"{path}?map_index={map_index}&full_content=true")
        content = answer.get("content")
        if isinstance(content, list):  # structured log lines (Airflow >= 3.0)
            return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)
        return str(content)


def notify_queue(stack, bucket: str, prefix: str, queue_name: str) -> str:
    """Create an SQS queue and make `bucket` send it an event for every object created under
    `prefix` (as docs/events.md sets it up on AWS); returns the queue URL."""
    sqs = stack.boto3_client("sqs")
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.boto3_client("s3").put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                }
            ]
        },
    )
    sqs.purge_queue(QueueUrl=url)  # S3's s3:TestEvent on configuration: no file behind it
    return url


def _quote(run_id: str) -> str:
    from urllib.parse import quote

    return quote(run_id, safe="")
