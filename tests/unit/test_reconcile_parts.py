"""Reconciliation pieces that need no database: bucket predicates, verdicts, report text."""

from __future__ import annotations

import datetime as dt
import json

from cdc_sync.reconcile.diff import Comparison, Difference, Level
from cdc_sync.reconcile.repair import keys_to_repair
from cdc_sync.reconcile.report import html_page, markdown, report_key
from cdc_sync.reconcile.sides import BigQuerySide, MySqlSide


def _mysql():
    return MySqlSide("source", connect=lambda: None, database="shop", relation="customers")


def _bigquery():
    return BigQuerySide("bigquery", client=None, project="local", dataset="d", relation="v")


def test_adjacent_range_buckets_become_one_index_range():
    level = Level("id", width=10, origin=1)
    assert level.where(_mysql(), "kh", [3, 1, 2, 7]) == "`id` BETWEEN 11 AND 40 OR `id` BETWEEN 71 AND 80"
    assert level.split(4) == Level("id", width=3, origin=1)  # ceil(10 / 4)
    assert level.where(_mysql(), "kh", []) == "FALSE"


def test_hash_buckets_split_into_residues_of_a_multiple_modulus():
    level = Level(None, modulus=16)
    assert level.where(_bigquery(), "kh", [5, 3]) == "MOD((kh), 16) IN (3, 5)"
    assert level.split(8).modulus == 128  # residue r of 16 splits into r, r + 16, … r + 112 of 128


def test_a_leading_key_value_with_too_many_rows_is_split_by_key_hash_within_it():
    ranges = Level("tenant", width=1, origin=0)
    level = ranges.split(8, [3, 4])
    assert level == Level(None, modulus=8, within=(ranges, (3, 4)))
    assert level.where(_mysql(), "kh", [1]) == "(`tenant` BETWEEN 3 AND 4) AND MOD(kh, 8) IN (1)"
    assert level.split(4).within == level.within and level.split(4).modulus == 32


def test_bucket_numbers_are_integer_divisions_in_both_engines():
    assert _mysql().dialect.bucket("`id`", 5, 100) == "((`id` - 5) DIV 100)"
    assert _bigquery().dialect.bucket("`id`", 5, 100) == "DIV((`id` - 5), 100)"


def test_verdict_and_json_safe_sample():
    c = Comparison(table="shop.t", target="aurora", source_rows=3, target_rows=3)
    assert c.status == "in_sync"
    c.lag = 1
    assert c.status == "lag"
    c.sample = [Difference({"id": b"\x01", "at": dt.datetime(2026, 1, 1)}, "changed", ["name"])]
    c.changed = 1
    assert c.status == "drift"
    assert json.loads(json.dumps(c.to_dict()))["sample"][0]["key"] == {"id": "b'\\x01'", "at": "2026-01-01 00:00:00"}
    assert Comparison(table="t", target="aurora", partial=True).status == "drift"  # lower bounds: never in sync


def test_report_lists_status_and_keys_and_escapes_hostile_text():
    rows = [
        {
            "table_name": "shop.t",
            "target": "aurora",
            "status": "drift",
            "source_rows": 2,
            "target_rows": 1,
            "missing_rows": 1,
            "extra_rows": 0,
            "changed_rows": 0,
            "lag_rows": 0,
            "watermark": None,
            "seconds": 0.5,
            "sample_keys": [{"key": {"code": "<b>|x"}, "kind": "missing", "columns": [], "lag": False}],
        }
    ]
    text = markdown("shop", "run-1", rows)
    assert "| shop.t | aurora | ❌ drift | 2 | 1 | 1 | 0 | 0 | 0 |" in text
    assert "code=<b>\\|x missing" in text  # a pipe in a key does not break the table
    page = html_page("shop", "run-1", rows)
    assert "&lt;b&gt;|x missing" in page and "<b>|x" not in page
    assert (
        report_key("cdc-sync/reports/", "shop", "manual__2026-11-23T15:38:04+00:00", "md")
        == "cdc-sync/reports/shop/manual__2026-11-23T15_38_04_00_00.md"
    )


def test_keys_to_repair_are_each_key_that_drifted_in_any_target_once():
    aurora = Comparison(
        table="shop.t",
        target="aurora",
        differences=[
            Difference({"id": 1}, "changed"),
            Difference({"id": 2}, "missing"),
            Difference({"id": 3}, "changed", lag=True),
        ],
    )
    bigquery = Comparison(table="shop.t", target="bigquery", differences=[Difference({"id": 2}, "missing")])
    assert keys_to_repair([aurora, bigquery]) == [{"id": 1}, {"id": 2}]  # lag is not repaired


