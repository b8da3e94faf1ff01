"""Pipeline config: valid files load; each kind of mistake gets one message naming pipeline and field."""

from __future__ import annotations

import copy
import re
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from cdc_sync.config import ConfigError, load_pipelines, parse_pipelines
from tools.local_stack import REPO

VALID = {
    "pipelines": [
        {
            "name": "shop",
            "source": {"kind": "dms", "bucket": "my-landing", "prefix": "dms"},
            "tables": [{"schema": "shop", "name": "orders", "primary_key": ["id"], "commit_timestamp_column": "ts"}],
            "targets": {"bigquery": {"project": "my-project-1", "dataset": "cdc"}},
        }
    ]
}


def _with(path: list, value):
    doc = copy.deepcopy(VALID)
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


def test_repository_config_is_valid():
    pipelines = load_pipelines(REPO / "config" / "pipelines.yaml")
    assert [p.dag_id for p in pipelines] == ["cdc_shop"]
    assert pipelines[0].source.table_prefix(pipelines[0].tables[0]) == "dms/shop/customers/"


def test_defaults_and_names():
    (pipeline,) = parse_pipelines(VALID)
    table = pipeline.tables[0]
    assert pipeline.source.aws_conn_id == "aws_default"
    assert pipeline.source.file_time_zone is UTC
    (seoul,) = parse_pipelines(_with(["pipelines", 0, "source", "date_partition_timezone"], "Asia/Seoul"))
    assert seoul.source.file_time_zone == ZoneInfo("Asia/Seoul")
    assert pipeline.bigquery.gcp_conn_id == "google_cloud_default"
    assert pipeline.bigquery.changelog_table(table) == "shop_orders_changelog"
    assert pipeline.bigquery.latest_view(table) == "shop_orders"
    assert pipeline.bigquery.asset_uri(table) == "bigquery://my-project-1/cdc/shop_orders"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["pipelines", 0, "tables", 0, "primary_key"],
            KeyError,
            "pipeline 'shop' field tables[0]: 'primary_key' is required for a dms source",
        ),
        (["pipelines", 0, "tables", 0, "primary_key"], [], "field tables[0].primary_key: [] should be non-empty"),
        (
            ["pipelines", 0, "tables", 0, "name"],
            "orders; DROP TABLE x",
            "field tables[0].name: 'orders; DROP TABLE x' is not a plain name",
        ),
        (
            ["pipelines", 0, "tables", 0, "primary_key"],
            ["id`"],
            "field tables[0].primary_key[0]: 'id`' is not a plain name",
        ),
        (["pipelines", 0, "source", "colour"], "red", "field source: unknown key ('colour' was unexpected)"),
        (
            ["pipelines", 0, "source", "kind"],
            "kafka",
            "field source.kind: 'kafka' is not one of ['dms', 'firehose', 'dynamodb_stream', 'binlog', 'audit_log']",
        ),
        (
            ["pipelines", 0, "targets", "bigquery", "dataset"],
            "my-dataset",
            "field targets.bigquery.dataset: 'my-dataset' is not a plain name",
        ),
        (
            ["pipelines", 0, "tables", 0, "commit_timestamp_column"],
            "id",
            "field tables[0].commit_timestamp_column: 'id' is part of the primary key",
        ),
        (
            ["pipelines", 0, "source", "date_partition_timezone"],
            "Asia/Atlantis",
            "field source.date_partition_timezone: 'Asia/Atlantis' is not a time zone name (Area/Location",
        ),
        (["pipelines", 0, "source", "date_partition_timezone"], "../../etc/passwd", "is not a time zone name"),
    ],
)
def test_invalid_configs_name_the_pipeline_and_field(path, value, message):
    with pytest.raises(ConfigError) as error:
        parse_pipelines(_with(path, value), "pipelines.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("pipelines.yaml:")


def test_duplicate_table_and_pipeline():
    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["tables"].append(dict(doc["pipelines"][0]["tables"][0]))
    with pytest.raises(ConfigError, match=r"tables\[1\]: table 'shop.orders' is declared twice"):
        parse_pipelines(doc)
    doc = copy.deepcopy(VALID)
    doc["pipelines"].append(copy.deepcopy(doc["pipelines"][0]))
    with pytest.raises(ConfigError, match="pipeline 'shop' is declared twice"):
        parse_pipelines(doc)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_pipelines(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipelines: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_pipelines(broken)


def test_pools_named_by_aurora_targets():
    from cdc_sync.config import pools

    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["targets"]["aurora"] = {"database": "replica", "pool_slots": 3}
    (pipeline,) = parse_pipelines(doc)
    assert pipeline.aurora.task_pool_slots == 2  # a merge load opens load_connections (default 2)
    assert pools([pipeline]) == {
        "cdc_sync_aurora": {
            "slots": 3,
            "include_deferred": False,
            "description": "cdc-sync: caps concurrent connections of Aurora loads",
        },
    }
    assert pools(parse_pipelines(VALID)) == {}


def test_a_shared_pool_keeps_room_for_the_widest_load_task():
    from cdc_sync.config import pools

    doc = copy.deepcopy(VALID)
    narrow, wide = doc["pipelines"][0], copy.deepcopy(doc["pipelines"][0])
    narrow["targets"]["aurora"] = {"database": "replica", "pool_slots": 2, "load_connections": 1}
    wide["name"] = "shop_wide"
    wide["targets"]["aurora"] = {"database": "replica", "pool_slots": 4, "load_connections": 4}
    doc["pipelines"].append(wide)
    # the smallest size asked for is 2, but a load of shop_wide takes 4 slots: a pool of 2 would never run it
    assert pools(parse_pipelines(doc))["cdc_sync_aurora"]["slots"] == 4


def test_load_connections_must_fit_the_pool():
    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["targets"]["aurora"] = {"database": "replica", "pool_slots": 2, "load_connections": 3}
    with pytest.raises(
        ConfigError,
        match=r"pipeline 'shop' field targets.aurora.load_connections: 3 connections "
        r"need as many slots, but the pool has pool_slots 2",
    ):
        parse_pipelines(doc)
    doc["pipelines"][0]["targets"]["aurora"]["load_connections"] = 0
    with pytest.raises(ConfigError, match=r"field targets.aurora.load_connections: 0 is less than the minimum of 1"):
        parse_pipelines(doc)


FIREHOSE = {
    "pipelines": [
        {
            "name": "web_clicks",
            "source": {"kind": "firehose", "bucket": "analytics-landing", "stream": "webAnalytics"},
            "tables": [{"schema": "web", "name": "clicks", "columns": ["event_id", "user_id", "page"]}],
            "targets": {"aurora": {"database": "analytics", "mode": "append", "table": "clicks"}},
        }
    ]
}


def test_firehose_pipeline_defaults():
    (pipeline,) = parse_pipelines(FIREHOSE)
    assert pipeline.source.kind == "firehose" and pipeline.source.file_format == "firehose"
    assert pipeline.source.table_prefix(pipeline.tables[0]) == "processed/"
    assert pipeline.source.error_prefix == "processing-failed/"
    assert pipeline.aurora.append_table(pipeline.tables[0]) == "clicks"


def test_firehose_prefix_as_the_delivery_stream_has_it():
    doc = copy.deepcopy(FIREHOSE)
    hive = "processed/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"
    doc["pipelines"][0]["source"].update(prefix=hive, error_prefix="errors/!{firehose:error-output-type}/")
    (pipeline,) = parse_pipelines(doc)
    assert pipeline.source.table_prefix(pipeline.tables[0]) == hive


def test_a_dms_prefix_has_no_firehose_expressions():
    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["source"]["prefix"] = "dms/!{timestamp:yyyy}/"
    with pytest.raises(ConfigError, match=re.escape("field source.prefix: !{…} expressions are Firehose's")):
        parse_pipelines(doc)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["tables"][0].pop("columns"), "'columns' (the CSV columns, in order) is required"),
        (lambda p: p["tables"].append({"schema": "web", "name": "views", "columns": ["a"]}), "feeds exactly one table"),
        (lambda p: p["targets"]["aurora"].update(mode="merge"), "needs targets.aurora with mode append"),
        (lambda p: p["source"].update(stream="web analytics"), "is not a Firehose stream name"),
        (lambda p: p["tables"][0].update(columns=["event_id varchar(36)"]), "lists column names only"),
        (
            lambda p: p["source"].update(prefix="clicks/!{partitionKeyFromQuery:customer_id}/"),
            "field source.prefix: !{partitionKeyFromQuery:customer_id}: with dynamic partitioning",
        ),
        (
            lambda p: p["source"].update(error_prefix="errors/!{timestamp:dd-MM-yyyy}/"),
            "field source.error_prefix: the timestamp expressions must run from the year down",
        ),
        (
            lambda p: p["source"].update(date_partition_timezone="Europe/Paris"),
            "field source.date_partition_timezone: DMS's DatePartitionTimezone",
        ),
    ],
)
def test_firehose_config_mistakes(change, message):
    doc = copy.deepcopy(FIREHOSE)
    change(doc["pipelines"][0])
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_pipelines(doc, "pipelines.yaml")


