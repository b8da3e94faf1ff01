"""A Firehose source's CSV dialect: its settings, and RFC 4180 objects turned into the form
the append load reads (checked by reading that form back as LOAD DATA would)."""

from __future__ import annotations

import copy
import csv
import io
import re

import pytest

from cdc_sync.config import ConfigError, parse_pipelines
from cdc_sync.sources.firehose.dialects import DialectError, rfc4180_to_escaped
from tests.unit.test_config import FIREHOSE, VALID


def test_a_firehose_source_is_rfc4180_unless_it_says_otherwise():
    (pipeline,) = parse_pipelines(FIREHOSE)
    assert pipeline.source.csv_dialect == "rfc4180" and pipeline.source.csv_null_value is None
    doc = copy.deepcopy(FIREHOSE)
    doc["pipelines"][0]["source"].update(csv_dialect="backslash_escaped")
    assert parse_pipelines(doc)[0].source.csv_dialect == "backslash_escaped"
    doc["pipelines"][0]["source"].update(csv_dialect="rfc4180", csv_null_value="")
    assert parse_pipelines(doc)[0].source.csv_null_value == ""


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # accepted and ignored before: DMS's endpoint settings say nothing about a Firehose object
        ({"csv": {"null_value": "\\N"}}, "field source.csv: the settings of a DMS CSV endpoint; a firehose source"),
        (
            {"csv_dialect": "backslash_escaped", "csv_null_value": ""},
            "field source.csv_null_value: only for csv_dialect rfc4180",
        ),
        ({"csv_dialect": "excel"}, "field source.csv_dialect: 'excel' is not one of ['rfc4180', 'backslash_escaped']"),
    ],
)
def test_firehose_csv_mistakes_name_the_field(source, message):
    doc = copy.deepcopy(FIREHOSE)
    doc["pipelines"][0]["source"].update(source)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_pipelines(doc, "pipelines.yaml")


def test_a_dms_source_has_no_firehose_dialect():
    doc = copy.deepcopy(VALID)
    doc["pipelines"][0]["source"]["csv_dialect"] = "rfc4180"
    with pytest.raises(ConfigError, match=re.escape("field source.csv_dialect: a firehose setting")):
        parse_pipelines(doc)


def _loaded_as(escaped: str) -> list[list[str | None]]:
    """The escaped form read as LOAD DATA … ESCAPED BY '\\' reads it (every field is quoted,
    so only the escape sequences \\\\ and a whole \\N matter)."""
    rows = []
    for record in csv.reader(io.StringIO(escaped, newline="")):
        rows.append([None if v == "\\N" else re.sub(r"\\(.)", r"\1", v, flags=re.S) for v in record])
    return rows


def test_rfc4180_becomes_the_escaped_form_value_for_value(tmp_path):
    values = ["back\\slash", "\\N", "NULL", "", 'a\\"b', "a\\,b", "tab\t", "cr\r\nlf", "ends\\", "😀"]
    records = [[f"k{i}", v, values[(i + 3) % len(values)]] for i, v in enumerate(values)]
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    with source.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(records)
    assert rfc4180_to_escaped(source, target, ["k", "a", "b"]) == len(records)
    escaped = target.read_bytes().decode("utf-8")
    assert '"NULL"' in escaped  # quoted: LOAD DATA reads an unquoted NULL as NULL
    assert _loaded_as(escaped) == records

    assert rfc4180_to_escaped(source, target, ["k", "a", "b"], null_value="NULL") == len(records)
    assert _loaded_as(target.read_bytes().decode("utf-8")) == [[None if v == "NULL" else v for v in r] for r in records]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'a,b,c\nd,"e"f,g\n', "record 2 (line 2): ',' expected after '\"'"),
        (b"a,b,c\n\nd,e,f\n", "record 2 (ending on line 2) has an empty line"),
        (b'a,b,c\nd,"e\nf\n', "record 2 (line 3): unexpected end of data"),
        (b"a,b,\xe9\n", "not UTF-8 text"),
    ],
)
def test_what_rfc4180_cannot_say_is_refused_by_line(tmp_path, body, message):
    source = tmp_path / "in.csv"
    source.write_bytes(body)
    with pytest.raises(DialectError, match=re.escape(message)):
        rfc4180_to_escaped(source, tmp_path / "out.csv", ["x", "y", "z"])
