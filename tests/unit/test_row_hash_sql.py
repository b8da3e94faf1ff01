"""Row-hash SQL per engine: identifiers checked, NULL kept apart from '', floats refused."""

from __future__ import annotations

import pytest

from cdc_sync.reconcile.dialects import BigQueryDialect, HashColumn, MySqlDialect
from cdc_sync.sql import UnsafeIdentifier


def test_null_is_a_marker_and_values_are_prefixed():
    for dialect in (MySqlDialect(), BigQueryDialect()):
        text = dialect.row_hash([HashColumn("name", "text")])
        assert "COALESCE(CONCAT('v', " in text and "'n')" in text


def test_hostile_column_names_never_reach_the_sql():
    for dialect in (MySqlDialect(), BigQueryDialect()):
        with pytest.raises(UnsafeIdentifier):
            dialect.row_hash([HashColumn("x`); DROP TABLE t; --", "text")])


def test_floats_are_not_hashed_across_engines():
    with pytest.raises(ValueError, match="cannot hash kind 'float'"):
        HashColumn("ratio", "float")
