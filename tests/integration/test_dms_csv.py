"""DMS CSV output (DataFormat csv, DMS's default) into Aurora and BigQuery: bad CSV named by
file and line or record and column, quarantined without touching what loaded; the tables:
entries printed from a source catalog. (Every type through both targets from CSV, under two
endpoint settings, is test_dms_to_aurora's every-type test.)"""

from __future__ import annotations

import datetime as dt
import gzip

import pytest

from tests.integration.harness import World

pytestmark = pytest.mark.services
UTC = dt.UTC


@pytest.fixture
def make_world(stack, unique_name, tmp_path):
    worlds = []

    def make(**kwargs):
        w = World(stack, unique_name, tmp_path, aurora=True, file_format="csv", **kwargs)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        w.close()


def test_bad_csv_files_are_quarantined_by_name_and_the_rest_loads(make_world):
    world = make_world()
    expected = world.seed(range(1, 4))
    world.run_aurora()
    world.run_library()
    prefix = f"dms/{world.db}/customers/"
    good = world.dms.cdc_file_body
    # a line with one field too many, after a good line that must not be applied either
    world.dms.update(world.customers, {"id": 1}, {"qty": 9})
    body = good(world.customers, world.dms.tables[world.customers].pending).decode()
    world.dms.tables[world.customers].pending = []
    wide = body + body.rstrip("\n") + ",extra\n"
    world.s3.put_object(Bucket=world.bucket, Key=prefix + "20261123-080000000.csv", Body=wide.encode())
    # a value that is not a number in the qty column (record 1), gzip-compressed as DMS does with GZIP
    not_number = body.replace(",9,", ",nine,", 1)
    world.s3.put_object(
        Bucket=world.bucket, Key=prefix + "20261123-080100000.csv.gz", Body=gzip.compress(not_number.encode())
    )
    # a good gzip-compressed file after them
    world.dms.update(world.customers, {"id": 2}, {"qty": 22})
    body2 = good(world.customers, world.dms.tables[world.customers].pending)
    world.dms.tables[world.customers].pending = []
    world.s3.put_object(Bucket=world.bucket, Key=prefix + "20261123-080200000.csv.gz", Body=gzip.compress(body2))
    expected[2]["qty"] = 22

    (aurora,) = world.run_aurora()
    (bigquery,) = world.run_library()
    for report in (aurora, bigquery):
        assert set(report.quarantined) == {prefix + "20261123-080000000.csv", prefix + "20261123-080100000.csv.gz"}
        assert report.quarantined[prefix + "20261123-080000000.csv"].startswith("line 3 has 13 fields, expected 12")
        assert report.quarantined[prefix + "20261123-080100000.csv.gz"].startswith(
            "record 1: column qty: 'nine' is not a int32"
        )
        assert list(report.loaded) == [prefix + "20261123-080200000.csv.gz"]
    assert world.aurora_rows() == expected  # qty=9 of the refused files is in neither target
    assert world.view_rows() == expected


def test_files_that_do_not_match_the_declared_columns_are_refused_with_the_counts(make_world):
    world = make_world()
    world.seed(range(1, 3))
    tables = [
        {
            "schema": world.db,
            "name": "customers",
            "primary_key": ["id"],
            "columns": ["id bigint", "qty int", "amount decimal(18,4)"],
        }
    ]  # the source has 10 columns
    world.write_config(tables=tables)
    (aurora,) = world.run_aurora()
    ((key, reason),) = aurora.quarantined.items()
    assert key.endswith("LOAD00000001.csv")
    assert reason == (
        "line 1 has 11 fields; the table's 3 declared columns and the timestamp column cdc_commit_ts "
        "make 4 (or 5 with Op): the file does not match tables[].columns"
    )


def test_declare_columns_prints_entries_a_csv_pipeline_accepts(make_world, stack, monkeypatch, capsys):
    import yaml

    from cdc_sync.config import parse_pipelines
    from cdc_sync.sources.dms import declare_columns

    world = make_world()
    monkeypatch.setenv("AIRFLOW_CONN_CDC_SOURCE", stack.mariadb.airflow_conn(world.db))
    code = declare_columns.main(["--conn", "cdc_source", world.customers, world.lines, f"{world.db}.nope"])
    out, err = capsys.readouterr()
    assert code == 1 and f"{world.db}.nope: no such table" in err
    entries = yaml.safe_load(out[out.index("- schema:") :])  # Airflow's test logging may print before it
    assert [(e["name"], e["primary_key"]) for e in entries] == [
        ("customers", ["id"]),
        ("order_lines", ["order_id", "line_no"]),
    ]
    assert entries[0]["columns"] == world.dms.tables[world.customers].column_declarations
    # what it prints is a valid table list for a DMS CSV pipeline, and loads like the harness's own
    world.write_config(tables=[dict(e, commit_timestamp_column="cdc_commit_ts") for e in entries])
    (pipeline,) = parse_pipelines(yaml.safe_load(world.config_path.read_text()))
    assert pipeline.tables[1].column_names == ("order_id", "line_no", "sku", "price")
    world.seed(range(1, 3))
    world.run_aurora()
    assert world.aurora_rows() == world.source_rows(world.customers)
