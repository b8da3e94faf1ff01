"""Row hashes computed inside MariaDB (the source) and inside BigQuery (the latest-state view
the pipeline loaded) agree for every column type, and differ where a value differs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from cdc_sync.reconcile.dialects import BigQueryDialect, HashColumn, MySqlDialect
from tests.integration.harness import World, customer

pytestmark = pytest.mark.services

COLUMNS = [
    HashColumn("id", "integer"),
    HashColumn("qty", "integer"),
    HashColumn("amount", "decimal"),
    HashColumn("name", "text"),
    HashColumn("notes", "text"),
    HashColumn("updated_at", "timestamp"),
    HashColumn("seen_at", "timestamp"),
    HashColumn("birthday", "date"),
    HashColumn("active", "boolean"),
    HashColumn("attrs", "text"),
]


def _source_hashes(world) -> dict:
    with world.mysql.cursor() as cur:
        cur.execute(f"SELECT id, {MySqlDialect().row_hash(COLUMNS)} FROM `{world.db}`.`customers`")
        return dict(cur.fetchall())


def _bigquery_hashes(world) -> dict:
    view = f"local.{world.dataset}.{world.db}_customers"
    rows = world.bq.query(f"SELECT id, {BigQueryDialect().row_hash(COLUMNS)} AS h FROM `{view}`").result()
    return {r["id"]: r["h"] for r in rows}


def test_equal_rows_hash_equal_in_both_engines_and_a_changed_value_does_not(stack, unique_name, tmp_path):
    w = World(stack, unique_name, tmp_path)
    try:
        rows = [
            customer(1),
            customer(2, name="", notes=""),  # empty strings ...
            customer(
                3,
                qty=None,
                amount=None,
                name=None,
                notes=None,
                updated_at=None,
                seen_at=None,
                birthday=None,
                active=None,
                attrs=None,
            ),  # ... are not NULLs
            customer(
                4, name="𝄞 4-byte 😀 ü", amount=Decimal("-0.0001"), updated_at=dt.datetime(2026, 1, 1, 0, 0, 0, 1)
            ),
            customer(5, amount=Decimal("12345678901234.5678"), seen_at=dt.datetime(1999, 12, 31, 23, 59, 59, 999999)),
            customer(6, amount=Decimal("100")),  # no decimal part: trailing zeros of the integer stay
            customer(7, amount=Decimal("0")),
        ]
        for row in rows:
            w.dms.insert(w.customers, row)
        w.dms.full_load(w.customers)
        w.run_library()

        source, target = _source_hashes(w), _bigquery_hashes(w)
        assert set(source) == {1, 2, 3, 4, 5, 6, 7}
        assert source == target
        assert len(set(source.values())) == 7  # '' and NULL rows hash differently from each other

        # drift the source by one microsecond and one NULL-vs-empty, without a change file
        with w.mysql.cursor() as cur:
            cur.execute(f"UPDATE `{w.db}`.customers SET updated_at = updated_at + INTERVAL 1 MICROSECOND WHERE id = 1")
            cur.execute(f"UPDATE `{w.db}`.customers SET name = NULL WHERE id = 2")
        drifted = _source_hashes(w)
        assert {k for k in drifted if drifted[k] != target[k]} == {1, 2}
    finally:
        w.close()