def _csv_doc(columns, csv=None, **table):
    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["source"].update(file_format="csv", **({"csv": csv} if csv is not None else {}))
    doc["pipelines"][0]["tables"][0].update(columns=columns, **table)
    return doc


def test_dms_csv_pipeline_reads_settings_and_typed_columns():
    (pipeline,) = parse_pipelines(
        _csv_doc(
            ["id bigint", "amount decimal(18,4)", "status enum('a','b c')"],
            csv={"add_column_name": True, "null_value": "\\N", "delimiter": "|"},
        )
    )
    settings = pipeline.source.csv
    assert (settings.add_column_name, settings.null_value, settings.delimiter, settings.rfc4180) == (
        True,
        "\\N",
        "|",
        True,
    )
    assert pipeline.tables[0].column_types == (
        ("id", "bigint"),
        ("amount", "decimal(18,4)"),
        ("status", "enum('a','b c')"),
    )
    assert pipeline.tables[0].column_names == ("id", "amount", "status")


@pytest.mark.parametrize(
    ("columns", "csv", "message"),
    [
        (None, None, "field tables[0].columns: required for file_format csv"),
        (["id", "name varchar(10)"], None, "field tables[0].columns: column 'id' needs its MySQL type"),
        (
            ["id bigint", "geo geometry"],
            None,
            "field tables[0].columns: column 'geo': 'geometry' is not a MySQL column type cdc-sync knows",
        ),
        (["name varchar(10)"], None, "field tables[0].columns: primary key column(s) id not declared"),
        (
            ["id bigint", "ts datetime(6)"],
            None,
            "field tables[0].columns: 'ts' is the commit timestamp column DMS adds",
        ),
        (["id bigint", "ID int"], None, "field tables[0].columns: a column is declared twice"),
        (["id bigint"], {"delimiter": ";;"}, "field source.csv.delimiter"),
        (["id bigint"], {"quote": "'"}, "field source.csv: unknown key"),
    ],
)
def test_dms_csv_config_mistakes_name_the_field(columns, csv, message):
    doc = _csv_doc(columns, csv)
    if columns is None:
        del doc["pipelines"][0]["tables"][0]["columns"]
    with pytest.raises(ConfigError, match=f"pipeline 'shop' {re.escape(message)}"):
        parse_pipelines(doc)


