"""`source.kind: dynamodb_stream` in pipelines.yaml: what it reads, and mistakes named by field."""

from __future__ import annotations

import copy
import json

import pytest

from cdc_sync.config import ConfigError, parse_pipelines

SEED_FILTER = {
    "Filters": [
        {
            "Pattern": json.dumps(
                {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"page": {"S": [{"exists": True}]}}}}
            )
        }
    ]
}
DDB = {
    "pipelines": [
        {
            "name": "web_clicks",
            "source": {
                "kind": "dynamodb_stream",
                "bucket": "analytics-landing",
                "prefix": "ddb",
                "dynamodb": {
                    "stream": "webAnalytics",
                    "filter_criteria": SEED_FILTER,
                    "extra_attributes_column": "extra",
                },
            },
            "tables": [
                {
                    "schema": "web",
                    "name": "clicks",
                    "primary_key": ["event_id"],
                    "columns": ["event_id varchar(64)", "user_id bigint", "page varchar(200)"],
                }
            ],
            "targets": {"aurora": {"database": "analytics"}, "bigquery": {"project": "local", "dataset": "web"}},
        }
    ]
}


def test_dynamodb_stream_pipeline_reads_its_settings():
    (pipeline,) = parse_pipelines(DDB)
    table = pipeline.tables[0]
    settings = pipeline.source.dynamodb
    assert pipeline.source.kind == "dynamodb_stream" and pipeline.source.file_format == "parquet"
    assert settings.stream == "webAnalytics" and settings.filter_criteria == SEED_FILTER
    assert settings.extra_attributes_column == "extra" and settings.max_records_per_run == 100_000
    assert pipeline.source.table_prefix(table) == "ddb/web/clicks/"
    assert table.commit_timestamp_column == "cdc_commit_ts"  # the capture writes the commit time there
    assert settings.checkpoint_key(pipeline.name, table) == "cdc-sync/checkpoints/web_clicks/web.clicks.json"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["source"].pop("dynamodb"), r"field source.dynamodb: required for kind dynamodb_stream"),
        (lambda p: p["tables"][0].pop("primary_key"), r"field tables\[0\]: 'primary_key'"),
        (
            lambda p: p["tables"][0].update(columns=["event_id", "page text"]),
            r"attribute 'event_id' needs its MySQL type",
        ),
        (lambda p: p["tables"][0].update(columns=["page text"]), r"key attribute\(s\) event_id not declared"),
        (lambda p: p["tables"][0]["columns"].append("extra json"), r"'extra' is the capture's own column"),
        (
            lambda p: p["source"]["dynamodb"].update(filter_criteria={"Filters": [{"Pattern": "{"}]}),
            r"field source.dynamodb.filter_criteria: filter criteria: Filters\[0\].Pattern is not valid JSON",
        ),
        (lambda p: p["targets"]["aurora"].update(mode="append"), r"applied with mode merge"),
        (lambda p: p["tables"].append(dict(p["tables"][0], name="other")), r"exactly one table"),
        (lambda p: p["source"]["dynamodb"].update(stream="bad name!"), r"field source.dynamodb.stream"),
    ],
)
def test_dynamodb_stream_config_mistakes_name_the_field(change, message):
    doc = copy.deepcopy(DDB)
    change(doc["pipelines"][0])
    with pytest.raises(ConfigError, match=message):
        parse_pipelines(doc)


def test_dynamodb_settings_belong_to_a_dynamodb_stream_source():
    doc = copy.deepcopy(DDB)
    doc["pipelines"][0]["source"]["kind"] = "dms"
    with pytest.raises(ConfigError, match=r"field source.dynamodb: only for kind dynamodb_stream"):
        parse_pipelines(doc)
