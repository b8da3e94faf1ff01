"""The Aurora statements as text: LOAD DATA FROM S3 cannot run here (Aurora only), so its
SQL is checked; the same template with LOCAL INFILE runs against MariaDB in the
integration tests."""

from __future__ import annotations

import pytest

from cdc_sync import sql
from cdc_sync.sources.column_types import ColumnType
from cdc_sync.targets.aurora.schema import widened_decimal


def _load(method: str, source: str, stored_commit_ts: bool = False) -> str:
    return sql.render(
        "aurora/load_data.sql",
        database="replica",
        method=method,
        source=source,
        stage="_cdc_stage",
        columns=["id", "photo"],
        hex_columns=["photo"],
        phase="1",
        position_name="20261123-070000000.parquet",
        stored_commit_ts=stored_commit_ts,
    )


def test_load_data_from_s3_text():
    text = " ".join(_load("aurora_s3", "s3://landing/cdc-sync/staging/p/dms/shop/t/x.parquet.00000.csv").split())
    assert "LOAD DATA FROM S3 FILE 's3://landing/cdc-sync/staging/p/dms/shop/t/x.parquet.00000.csv'" in text
    assert "INTO TABLE `replica`.`_cdc_stage` CHARACTER SET utf8mb4" in text
    assert "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'" in text
    assert "(`id`, @photo, @cdc_us, @cdc_row, _cdc_deleted) SET `photo` = UNHEX(@photo)," in text
    assert (
        "_cdc_position = CONCAT('1', '|', LPAD(IFNULL(@cdc_us, 0), 20, '0'), '|', '20261123-070000000.parquet', "
        "'|', LPAD(@cdc_row, 12, '0'))"
    ) in text
    assert "LOCAL" not in text
    assert "_cdc_commit_ts" not in text  # the state table reads it from the position


def test_a_stored_commit_time_is_filled_from_the_commit_microseconds():
    text = " ".join(_load("local_infile", "/tmp/x.csv", stored_commit_ts=True).split())
    assert (
        "_cdc_commit_ts = IF(IFNULL(@cdc_us, 0) = 0, NULL, TIMESTAMPADD(MICROSECOND, @cdc_us, "
        "TIMESTAMP '1970-01-01 00:00:00')),"
    ) in text


def test_load_data_local_infile_text():
    text = " ".join(_load("local_infile", "/tmp/cdc-sync-aurora-x/aurora-000000-00000.csv").split())
    assert "LOAD DATA LOCAL INFILE '/tmp/cdc-sync-aurora-x/aurora-000000-00000.csv'" in text


def test_append_from_s3_text_reads_the_firehose_object_and_ignores_repeated_keys():
    text = " ".join(
        sql.render(
            "aurora/load_append.sql",
            database="web",
            method="aurora_s3",
            table="clicks",
            columns=["event_id", "page"],
            source="s3://clicks/processed/2026/11/23/07/web-1-2026-11-23-07-50-52-0f0e3c9a",
        ).split()
    )
    assert (
        "LOAD DATA FROM S3 FILE 's3://clicks/processed/2026/11/23/07/web-1-2026-11-23-07-50-52-0f0e3c9a' "
        "IGNORE INTO TABLE `web`.`clicks` CHARACTER SET utf8mb4 FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY "
        "'\"' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' (`event_id`, `page`)"
    ) in text


@pytest.mark.parametrize("source", ["/tmp/x'; DROP TABLE t; --.csv", "s3://b/k\\n", "/tmp/a\nb"])
def test_paths_that_would_break_the_sql_text_are_refused(source):
    with pytest.raises(sql.UnsafeIdentifier):
        _load("local_infile", source)