def _aurora_table(schema: str, name: str, **aurora) -> dict:
    doc = _with(["pipelines", 0, "tables", 0], {"schema": schema, "name": name, "primary_key": ["id"]})
    doc["pipelines"][0]["targets"]["aurora"] = {"database": "replica", **aurora}
    return doc


def test_names_the_targets_derive_must_fit_mysql():
    # <schema>_<table>_state: 40 + 1 + 40 + 6 = 87 characters, MySQL allows 64 (error 1103)
    schema, name = "s" * 40, "t" * 40
    with pytest.raises(ConfigError) as error:
        parse_pipelines(_aurora_table(schema, name), "pipelines.yaml")
    assert str(error.value) == (
        f"pipelines.yaml: pipeline 'shop' field tables[0] (schema {schema!r}, name {name!r}): the Aurora state "
        f"table '{schema}_{name}_state' would be 87 characters; the target allows 64. Use shorter names"
    )
    # the longest that fits: 30 + 1 + 27 + 6 = 64; one more character is refused
    (fits,) = parse_pipelines(_aurora_table("s" * 30, "t" * 27))
    assert len(fits.aurora.state_table(fits.tables[0])) == 64
    with pytest.raises(ConfigError, match=r"field tables\[0\] .*Aurora state table '\w+' would be 65 characters"):
        parse_pipelines(_aurora_table("s" * 30, "t" * 28))
    # BigQuery alone takes such names (tables up to 1024 bytes)
    (bigquery_only,) = parse_pipelines(
        _with(["pipelines", 0, "tables", 0], {"schema": schema, "name": name, "primary_key": ["id"]})
    )
    assert bigquery_only.bigquery.changelog_table(bigquery_only.tables[0]) == f"{schema}_{name}_changelog"


