"""DynamoDB stream capture parts: Lambda filter criteria, typed values → columns, and the
shard lineage / checkpoint rules driven by DescribeStream answers in the API's documented
shapes (moto has one open shard and never splits or trims one)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError

from cdc_sync.errors import SetupError
from cdc_sync.sources.dynamodb_stream.capture import (
    Checkpoint,
    LostHistoryError,
    StreamCapture,
    capture,
    reading_order,
)
from cdc_sync.sources.dynamodb_stream.filters import FilterCriteria, FilterError
from cdc_sync.sources.dynamodb_stream.images import ItemColumns, RecordError

# The seed's Lambda: only INSERT events whose new image has a `page` attribute.
SEED_FILTER = {
    "Filters": [
        {
            "Pattern": json.dumps(
                {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"page": {"S": [{"exists": True}]}}}}
            )
        }
    ]
}


def record(event: str, new: dict | None = None, old: dict | None = None, keys: dict | None = None, seq: str = "100"):
    body: dict = {"ApproximateCreationDateTime": dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC), "SequenceNumber": seq}
    body["Keys"] = keys if keys is not None else {"event_id": (new or old or {}).get("event_id", {"S": "e1"})}
    body["StreamViewType"] = "NEW_AND_OLD_IMAGES"
    if new is not None:
        body["NewImage"] = new
    if old is not None:
        body["OldImage"] = old
    return {"eventName": event, "eventSource": "aws:dynamodb", "dynamodb": body}


def test_seed_filter_passes_inserts_with_the_attribute_only():
    criteria = FilterCriteria.parse(SEED_FILTER)
    with_page = {"event_id": {"S": "e1"}, "page": {"S": "/home"}}
    assert criteria.matches(record("INSERT", with_page))
    assert not criteria.matches(record("INSERT", {"event_id": {"S": "e2"}}))
    assert not criteria.matches(record("MODIFY", with_page))
    assert not criteria.matches(record("REMOVE", old=with_page))
    # exists is on the leaf type key: a `page` stored as a number is not an `S` page
    assert not criteria.matches(record("INSERT", {"event_id": {"S": "e3"}, "page": {"N": "1"}}))


@pytest.mark.parametrize(
    ("pattern", "passes", "fails"),
    [
        ({"dynamodb": {"NewImage": {"page": {"S": ["/home", "/cart"]}}}}, "/cart", "/cart/x"),
        ({"dynamodb": {"NewImage": {"page": {"S": [{"prefix": "/shop/"}]}}}}, "/shop/1", "/shopx"),
        ({"dynamodb": {"NewImage": {"page": {"S": [{"anything-but": ["/home"]}]}}}}, "/cart", "/home"),
        ({"dynamodb": {"NewImage": {"page": {"S": [{"anything-but": {"prefix": "/a"}}]}}}}, "/b", "/ab"),
        ({"dynamodb": {"NewImage": {"other": {"S": [{"exists": False}]}}}}, "/any", None),
    ],
)
def test_string_matchers(pattern, passes, fails):
    criteria = FilterCriteria.parse({"Filters": [{"Pattern": json.dumps(pattern)}]})
    assert criteria.matches(record("INSERT", {"event_id": {"S": "e"}, "page": {"S": passes}}))
    if fails is not None:
        assert not criteria.matches(record("INSERT", {"event_id": {"S": "e"}, "page": {"S": fails}}))
    else:
        assert not criteria.matches(record("INSERT", {"event_id": {"S": "e"}, "other": {"S": "x"}}))


def test_numeric_ranges_match_json_numbers_not_dynamodb_number_strings():
    criteria = FilterCriteria.parse(
        {"Filters": [{"Pattern": json.dumps({"dynamodb": {"SizeBytes": [{"numeric": [">", 10, "<=", 20]}]}})}]}
    )
    rec = record("INSERT", {"event_id": {"S": "e"}})
    for size, expected in ((10, False), (11, True), (20, True), (20.5, False)):
        rec["dynamodb"]["SizeBytes"] = size
        assert criteria.matches(rec) is expected, size
    rec["dynamodb"]["SizeBytes"] = "15"  # as `N` values arrive: a string
    assert not criteria.matches(rec)


def test_filters_are_ored_and_keys_anded():
    criteria = FilterCriteria.parse(
        {
            "Filters": [
                {"Pattern": json.dumps({"eventName": ["REMOVE"]})},
                {"Pattern": json.dumps({"eventName": ["INSERT"], "dynamodb": {"Keys": {"event_id": {"S": ["e9"]}}}})},
            ]
        }
    )
    assert criteria.matches(record("REMOVE", old={"event_id": {"S": "e1"}}))
    assert criteria.matches(record("INSERT", {"event_id": {"S": "e9"}}))
    assert not criteria.matches(record("INSERT", {"event_id": {"S": "e1"}}))
    assert FilterCriteria.parse(None).matches(record("MODIFY", {"event_id": {"S": "e1"}}))


@pytest.mark.parametrize(
    "criteria",
    [
        {"Filters": [{"Pattern": "{not json"}]},
        {"Filters": [{"Pattern": json.dumps({"eventName": "INSERT"})}]},  # a leaf must be a list
        {"Filters": [{"Pattern": json.dumps({"eventName": [{"suffix": "T"}]})}]},
        {"Filters": [{"Pattern": json.dumps({"dynamodb": {"SizeBytes": [{"numeric": ["~", 1]}]}})}]},
        {"Filters": [{"pattern": "{}"}]},
    ],
)
def test_filter_criteria_lambda_would_refuse_are_refused(criteria):
    with pytest.raises(FilterError, match="filter criteria"):
        FilterCriteria.parse(criteria)


COLUMNS = ItemColumns(
    table="web.clicks",
    columns=(
        ("event_id", "varchar(64)"),
        ("user_id", "bigint"),
        ("amount", "decimal(38,0)"),
        ("ratio", "decimal(10,4)"),
        ("payload", "blob"),
        ("is_bot", "tinyint(1)"),
        ("referrer", "varchar(200)"),
        ("tags", "json"),
        ("scores", "json"),
        ("blobs", "json"),
        ("path", "json"),
        ("props", "json"),
    ),
    key=("event_id",),
    extra_column="extra",
)
FULL_IMAGE = {
    "event_id": {"S": "e1"},
    "user_id": {"N": "42"},
    "amount": {"N": "12345678901234567890123456789012345678"},
    "ratio": {"N": "0.1250"},
    "payload": {"B": b"\x00\xffbin"},
    "is_bot": {"BOOL": True},
    "referrer": {"NULL": True},
    "tags": {"SS": ["b", "a"]},
    "scores": {"NS": ["10", "9.5", "-1"]},
    "blobs": {"BS": [b"\x01", b"\x00"]},
    "path": {"L": [{"S": "x"}, {"N": "1.10"}, {"BOOL": False}, {"NULL": True}]},
    "props": {"M": {"z": {"N": "99999999999999999999999999999999999999"}, "a": {"S": "ü"}}},
    "campaign": {"S": "winter"},  # not declared: the extra column keeps it
}


def test_every_attribute_type_becomes_an_exact_value():
    change = COLUMNS.change(record("INSERT", FULL_IMAGE), "shard/100")
    assert change.op == "I"
    assert change.commit_ts == dt.datetime(2026, 12, 6, 10, 0, tzinfo=dt.UTC)
    assert change.row == {
        "event_id": "e1",
        "user_id": 42,
        "amount": Decimal("12345678901234567890123456789012345678"),
        "ratio": Decimal("0.1250"),
        "payload": b"\x00\xffbin",
        "is_bot": 1,
        "referrer": None,
        "tags": '["a","b"]',
        "scores": "[-1,9.5,10]",
        "blobs": '["AA==","AQ=="]',
        "path": '["x",1.10,false,null]',
        "props": '{"a":"ü","z":99999999999999999999999999999999999999}',
        "extra": '{"campaign":"winter"}',
    }


def test_ops_and_delete_images():
    keys = {"event_id": {"S": "e1"}}
    assert COLUMNS.change(record("MODIFY", FULL_IMAGE), "s/1").op == "U"
    removed = COLUMNS.change(record("REMOVE", keys=keys), "s/2")  # NEW_IMAGE streams: Keys only
    assert removed.op == "D" and removed.row["event_id"] == "e1" and removed.row["user_id"] is None
    with_old = COLUMNS.change(record("REMOVE", old=FULL_IMAGE, keys=keys), "s/3")
    assert with_old.row["user_id"] == 42


@pytest.mark.parametrize(
    ("attribute", "value", "problem"),
    [
        ("user_id", {"N": "1.5"}, "not an integer"),
        ("user_id", {"N": "9223372036854775808"}, "out of range"),
        ("ratio", {"N": "0.12345"}, "more than 4 decimal places"),
        ("ratio", {"N": "1234567"}, "more than 6 integer digits"),
        ("payload", {"S": "text"}, "only B values"),
        ("event_id", {"B": b"x"}, "binary into a text column"),
    ],
)
def test_a_value_the_column_cannot_hold_is_refused_by_name(attribute, value, problem):
    image = {**FULL_IMAGE, attribute: value}
    with pytest.raises(RecordError, match=rf"web\.clicks: record shard-1/77: attribute '{attribute}'.*{problem}"):
        COLUMNS.change(record("INSERT", image), "shard-1/77")


def test_undeclared_attributes_without_an_extra_column_are_refused():
    columns = ItemColumns("web.clicks", (("event_id", "varchar(64)"),), ("event_id",))
    with pytest.raises(RecordError, match="campaign are not declared"):
        columns.change(record("INSERT", {"event_id": {"S": "e"}, "campaign": {"S": "w"}}), "s/1")


def test_a_stream_without_new_images_is_a_setup_error():
    with pytest.raises(SetupError, match="KEYS_ONLY.*NEW_AND_OLD_IMAGES"):
        COLUMNS.check_view_type("KEYS_ONLY", "arn:stream")


# ----------------------------------------------------------------- shards and checkpoints
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/clicks/stream/2026-12-06T10:00:00.000"


def shard(shard_id, parent=None, start="100", end=None):
    out = {"ShardId": shard_id, "SequenceNumberRange": {"StartingSequenceNumber": start}}
    if end:
        out["SequenceNumberRange"]["EndingSequenceNumber"] = end
    if parent:
        out["ParentShardId"] = parent
    return out


def test_parents_come_before_children_and_finished_shards_are_skipped():
    shards = [shard("c2", "p"), shard("p", end="199"), shard("c1", "p"), shard("g", "c1"), shard("lone")]
    assert [s["ShardId"] for s in reading_order(shards, set())] == ["p", "c1", "c2", "g", "lone"]
    assert [s["ShardId"] for s in reading_order(shards, {"p"})] == ["c1", "c2", "g", "lone"]


class RecordedStreams:
    """DynamoDB Streams answers in the documented shapes (DescribeStream pages of
    Shards + LastEvaluatedShardId, GetShardIterator, GetRecords with NextShardIterator absent
    at the end of a closed shard), recorded per shard; the calls made are kept."""

    def __init__(self, pages: list[list[dict]], records: dict[str, list[dict]], closed: set[str], errors=None):
        self.pages, self.records, self.closed = pages, records, closed
        self.errors = errors or {}
        self.calls: list[tuple] = []

    def describe_stream(self, StreamArn, ExclusiveStartShardId=None):
        index = 0 if ExclusiveStartShardId is None else int(ExclusiveStartShardId.split("#")[1])
        self.calls.append(("DescribeStream", ExclusiveStartShardId))
        description = {"StreamArn": StreamArn, "StreamViewType": "NEW_AND_OLD_IMAGES", "Shards": self.pages[index]}
        if index + 1 < len(self.pages):
            description["LastEvaluatedShardId"] = f"{self.pages[index][-1]['ShardId']}#{index + 1}"
        return {"StreamDescription": description}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        self.calls.append(("GetShardIterator", ShardId, ShardIteratorType, SequenceNumber))
        if ShardId in self.errors:
            raise ClientError({"Error": {"Code": self.errors[ShardId], "Message": "recorded"}}, "GetShardIterator")
        records = self.records.get(ShardId, [])
        start = 0
        if SequenceNumber is not None:
            start = (
                next((i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] == SequenceNumber), -1) + 1
            )
        return {"ShardIterator": f"{ShardId}|{start}"}

    def get_records(self, ShardIterator, Limit):
        shard_id, start = ShardIterator.split("|")
        records = self.records.get(shard_id, [])[int(start) : int(start) + min(Limit, 2)]  # small pages
        self.calls.append(("GetRecords", shard_id, len(records)))
        end = int(start) + len(records)
        if shard_id in self.closed and end >= len(self.records.get(shard_id, [])):
            return {"Records": records}  # a closed shard read to its end: no NextShardIterator
        return {"Records": records, "NextShardIterator": f"{shard_id}|{end}"}


class MemoryS3:
    """Objects in a dict: the capture's S3 calls, for the lineage tests (moto is used where it can be)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def get_object(self, Bucket, Key):
        import io

        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, Bucket, Key, Body):
        self.objects[Key] = Body

    def head_object(self, Bucket, Key):
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")