def test_lag_is_decided_at_the_precision_of_the_commit_times():
    from cdc_sync.reconcile.diff import is_lag

    whole = dt.datetime(2026, 11, 23, 8, 0, 0, tzinfo=dt.UTC)  # binlog commit times: whole seconds
    changed = dt.datetime(2026, 11, 23, 8, 0, 0, 400000)
    assert not is_lag(changed, row_commit=whole, watermark=whole)  # its change (commit 08:00:00) is loaded
    assert is_lag(changed, row_commit=whole - dt.timedelta(seconds=5), watermark=whole)  # not loaded yet
    assert not is_lag(changed - dt.timedelta(seconds=1), row_commit=None, watermark=whole)  # older than the watermark
    fine = whole + dt.timedelta(microseconds=5)  # microsecond commit times: the fraction counts
    assert is_lag(fine + dt.timedelta(microseconds=1), row_commit=None, watermark=fine)
    assert not is_lag(fine - dt.timedelta(microseconds=1), row_commit=None, watermark=fine)
    assert not is_lag(None, row_commit=None, watermark=fine) and not is_lag(changed, row_commit=None, watermark=None)


def test_repair_stamps_follow_what_the_target_holds_by_one_step():
    from cdc_sync.reconcile.diff import repair_stamp

    whole = dt.datetime(2026, 11, 23, 8, 0, 0, tzinfo=dt.UTC)
    row = dt.datetime(2026, 11, 23, 7, 0, 0)  # naive from MySQL: UTC
    assert repair_stamp(row, whole) == dt.datetime(2026, 11, 23, 7, 0, 1, tzinfo=dt.UTC)
    assert repair_stamp(None, whole) == whole + dt.timedelta(seconds=1)  # no row: after the watermark (tombstones)
    fine = whole + dt.timedelta(microseconds=7)
    assert repair_stamp(None, fine) == fine + dt.timedelta(microseconds=1)
    assert repair_stamp(None, None) is None  # nothing known: the source's clock


def test_keys_to_repair_carry_the_latest_stamp_any_target_needs():
    early, late = dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    aurora = Comparison(table="shop.t", target="aurora", differences=[Difference({"id": 1}, "changed", stamp=early)])
    bigquery = Comparison(table="shop.t", target="bigquery", differences=[Difference({"id": 1}, "missing", stamp=late)])
    (key,) = keys_to_repair([aurora, bigquery])
    assert key == {"id": 1} and key.stamp == late
    assert "stamp" not in json.dumps(aurora.to_dict())  # not part of the stored sample


def test_time_keys_and_keys_beyond_int64_compare_and_bind_exactly():
    from decimal import Decimal

    from cdc_sync.reconcile.sides import bigquery_parameter, key_token

    assert key_token(dt.timedelta(hours=-838, minutes=-59, seconds=-59)) == "-838:59:59"
    assert key_token(dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=1)) == "838:59:59.000001"
    assert key_token(dt.timedelta(seconds=-1, microseconds=500000)) == "-00:00:00.500000"
    big = bigquery_parameter("p0", 2**64 - 1)
    assert (big.type_, big.value) == ("NUMERIC", Decimal(2**64 - 1))
    assert bigquery_parameter("p1", 2**63 - 1).type_ == "INT64"


def test_a_source_column_missing_in_the_target_is_drift_and_float_keys_are_refused():
    import pytest

    from cdc_sync.reconcile.diff import ReconcileError, hash_columns

    source = {"id": ("integer", "int"), "name": ("text", "varchar(10)"), "extra": ("integer", "int")}
    target = {"id": ("integer", "INT64"), "name": ("text", "STRING")}
    missing: list[str] = []
    _, columns, ignored = hash_columns("shop.t", source, target, ["id"], set(), False, missing_columns=missing)
    assert missing == ["extra"] and [c.name for c in columns] == ["id", "name"]
    assert Comparison(table="t", target="bigquery", missing_columns=missing).status == "drift"
    with pytest.raises(ReconcileError, match="primary key column k is double, an approximate number"):
        hash_columns("shop.t", {"k": ("float", "double")}, {"k": ("float", "FLOAT64")}, ["k"], set(), False)
