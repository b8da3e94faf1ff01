"""The Firehose transform Lambda with the record and response shapes Firehose uses."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest

from cdc_sync.sources.firehose.transform import TransformSpec, handler, transform_records
from tools.firehose_standin import dynamodb_stream_record

SPEC = TransformSpec.from_dict(
    {
        "columns": ["event_id", "user_id", "page", "referrer", "ts", "is_bot", "props"],
        "schema": {
            "type": "object",
            "required": ["event_id", "user_id", "page", "ts"],
            "properties": {
                "event_id": {"type": "string", "minLength": 1},
                "user_id": {"type": "integer"},
                "page": {"type": "string"},
                "referrer": {"type": ["string", "null"]},
                "ts": {"type": "string"},
                "is_bot": {"type": "boolean"},
                "props": {"type": "object"},
            },
        },
    }
)


def _event(*documents) -> dict:
    records = []
    for n, document in enumerate(documents):
        raw = document if isinstance(document, bytes) else json.dumps(document, ensure_ascii=False).encode()
        records.append(
            {
                "recordId": f"4953{n:04d}",
                "approximateArrivalTimestamp": 1763881200000,
                "data": base64.b64encode(raw).decode(),
            }
        )
    return {
        "invocationId": "inv-1",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123:deliverystream/web",
        "region": "us-east-1",
        "records": records,
    }


def _line(record: dict) -> list[str]:
    text = base64.b64decode(record["data"]).decode("utf-8")
    assert text.endswith("\n")
    return next(csv.reader(io.StringIO(text)))


def test_valid_records_become_one_csv_line_each_with_hostile_text_intact():
    page = 'a, "quoted" page\nwith newline – 😀'
    response = transform_records(
        _event(
            {
                "event_id": "e1",
                "user_id": 7,
                "page": page,
                "referrer": None,
                "ts": "2026-11-23T07:00:00Z",
                "is_bot": False,
                "props": {"k": "v, w"},
            },
            {"event_id": "e2", "user_id": 8, "page": "back\\slash", "ts": "2026-11-23T07:00:01Z"},
        ),
        SPEC,
    )
    first, second = response["records"]
    assert [r["recordId"] for r in response["records"]] == ["49530000", "49530001"]
    assert first["result"] == second["result"] == "Ok"
    assert _line(first) == ["e1", "7", page, "\\N", "2026-11-23T07:00:00Z", "0", '{"k":"v, w"}']
    # absent optional fields are NULL (\N); backslashes doubled for LOAD DATA ... ESCAPED BY '\'
    assert _line(second) == ["e2", "8", "back\\\\slash", "\\N", "2026-11-23T07:00:01Z", "\\N", "\\N"]


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"event_id": "e3", "page": "p", "ts": "t"}, "'user_id' is a required property"),
        ({"event_id": "e4", "user_id": "seven", "page": "p", "ts": "t"}, "user_id: 'seven' is not of type 'integer'"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "a record must be a JSON object"),
        (b"\xff\xfe", "not base64 UTF-8"),
    ],
)
def test_invalid_records_are_processing_failed_with_their_data_and_a_logged_reason(document, reason):
    logged = []
    event = _event(document)
    response = transform_records(event, SPEC, log=logged.append)
    (record,) = response["records"]
    assert record == {"recordId": "49530000", "result": "ProcessingFailed", "data": event["records"][0]["data"]}
    assert reason in json.loads(logged[0])["reason"]


def test_a_bad_record_does_not_affect_the_others():
    response = transform_records(
        _event(
            {"event_id": "ok", "user_id": 1, "page": "p", "ts": "t"},
            b"garbage",
            {"event_id": "ok2", "user_id": 2, "page": "p", "ts": "t"},
        ),
        SPEC,
        log=lambda _: None,
    )
    assert [r["result"] for r in response["records"]] == ["Ok", "ProcessingFailed", "Ok"]


def test_handler_reads_its_spec_from_the_environment(tmp_path, monkeypatch):
    from cdc_sync.sources.firehose import transform

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"columns": ["a"], "schema": {"type": "object"}}))
    monkeypatch.setenv("CDC_SYNC_TRANSFORM_SPEC", str(spec_file))
    transform._spec_from_env.cache_clear()
    response = handler(_event({"a": "x,y"}))
    assert _line(response["records"][0]) == ["x,y"]


DYNAMO_SPEC = TransformSpec.from_dict(
    {
        "columns": [
            "_event_id",
            "_event_name",
            "event_id",
            "user_id",
            "price",
            "tags",
            "blob",
            "is_bot",
            "props",
            "note",
        ],
        "schema": {
            "type": "object",
            "required": ["event_id", "user_id"],
            "properties": {
                "event_id": {"type": "string"},
                "user_id": {"type": "integer"},
                "price": {"type": "number"},
                "tags": {"type": "array"},
                "blob": {"type": "string"},
                "is_bot": {"type": "boolean"},
                "props": {"type": "object"},
                "note": {"type": ["string", "null"]},
            },
            "additionalProperties": False,
        },
    }
)


def _stream_record(event_name: str, new_image: dict | None) -> dict:
    return dynamodb_stream_record(
        event_name, new_image, "c81e728d9d4c2f636f067f89cc14862c", keys={"event_id": {"S": "e1"}}
    )


def test_dynamodb_stream_records_are_unmarshalled_typed_values_exact():
    image = {
        "event_id": {"S": "e1"},
        "user_id": {"N": "7"},
        "price": {"N": "19.990"},
        "tags": {"SS": ["b", "a, c"]},
        "blob": {"B": base64.b64encode(b"\x00\xff").decode()},
        "is_bot": {"BOOL": True},
        "props": {"M": {"n": {"N": "2.5"}, "k": {"L": [{"N": "1"}, {"S": "x"}]}}},
        "note": {"NULL": True},
    }
    response = transform_records(_event(_stream_record("INSERT", image)), DYNAMO_SPEC)
    (record,) = response["records"]
    assert record["result"] == "Ok"
    assert _line(record) == [
        "c81e728d9d4c2f636f067f89cc14862c",
        "INSERT",
        "e1",
        "7",
        "19.990",
        '["a, c","b"]',
        "AP8=",
        "1",
        '{"n":2.5,"k":[1,"x"]}',
        "\\N",
    ]


def test_dynamodb_remove_is_dropped_and_an_image_less_insert_names_the_stream_view_type():
    logged = []
    response = transform_records(
        _event(
            _stream_record("REMOVE", None),
            _stream_record("INSERT", None),
            _stream_record("MODIFY", {"event_id": {"S": "e1"}, "user_id": {"S": "seven"}}),
            _stream_record("INSERT", {"event_id": {"S": "e2"}, "user_id": {"N": "8"}, "extra": {"S": "x"}}),
        ),
        DYNAMO_SPEC,
        log=logged.append,
    )
    assert [r["result"] for r in response["records"]] == [
        "Dropped",
        "ProcessingFailed",
        "ProcessingFailed",
        "ProcessingFailed",
    ]
    reasons = [json.loads(line)["reason"] for line in logged]
    assert "REMOVE" in reasons[0]
    assert "NEW_IMAGE or NEW_AND_OLD_IMAGES" in reasons[1]
    assert "user_id: 'seven' is not of type 'integer'" in reasons[2]
    assert "'extra' was unexpected" in reasons[3]


def test_records_nested_too_deeply_fail_alone_and_the_good_records_beside_them_are_ok():
    good = {"event_id": "ok", "user_id": 1, "page": "p", "ts": "t"}
    deep_json = ("[" * 2000 + "]" * 2000).encode()  # past the JSON decoder's recursion limit
    deep_object = (
        '{"event_id": "deep", "user_id": 3, "page": "p", "ts": "t", "props": ' + '{"a":' * 2000 + "1" + "}" * 2001
    ).encode()
    nested = json.loads('{"a":' * 600 + "1" + "}" * 600)  # deep, but within what JSON takes: loads as text
    logged = []
    event = _event(good, deep_json, {**good, "event_id": "ok2", "props": nested}, deep_object)
    response = transform_records(event, SPEC, log=logged.append)
    assert [r["recordId"] for r in response["records"]] == [r["recordId"] for r in event["records"]]
    assert [r["result"] for r in response["records"]] == ["Ok", "ProcessingFailed", "Ok", "ProcessingFailed"]
    assert _line(response["records"][0])[0] == "ok"
    ok2 = _line(response["records"][2])
    assert ok2[0] == "ok2" and json.loads(ok2[6]) == nested
    # a refused record is answered with its own data (Firehose writes it to the error prefix)
    assert response["records"][1]["data"] == event["records"][1]["data"]
    assert response["records"][3]["data"] == event["records"][3]["data"]
    reasons = [json.loads(line)["reason"] for line in logged]
    assert len(reasons) == 2 and all("nested too deeply" in reason for reason in reasons)