def insert(event_id: str, seq: str) -> dict:
    return record("INSERT", {"event_id": {"S": event_id}}, seq=seq)


SPEC = StreamCapture(
    stream=ARN,
    columns=ItemColumns("web.clicks", (("event_id", "varchar(64)"),), ("event_id",)),
    bucket="landing",
    table_prefix="ddb/web/clicks/",
    checkpoint_key="cdc-sync/checkpoints/p/web.clicks.json",
    commit_timestamp_column="cdc_commit_ts",
)


def landed_ids(s3: MemoryS3, key: str) -> list[str]:
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(s3.objects[key])).column("event_id").to_pylist()


def test_closed_parent_is_finished_before_its_children_and_dropped_once_trimmed():
    records = {
        "parent": [insert("a", "101"), insert("b", "102"), insert("c", "103")],
        "child-1": [insert("d", "201")],
        "child-2": [insert("e", "301")],
    }
    pages = [[shard("child-2", "parent")], [shard("parent", end="103"), shard("child-1", "parent")]]
    streams, s3 = RecordedStreams(pages, records, closed={"parent"}), MemoryS3()
    report = capture(SPEC, streams, None, s3)
    assert [c for c in streams.calls if c[0] == "DescribeStream"] == [
        ("DescribeStream", None),
        ("DescribeStream", "child-2#1"),
    ]
    assert landed_ids(s3, report.key) == ["a", "b", "c", "d", "e"]  # parent first, then children
    assert report.shards_finished == ["parent"]
    checkpoint = Checkpoint(json.loads(s3.objects[SPEC.checkpoint_key]))
    assert checkpoint.positions == {"parent": "103", "child-1": "201", "child-2": "301"}
    assert checkpoint.finished == ["parent"] and checkpoint.pending is None

    # next run: the parent is trimmed away; it leaves the checkpoint, the children resume after their checkpoint
    records["child-1"].append(insert("f", "202"))
    streams = RecordedStreams([[shard("child-1", "parent"), shard("child-2", "parent")]], records, closed=set())
    second = capture(SPEC, streams, None, s3)
    assert landed_ids(s3, second.key) == ["f"]
    assert second.shards_dropped == ["parent"]
    assert ("GetShardIterator", "child-1", "AFTER_SEQUENCE_NUMBER", "201") in streams.calls
    checkpoint = Checkpoint(json.loads(s3.objects[SPEC.checkpoint_key]))
    assert checkpoint.finished == [] and set(checkpoint.positions) == {"child-1", "child-2"}
    assert second.key > report.key