def test_firehose_append_table_name_must_fit_mysql():
    doc = {
        "pipelines": [
            {
                "name": "clicks",
                "source": {"kind": "firehose", "bucket": "my-landing", "prefix": "processed/"},
                "tables": [{"schema": "w" * 40, "name": "e" * 40, "columns": ["id", "url"]}],
                "targets": {"aurora": {"database": "analytics", "mode": "append"}},
            }
        ]
    }
    with pytest.raises(
        ConfigError,
        match=r"pipeline 'clicks' field tables\[0\] .*: the Aurora table '\w+' would be "
        r"81 characters; the target allows 64. Set targets.aurora.table",
    ):
        parse_pipelines(doc)
    doc["pipelines"][0]["targets"]["aurora"]["table"] = "events"
    (pipeline,) = parse_pipelines(doc)
    assert pipeline.aurora.append_table(pipeline.tables[0]) == "events"


def test_duplicate_keys_are_refused_naming_both_lines(tmp_path):
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        "pipelines:\n"
        "  - name: shop\n"
        "    source: {kind: dms, bucket: landing}\n"
        "    tables: [{schema: s, name: t, primary_key: [id]}]\n"
        "    targets: {bigquery: {project: p, dataset: d}}\n"
        "    name: other\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_pipelines(path)
    assert str(refused.value) == (
        f"{path}: line 6: key 'name' is already set on line 2 of the same mapping (YAML keys must be unique)"
    )

    # a key set through a merge (`<<`) may still be overridden: that is what merges are for
    path.write_text(
        "pipelines:\n"
        "  - name: shop\n"
        "    source: &base {kind: dms, bucket: landing, prefix: a}\n"
        "    tables: &tables [{schema: s, name: t, primary_key: [id]}]\n"
        "    targets: &targets {bigquery: {project: local-proj, dataset: d}}\n"
        "  - name: shop_b\n"
        "    source: {<<: *base, prefix: b}\n"
        "    tables: *tables\n"
        "    targets: *targets\n"
    )
    assert [p.source.prefix for p in load_pipelines(path)] == ["a", "b"]


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    import time

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    path = tmp_path / "pipelines.yaml"
    path.write_text("\n".join(levels) + "\npipelines: *i\n")  # 9^9 strings from 356 bytes
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to .* nodes through its YAML aliases") as refused:
        load_pipelines(path)
    assert time.perf_counter() - start < 1.0
    assert str(refused.value).startswith(f"{path}: ")
