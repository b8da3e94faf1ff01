"""The clients a pipeline's tasks use, opened from its Airflow connections.

One place for how cdc-sync reaches S3, BigQuery, Aurora and the source database: the DAG's
tasks, the reconcile CLI and anything else that runs "as the DAG does" call these. Nothing
here opens a connection at import time; the Airflow providers are imported on first use.

    s3_client(pipeline)                     boto3 S3 client of source.aws_conn_id
    aws_client(pipeline, service)           any boto3 client of source.aws_conn_id (dynamodbstreams, ...)
    bigquery_client(pipeline)               BigQuery client of targets.bigquery.gcp_conn_id
    aurora_connect(pipeline, local_infile=) a function that opens an Aurora connection
    source_connect(pipeline)                a function that opens the reconcile source
    mysql_connect(conn_id)                  the same for any MySQL connection id
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc_sync.protocols import Connect, S3Client

if TYPE_CHECKING:
    from cdc_sync.config import Pipeline


def s3_client(pipeline: Pipeline) -> S3Client:
    """The boto3 S3 client of the pipeline's `source.aws_conn_id`."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=pipeline.source.aws_conn_id).get_conn()


def aws_client(pipeline: Pipeline, service: str) -> Any:
    """A boto3 client for `service` of the pipeline's `source.aws_conn_id` (its region and endpoint)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=pipeline.source.aws_conn_id, client_type=service).get_conn()


def bigquery_client(pipeline: Pipeline) -> Any:
    """The BigQuery client of `targets.bigquery` (its connection, project and location)."""
    from cdc_sync.orchestration.hooks.bigquery import CdcBigQueryHook

    target = pipeline.bigquery
    assert target is not None, f"pipeline {pipeline.name} has no BigQuery target"
    return CdcBigQueryHook(gcp_conn_id=target.gcp_conn_id, location=target.location).get_client(
        project_id=target.project, location=target.location
    )


def mysql_connect(mysql_conn_id: str, *, local_infile: bool = False) -> Connect:
    """A function that opens a connection of the Airflow MySQL connection `mysql_conn_id`.

    LOCAL INFILE stays off unless asked for (see orchestration.hooks.mysql.LocalFileGuard)."""
    from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook

    hook = CdcMySqlHook(mysql_conn_id=mysql_conn_id)
    return lambda: hook.get_conn(local_infile=local_infile)


def mysql_settings(mysql_conn_id: str) -> dict[str, Any]:
    """pymysql.connect arguments of an Airflow MySQL connection (for the binlog reader)."""
    from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook

    return CdcMySqlHook(mysql_conn_id=mysql_conn_id).connection_settings()


def aurora_connect(pipeline: Pipeline, *, local_infile: bool | None = None) -> Connect:
    """A function that opens a connection to `targets.aurora`.

    `local_infile=None` (the loader's own connection): LOCAL INFILE on only when the target's
    method is `local_infile`. Pass False for connections that only read and write results."""
    target = pipeline.aurora
    assert target is not None, f"pipeline {pipeline.name} has no Aurora target"
    if local_infile is None:
        local_infile = target.method == "local_infile"
    return mysql_connect(target.mysql_conn_id, local_infile=local_infile)


def aurora_plain_connect(pipeline: Pipeline) -> Connect | None:
    """Aurora for reading and writing results (no LOCAL INFILE), or None without an Aurora target."""
    return aurora_connect(pipeline, local_infile=False) if pipeline.aurora is not None else None


def source_connect(pipeline: Pipeline) -> Connect:
    """A function that opens a connection to the source database (`reconcile.source_conn_id`)."""
    assert pipeline.reconcile is not None, f"pipeline {pipeline.name} has no reconcile section"
    return mysql_connect(pipeline.reconcile.source_conn_id)