def test_a_child_waits_while_its_open_parent_is_not_finished():
    records = {"parent": [insert("a", "101")], "child": [insert("b", "201")]}
    streams, s3 = RecordedStreams([[shard("parent"), shard("child", "parent")]], records, closed=set()), MemoryS3()
    report = capture(SPEC, streams, None, s3)
    assert landed_ids(s3, report.key) == ["a"]
    assert not any(c[0] == "GetShardIterator" and c[1] == "child" for c in streams.calls)


def test_checkpoint_past_the_trim_horizon_fails_with_what_to_do():
    s3 = MemoryS3()
    s3.objects[SPEC.checkpoint_key] = json.dumps({"stream_arn": ARN, "positions": {"s1": "150"}}).encode()
    streams = RecordedStreams([[shard("s1")]], {"s1": []}, closed=set(), errors={"s1": "TrimmedDataAccessException"})
    with pytest.raises(LostHistoryError, match=r"web\.clicks: shard s1 .*trim horizon.*Re-snapshot"):
        capture(SPEC, streams, None, s3)
    gone = RecordedStreams([[shard("s2")]], {"s2": []}, closed=set())
    with pytest.raises(LostHistoryError, match=r"shard\(s\) s1 .* no longer in the stream"):
        capture(SPEC, gone, None, s3)


