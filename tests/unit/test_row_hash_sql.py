"""Row-hash SQL per engine: identifiers checked, NULL kept apart from '', unknown kinds refused."""

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


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="cannot hash kind 'geometry'"):
        HashColumn("shape", "geometry")


def test_native_columns_hash_as_printed_with_a_null_bitmap():
    text = MySqlDialect("crc32").row_hash(
        [HashColumn("a", "text", native=True), HashColumn("b", "integer", native=True)]
    )
    assert text.startswith("CRC32(") and "COALESCE" not in text
    assert "(`a` IS NULL) * 1 + (`b` IS NULL) * 2" in text  # NULL and '' differ without per-column markers


def test_native_doubles_hash_exponent_and_mantissa_as_integers():
    text = MySqlDialect("crc32").native(HashColumn("d", "float", native=True))
    assert "CAST(`d` * POW(2, 53 - FLOOR(LOG2(ABS(`d`)))) AS SIGNED)" in text
    assert text.startswith("IF(ABS(`d`) < 1E-290, CAST(`d` AS CHAR)")  # POW would overflow below


def test_single_precision_floats_compare_fewer_digits():
    assert "- 5))" in MySqlDialect().value(HashColumn("r", "float", digits=6))
    assert "- 11))" in BigQueryDialect().value(HashColumn("r", "float"))


def test_float_digits_that_round_up_to_a_power_of_ten_drop_a_digit():
    # 999999.97 → 1000000 (7 digits) would print as 1000000e-11 where 1e-05 prints 100000e-10
    assert ">= 1000000)" in MySqlDialect().value(HashColumn("r", "float", digits=6))
    assert ">= 1000000000000)" in BigQueryDialect().value(HashColumn("r", "float"))


def test_text_is_framed_by_its_byte_length_in_both_engines():
    assert "CONCAT(LENGTH(CAST(`a` AS CHAR CHARACTER SET utf8mb4)), ':', " in MySqlDialect().row_hash(
        [HashColumn("a", "text")]
    )
    assert "CONCAT(CAST(BYTE_LENGTH(CAST(`a` AS STRING)) AS STRING), ':', " in BigQueryDialect().row_hash(
        [HashColumn("a", "text")]
    )
    native = MySqlDialect("crc32").row_hash([HashColumn("a", "text", native=True)])
    assert "CONCAT(LENGTH(`a`), ':', `a`)" in native
    assert "CAST(`n` AS CHAR)" in MySqlDialect().row_hash([HashColumn("n", "integer")])  # numbers hold no separator
    assert "LENGTH(" not in MySqlDialect().row_hash([HashColumn("n", "integer")])


def test_zero_dates_count_as_null_and_strong_mode_digests_sorted_row_hashes():
    assert "IF(LEFT(DATE_FORMAT(`d`, '%Y-%m-%d'), 10) = '0000-00-00', NULL" in MySqlDialect().value(
        HashColumn("d", "date")
    )
    assert MySqlDialect("crc32").native(HashColumn("d", "date", native=True)) == "NULLIF(`d`, 0)"
    assert MySqlDialect("sha256").checksum("h") == "SHA2(GROUP_CONCAT(h ORDER BY h SEPARATOR ''), 256)"
    assert BigQueryDialect("sha256").checksum("h") == "TO_HEX(SHA256(STRING_AGG(h, '' ORDER BY h)))"
    assert MySqlDialect("sha256").row_hash([HashColumn("a", "text")]).startswith("SHA2(")
    assert "MD5(" in MySqlDialect("sha256").key_hash([HashColumn("a", "text")])  # buckets by key: MD5 still