def test_merge_updates_only_from_newer_positions_and_sets_the_position_last():
    text = sql.render(
        "aurora/apply_merge.sql",
        database="replica",
        table="shop_t_state",
        stage="_cdc_stage",
        columns=["id", "qty", "_cdc_position", "_cdc_deleted"],
        primary_key=("id",),
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert (
        "`replica`.`shop_t_state`.`qty` = IF(VALUES(_cdc_position) > `replica`.`shop_t_state`._cdc_position, "
        "VALUES(`qty`), `replica`.`shop_t_state`.`qty`)," in lines
    )
    assert (
        lines[-1]
        == "`replica`.`shop_t_state`._cdc_position = GREATEST(`replica`.`shop_t_state`._cdc_position, VALUES(_cdc_position))"
    )
    assert not any(line.startswith("`replica`.`shop_t_state`.`id` =") for line in lines)  # keys are never updated


@pytest.mark.parametrize(
    ("as_text", "expression"),
    [
        (True, "DATE_FORMAT(_cdc_commit_ts, '%Y-%m-%d %H:%i:%s.%f') AS `cdc_commit_ts`,"),  # DMS's text
        (False, "_cdc_commit_ts AS `cdc_commit_ts`,"),  # the file has it as a timestamp
    ],
)
def test_the_view_shows_the_timestamp_column_from_the_commit_time(as_text, expression):
    text = " ".join(
        sql.render(
            "aurora/live_view.sql",
            database="replica",
            view="shop_t",
            table="shop_t_state",
            columns=["id", "qty"],
            commit_ts_column="cdc_commit_ts",
            commit_ts_as_text=as_text,
        ).split()
    )
    assert f"SELECT `id`, `qty`, {expression} _cdc_position, _cdc_commit_ts, _cdc_loaded_at" in text


@pytest.mark.parametrize(
    ("column", "kind", "wider"),
    [
        ("decimal(18,4)", ColumnType("NUMERIC", 22, 8), "DECIMAL(30,8)"),  # both grew
        ("decimal(18,4)", ColumnType("NUMERIC", 10, 6), "DECIMAL(20,6)"),  # scale grew: integer digits kept
        ("decimal(18,4)", ColumnType("NUMERIC", 20, 2), "DECIMAL(24,4)"),  # integer digits grew: scale kept
        ("decimal(18,4)", ColumnType("NUMERIC", 14, 4), None),  # the same
        ("decimal(18,4)", ColumnType("NUMERIC", 5, 2), None),  # narrower in the file: the column holds it
        ("decimal(65,20)", ColumnType("BIGNUMERIC", 10, 30), None),  # (45+30) digits do not fit DECIMAL's 65
        ("decimal(60,30)", ColumnType("BIGNUMERIC", 35, 38), "DECIMAL(65,30)"),  # capped at MySQL's limits
        ("bigint(20)", ColumnType("NUMERIC", 20, 0), None),  # not a DECIMAL: a type conflict, found elsewhere
        ("decimal(18,4)", ColumnType("INTEGER"), None),
    ],
)
def test_widened_decimal_holds_the_column_and_the_file_never_narrower(column, kind, wider):
    assert widened_decimal(column, kind) == wider


def test_every_schema_change_of_a_file_is_one_alter_table():
    text = " ".join(
        sql.render(
            "aurora/alter_state_table.sql",
            database="replica",
            table="shop_t_state",
            primary_key=["id"],
            widened=[("amount", "DECIMAL(30,8)")],
            added=[("note", "LONGTEXT"), ("points", "BIGINT")],
        ).split()
    )
    assert text.endswith(
        "ALTER TABLE `replica`.`shop_t_state` MODIFY COLUMN `amount` DECIMAL(30,8) NULL, "
        "ADD COLUMN `note` LONGTEXT NULL, ADD COLUMN `points` BIGINT NULL"
    )
    with pytest.raises(sql.UnsafeIdentifier):
        sql.render(
            "aurora/alter_state_table.sql",
            database="replica",
            table="t",
            primary_key=["id"],
            widened=[],
            added=[("x`; DROP TABLE t; --", "BIGINT")],
        )


def test_the_loaders_connection_sends_only_the_file_its_load_statement_names():
    from cdc_sync.orchestration.hooks.mysql import local_file_of

    load = _load("local_infile", "/tmp/cdc-sync-aurora-x/aurora-000000-000000001000.csv")
    assert local_file_of(load) == "/tmp/cdc-sync-aurora-x/aurora-000000-000000001000.csv"
    assert local_file_of(_load("aurora_s3", "s3://landing/x.csv")) is None
    assert local_file_of("SET SESSION time_zone = '+00:00'") is None
    assert local_file_of("SELECT 1; LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t") is None
    assert local_file_of("/* c */ load data concurrent local infile '/dev/fd/7' into table t") == "/dev/fd/7"