def test_an_expired_iterator_is_renewed_after_the_last_record_read():
    records = {"s1": [insert("a", "101"), insert("b", "102"), insert("c", "103")]}

    class Expiring(RecordedStreams):
        expired = False

        def get_records(self, ShardIterator, Limit):
            if ShardIterator.endswith("|2") and not self.expired:
                self.expired = True
                raise ClientError({"Error": {"Code": "ExpiredIteratorException"}}, "GetRecords")
            return super().get_records(ShardIterator, Limit)

    streams, s3 = Expiring([[shard("s1")]], records, closed=set()), MemoryS3()
    report = capture(SPEC, streams, None, s3)
    assert landed_ids(s3, report.key) == ["a", "b", "c"]
    assert ("GetShardIterator", "s1", "AFTER_SEQUENCE_NUMBER", "102") in streams.calls


def test_describe_stream_pages_stay_under_ten_calls_a_second():
    from cdc_sync.sources.dynamodb_stream.capture import _RateLimit, describe_shards

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pages = [[shard(f"s{i}")] for i in range(5)]
    streams = RecordedStreams(pages, {}, closed=set())
    view_type, shards = describe_shards(streams, ARN, _RateLimit(10, lambda: now[0], sleep))
    assert view_type == "NEW_AND_OLD_IMAGES" and [s["ShardId"] for s in shards] == ["s0", "s1", "s2", "s3", "s4"]
    assert len([c for c in streams.calls if c[0] == "DescribeStream"]) == 5
    assert now[0] >= 0.4 and slept == pytest.approx([0.1] * 4)  # 5 calls: 4 waits of 100 ms


def test_a_spent_budget_lands_what_was_read_and_the_next_run_goes_on():
    import dataclasses

    from cdc_sync.sources.dynamodb_stream.capture import Budget

    records = {"s1": [insert(f"e{i}", str(100 + i)) for i in range(5)]}
    spec = dataclasses.replace(SPEC, budget=Budget(max_records=2))
    s3 = MemoryS3()
    first = capture(spec, RecordedStreams([[shard("s1")]], records, closed=set()), None, s3)
    assert first.budget_spent and landed_ids(s3, first.key) == ["e0", "e1"]
    second = capture(spec, RecordedStreams([[shard("s1")]], records, closed=set()), None, s3)
    assert landed_ids(s3, second.key) == ["e2", "e3"]
    third = capture(SPEC, RecordedStreams([[shard("s1")]], records, closed=set()), None, s3)
    assert landed_ids(s3, third.key) == ["e4"] and not third.budget_spent
