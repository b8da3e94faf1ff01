"""Firehose (moto server) → S3 `processed/YYYY/MM/DD/HH/` → Aurora stand-in (MariaDB) in
append mode, exactly once; refused records reported from `processing-failed/`."""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import logging
import re
import threading
import time
from datetime import datetime, timedelta

import pytest
import yaml

from cdc_sync import planning
from cdc_sync.config import load_pipelines
from cdc_sync.sources.firehose.failures import read_failed_records
from cdc_sync.sources.firehose.transform import TransformSpec
from cdc_sync.targets.aurora import batch as aurora_target
from cdc_sync.targets.aurora.batch import finished_in_aurora
from tests.integration.aurora_s3_standin import cursor_class_for
from tests.integration.harness import InMemoryWatermarks
from tools.firehose_standin import create_delivery_stream, dynamodb_stream_record, transformed_lines, typed_image

pytestmark = pytest.mark.services
COLUMNS = ["event_id", "user_id", "page", "referrer"]
SPEC = TransformSpec.from_dict(
    {
        "columns": COLUMNS,
        "schema": {
            "type": "object",
            "required": ["event_id", "user_id", "page"],
            "properties": {
                "event_id": {"type": "string"},
                "user_id": {"type": "integer"},
                "page": {"type": "string"},
                "referrer": {"type": ["string", "null"]},
            },
        },
    }
)


class FirehoseWorld:
    def __init__(self, stack, uid, tmp_path):
        self.stack, self.uid, self.tmp_path = stack, uid, tmp_path
        self.s3, self.firehose = stack.boto3_client("s3"), stack.boto3_client("firehose")
        self.bucket, self.stream, self.db = f"clicks-{uid}", f"webAnalytics{uid}", f"fh_{uid}"
        self.s3.create_bucket(Bucket=self.bucket)
        create_delivery_stream(self.firehose, self.stream, self.bucket)
        self.mysql = stack.mariadb.connect()
        with self.mysql.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")
            cur.execute(
                f"CREATE TABLE `{self.db}`.clicks (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                "event_id VARCHAR(40) NOT NULL, user_id BIGINT NOT NULL, page TEXT, referrer VARCHAR(200), "
                "loaded_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6)) CHARSET utf8mb4"
            )
        self.config = tmp_path / "pipelines.yaml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "pipelines": [
                        {
                            "name": f"clicks_{uid}",
                            "schedule": None,
                            "source": {
                                "kind": "firehose",
                                "bucket": self.bucket,
                                "stream": self.stream,
                                "csv_dialect": "backslash_escaped",
                            },  # the project's transform Lambda
                            "tables": [{"schema": "web", "name": "clicks", "columns": COLUMNS}],
                            "targets": {
                                "aurora": {
                                    "database": self.db,
                                    "mode": "append",
                                    "table": "clicks",
                                    "mysql_conn_id": "mysql_target",
                                }
                            },
                            "options": {"poke_interval_seconds": 5, "wait_timeout_minutes": 1, "retries": 0},
                        }
                    ]
                }
            )
        )
        self.watermarks = InMemoryWatermarks()
        self.sent: list[dict] = []
        self.s3_loads: list[str] = []  # what LOAD DATA FROM S3 read, with method aurora_s3

    @property
    def pipeline(self):
        return load_pipelines(self.config)[0]

    def deliver(self, documents: list[dict], spec: TransformSpec = SPEC) -> str:
        """The transform Lambda's output, put through Firehose: one new object in processed/."""
        before = set(self.keys())
        self.firehose.put_record_batch(
            DeliveryStreamName=self.stream, Records=[{"Data": line} for line in transformed_lines(documents, spec)]
        )
        (key,) = set(self.keys()) - before
        self.sent += documents
        return key

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket, Prefix="processed/").get("Contents", [])]

    def use_source(self, **settings) -> None:
        document = yaml.safe_load(self.config.read_text())
        document["pipelines"][0]["source"].update(settings)
        self.config.write_text(yaml.safe_dump(document))

    def drop_source_setting(self, name: str) -> None:
        document = yaml.safe_load(self.config.read_text())
        document["pipelines"][0]["source"].pop(name)
        self.config.write_text(yaml.safe_dump(document))

    def deliver_lines(self, lines: list[bytes]) -> str:
        """Records of another producer (CSV lines), put through Firehose: one new object."""
        before = set(self.keys())
        self.firehose.put_record_batch(DeliveryStreamName=self.stream, Records=[{"Data": line} for line in lines])
        (key,) = set(self.keys()) - before
        return key

    def use_method(self, method: str) -> None:
        document = yaml.safe_load(self.config.read_text())
        document["pipelines"][0]["targets"]["aurora"]["method"] = method
        self.config.write_text(yaml.safe_dump(document))

    def connect(self):
        if self.pipeline.aurora.method == "aurora_s3":  # LOAD DATA FROM S3 run by the stand-in
            cursor_class = cursor_class_for(self.s3, self.s3_loads)
            return self.stack.mariadb.connect(autocommit=False, local_infile=True, cursorclass=cursor_class)
        return self.stack.mariadb.connect(autocommit=False, local_infile=True)

    def run(self, **plan_kwargs) -> list:
        pipeline = self.pipeline
        batches = planning.plan_batches(
            pipeline, self.s3, self.watermarks.read, [finished_in_aurora(pipeline, self.connect)], **plan_kwargs
        )
        reports = [aurora_target.load_batch(pipeline, b, self.s3, self.connect, workdir=self.tmp_path) for b in batches]
        planning.advance_watermarks(
            pipeline, [r.to_dict() for r in reports], 1, self.watermarks.read, self.watermarks.write
        )
        return reports

    def rows(self) -> list[dict]:
        with self.mysql.cursor() as cur:
            cur.execute(f"SELECT event_id, user_id, page, referrer FROM `{self.db}`.clicks ORDER BY id")
            return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]

    def close(self):
        with self.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
        self.mysql.close()


@pytest.fixture
def fh(stack, unique_name, tmp_path):
    world = FirehoseWorld(stack, unique_name, tmp_path)
    yield world
    world.close()


def _delivered_earlier(key: str, by: timedelta) -> str:
    """The key Firehose would have given the same object `by` earlier."""
    match = re.match(
        r"^processed/(\d{4}/\d{2}/\d{2}/\d{2})/(.+)-(\d+)-(\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})-(.+)$", key
    )
    assert match, key
    when = datetime.strptime(match[4], "%Y-%m-%d-%H-%M-%S") - by
    return f"processed/{when:%Y/%m/%d/%H}/{match[2]}-{match[3]}-{when:%Y-%m-%d-%H-%M-%S}-{match[5]}"


def _clicks(start: int, n: int) -> list[dict]:
    return [
        {
            "event_id": f"e{i}",
            "user_id": i,
            "page": f'/p/{i}, "quoted"\nline 😀\r\n\t\\N \x00 end\\',
            "referrer": None if i % 2 else "x",
        }
        for i in range(start, start + n)
    ]


def test_objects_over_several_hours_append_once_each(fh):
    first = fh.deliver(_clicks(0, 3))
    # objects of the two hours before: Firehose's own names, moved back in folder and name
    # (real earlier hours whatever the clock says, also just after midnight)
    for hours_back, docs in ((2, _clicks(100, 2)), (1, _clicks(200, 2))):
        key = fh.deliver(docs)
        older = _delivered_earlier(key, timedelta(hours=hours_back))
        assert older < first
        fh.s3.copy_object(Bucket=fh.bucket, Key=older, CopySource={"Bucket": fh.bucket, "Key": key})
        fh.s3.delete_object(Bucket=fh.bucket, Key=key)
    reports = fh.run()
    assert sum(len(r.loaded) for r in reports) == 3
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])

    # the same object delivered again (same key, same bytes), a rescan, a rerun: nothing doubles
    body = fh.s3.get_object(Bucket=fh.bucket, Key=first)["Body"].read()
    fh.s3.put_object(Bucket=fh.bucket, Key=first, Body=body)
    assert fh.run(rescan=True) == []
    batch = {
        "table": "web.clicks",
        "files": [
            {
                "key": first,
                "etag": fh.s3.head_object(Bucket=fh.bucket, Key=first)["ETag"].strip('"'),
                "size": len(body),
                "phase": 1,
            }
        ],
    }
    again = aurora_target.load_batch(fh.pipeline, batch, fh.s3, fh.connect, workdir=fh.tmp_path)
    assert again.loaded == {} and again.already_loaded == [first]
    assert len(fh.rows()) == len(fh.sent) == 7

    # Firehose delivers at least once: the same records again, in an object of a new name
    repeated = fh.deliver(_clicks(0, 3))
    fh.sent = fh.sent[:-3]
    (report,) = fh.run()
    assert report.loaded == {} and report.already_loaded == [repeated]
    assert len(fh.rows()) == len(fh.sent) == 7

    fh.deliver(_clicks(300, 4))
    (report,) = fh.run()
    assert len(report.loaded) == 1
    assert len(fh.rows()) == 11


def _waiting_loads(conn, database: str) -> int:
    """Sessions whose statement on `database` waits: for a table lock, or for a row lock."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND (STATE = 'Waiting for table "
            "metadata lock' OR ID IN (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX "
            "WHERE trx_state = 'LOCK WAIT'))",
            (f"%{database}%",),
        )
        return int(cur.fetchone()[0])


def test_concurrent_loads_of_overlapping_objects_append_each_delivery_once(fh):
    """A backfill beside a scheduled run (or a manual task run): two loads at once of {A, B}
    and {A', B, C}, A' a repeated delivery of A (same bytes, a new name). Both are held at
    their first append until both wait, so both have checked for A's content before either
    commits; then each delivery is appended once."""
    keys = [fh.deliver(docs) for docs in (_clicks(0, 3), _clicks(10, 2), _clicks(20, 2))]
    stem = keys[0].rsplit("-", 1)[0]
    named = {}
    for name, original in (("a0000001", keys[0]), ("a0000002", keys[0]), ("b0000000", keys[1]), ("c0000000", keys[2])):
        named[name] = f"{stem}-{name}"
        fh.s3.copy_object(Bucket=fh.bucket, Key=named[name], CopySource={"Bucket": fh.bucket, "Key": original})
    for key in keys:
        fh.s3.delete_object(Bucket=fh.bucket, Key=key)

    def batch(*names: str) -> dict:
        files = []
        for name in names:
            head = fh.s3.head_object(Bucket=fh.bucket, Key=named[name])
            files.append(
                {"key": named[name], "etag": head["ETag"].strip('"'), "size": head["ContentLength"], "phase": 1}
            )
        return {"table": "web.clicks", "files": files}

    batches = [batch("a0000001", "b0000000"), batch("a0000002", "b0000000", "c0000000")]
    reports: list = [None, None]
    errors: list = []

    def load(n: int) -> None:
        try:
            reports[n] = aurora_target.load_batch(fh.pipeline, batches[n], fh.s3, fh.connect, workdir=fh.tmp_path)
        except BaseException as error:  # noqa: BLE001 - shown by the test thread
            errors.append(error)

    locker = fh.stack.mariadb.connect()
    try:
        with locker.cursor() as cur:
            cur.execute(f"LOCK TABLES `{fh.db}`.clicks WRITE")  # every append waits until both are at theirs
        threads = [threading.Thread(target=load, args=(n,)) for n in (0, 1)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while _waiting_loads(fh.mysql, fh.db) < 2:
            assert not errors, errors
            assert time.monotonic() < deadline, "the two loads did not both reach their first append"
            time.sleep(0.25)  # InnoDB refreshes INNODB_TRX only when it was not read for 0.1 s
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
    finally:
        locker.close()
    for thread in threads:
        thread.join()
    assert not errors, errors

    loaded = [key for r in reports for key in r.loaded]
    assert sorted(loaded) in (
        sorted([named["a0000001"], named["b0000000"], named["c0000000"]]),
        sorted([named["a0000002"], named["b0000000"], named["c0000000"]]),
    )
    assert sorted(loaded + [key for r in reports for key in r.already_loaded]) == sorted(
        [named["a0000001"], named["a0000002"], named["b0000000"], named["b0000000"], named["c0000000"]]
    )
    expected = _clicks(0, 3) + _clicks(10, 2) + _clicks(20, 2)
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == expected  # each delivery once


def test_a_load_that_waits_too_long_on_another_load_of_the_same_content_is_redone(fh, caplog):
    """The second of two loads of equal objects waits on the first's claim longer than
    innodb_lock_wait_timeout: it is redone, not failed, and finds the first's delivery."""
    first = fh.deliver(_clicks(0, 3))
    repeated = first.rsplit("-", 1)[0] + "-ffffffff"
    fh.s3.copy_object(Bucket=fh.bucket, Key=repeated, CopySource={"Bucket": fh.bucket, "Key": first})

    def one_file(key: str) -> dict:
        head = fh.s3.head_object(Bucket=fh.bucket, Key=key)
        return {
            "table": "web.clicks",
            "files": [{"key": key, "etag": head["ETag"].strip('"'), "size": head["ContentLength"], "phase": 1}],
        }

    def impatient():
        conn = fh.connect()
        with conn.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
        return conn

    reports: dict = {}
    errors: list = []

    def load(name: str, key: str, connect) -> None:
        try:
            reports[name] = aurora_target.load_batch(fh.pipeline, one_file(key), fh.s3, connect, workdir=fh.tmp_path)
        except BaseException as error:  # noqa: BLE001 - shown by the test thread
            errors.append(error)

    locker = fh.stack.mariadb.connect()
    try:
        with locker.cursor() as cur:
            cur.execute(f"LOCK TABLES `{fh.db}`.clicks WRITE")  # the first load holds its claim at its append
        holder = threading.Thread(target=load, args=("first", first, fh.connect))
        holder.start()
        deadline = time.monotonic() + 120
        while _waiting_loads(fh.mysql, fh.db) < 1:
            assert not errors and time.monotonic() < deadline, errors
            time.sleep(0.25)
        with caplog.at_level(logging.WARNING):
            waiter = threading.Thread(target=load, args=("repeated", repeated, impatient))
            waiter.start()
            while "Lock wait timeout exceeded" not in caplog.text:  # it waited past its timeout once
                assert not errors and time.monotonic() < deadline, errors
                time.sleep(0.25)
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
    finally:
        locker.close()
    holder.join()
    waiter.join()
    assert not errors, errors
    assert reports["first"].loaded == {first: 3}
    assert reports["repeated"].loaded == {} and reports["repeated"].already_loaded == [repeated]
    assert fh.rows() == _clicks(0, 3)


HOSTILE = [
    "back\\slash",
    "\\N",
    "\\\\",
    "tab\there",
    'a\\"b',
    "a\\,b",
    "NULL",
    "null",
    "",
    "ends in \\",
    "line\nbreak",
    "cr\rlf\r\n",
    '"quoted", and more',
    "😀 𝄞",
    "\\n not a newline",
    " lead, trail ",
]


def _rfc4180_records(n: int) -> list[list[str]]:
    """Records as a producer holds them: every field text, hostile ones in every column."""
    return [
        [
            f"e{i}\\{HOSTILE[i % len(HOSTILE)]}",
            str(i),
            HOSTILE[(i * 7) % len(HOSTILE)],
            HOSTILE[(i * 3 + 1) % len(HOSTILE)],
        ]
        for i in range(n)
    ]


def _written(records: list[list[str]], **writer_options) -> list[bytes]:
    """Each record as Python's csv module writes it (RFC 4180: CRLF, quotes doubled, no escape)."""
    lines = []
    for record in records:
        buffer = io.StringIO(newline="")
        csv.writer(buffer, **writer_options).writerow(record)
        lines.append(buffer.getvalue().encode())
    return lines


def _read_back(body: bytes) -> list[dict]:
    """What Python's csv module reads from an object: the independent expectation."""
    return [
        dict(zip(COLUMNS, [r[0], int(r[1]), r[2], r[3]], strict=True))
        for r in csv.reader(io.StringIO(body.decode("utf-8"), newline=""))
    ]


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_rfc4180_objects_load_exactly_as_pythons_csv_module_reads_them(fh, method):
    """The default dialect is RFC 4180: backslashes, \\N, NULL, tabs, a backslash before a
    quote or a delimiter are text like any other, with CRLF or LF line ends."""
    fh.use_method(method)
    fh.drop_source_setting("csv_dialect")  # the default
    records = _rfc4180_records(300)
    crlf = fh.deliver_lines(_written(records[:200]))
    lf = fh.deliver_lines(_written(records[200:], lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC))
    (report,) = fh.run()
    assert report.loaded == {crlf: 200, lf: 100} and not report.quarantined
    expected = []
    for key in (crlf, lf):
        expected += _read_back(fh.s3.get_object(Bucket=fh.bucket, Key=key)["Body"].read())
    assert len(expected) == 300 and [r["page"] for r in expected[:16]] == [HOSTILE[(i * 7) % 16] for i in range(16)]
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == expected
    if method == "aurora_s3":  # Aurora read the worker's converted copies, from the staging prefix
        assert len(fh.s3_loads) == 2 and all("/cdc-sync/staging/" in uri for uri in fh.s3_loads)


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_rfc4180_null_value_and_what_the_dialect_cannot_say_is_refused(fh, method):
    fh.use_method(method)
    fh.drop_source_setting("csv_dialect")
    fh.use_source(csv_null_value="")  # an empty field is NULL
    null_key = fh.deliver_lines(_written([["e1", "1", "", "\\N"], ["e2", "2", "NULL", ""]]))
    (report,) = fh.run()
    assert report.loaded == {null_key: 2}
    assert fh.rows() == [
        {"event_id": "e1", "user_id": 1, "page": None, "referrer": "\\N"},
        {"event_id": "e2", "user_id": 2, "page": "NULL", "referrer": None},
    ]

    # without a null value there is no NULL: an empty number is refused, not made 0 or NULL;
    # a quote inside a field that is not quoted, or text after a closing quote, is not RFC 4180;
    # a record with a field too many or too few is refused by its number
    fh.drop_source_setting("csv_null_value")
    stem = null_key.rsplit("-", 1)[0]
    bodies = {
        "a0000001": b"e3,3,p,r\r\ne4,,p,r\r\n",
        "a0000002": b'e5,5,"ab"c,r\r\n',
        "a0000003": b'e6,6,p,r\r\ne7,7,"multi\r\nline",r,extra\r\n',
        "a0000004": b"e8,8,p\xff,r\r\n",
        # a bad record after 20,000 good ones: LOAD DATA LOCAL has read many of them already
        "a0000005": b"".join(_written([[f"x{i}", str(i), "p", "r"] for i in range(20_000)])) + b'x,1,"a"b,r\r\n',
    }
    for name, body in bodies.items():
        fh.s3.put_object(Bucket=fh.bucket, Key=f"{stem}-{name}", Body=body)
    good = fh.deliver_lines(_written([["e9", "9", "", ""]]))
    (report,) = fh.run()
    assert report.loaded == {good: 1}
    refused = {key.rsplit("-", 1)[1]: reason for key, reason in report.quarantined.items()}
    assert set(refused) == set(bodies)
    assert "user_id" in refused["a0000001"] and "row 2" in refused["a0000001"]
    assert "csv_dialect rfc4180" in refused["a0000002"] and "record 1 (line 1)" in refused["a0000002"]
    assert "record 2 (ending on line 3) has 5 field(s)" in refused["a0000003"]
    assert "not UTF-8" in refused["a0000004"]
    assert "record 20001 (line 20001): ',' expected after '\"'" in refused["a0000005"]
    assert [r["event_id"] for r in fh.rows()] == ["e1", "e2", "e9"]
    assert fh.rows()[-1] == {"event_id": "e9", "user_id": 9, "page": "", "referrer": ""}


HIVE_PREFIX = "processed/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/hour=!{timestamp:HH}/"


def _in_hive_folders(key: str) -> str:
    """The key a stream with HIVE_PREFIX gives the same object (moto's Firehose writes the
    default hour folders only)."""
    match = re.match(r"^processed/(\d{4})/(\d{2})/(\d{2})/(\d{2})/(.+)$", key)
    assert match, key
    return f"processed/year={match[1]}/month={match[2]}/day={match[3]}/hour={match[4]}/{match[5]}"


def test_a_custom_prefix_with_timestamp_expressions_as_the_stream_has_it(fh, caplog):
    fh.use_source(prefix=HIVE_PREFIX)
    delivered = []
    for hours_back, docs in ((0, _clicks(0, 3)), (1, _clicks(100, 2))):  # the second an hour earlier, late
        key = fh.deliver(docs)
        hive = _in_hive_folders(_delivered_earlier(key, timedelta(hours=hours_back)))
        fh.s3.copy_object(Bucket=fh.bucket, Key=hive, CopySource={"Bucket": fh.bucket, "Key": key})
        fh.s3.delete_object(Bucket=fh.bucket, Key=key)
        delivered.append(hive)
    fh.s3.put_object(Bucket=fh.bucket, Key="processed/year=2026/README.txt", Body=b"not a delivery")
    with caplog.at_level(logging.WARNING):
        reports = fh.run()
    assert (
        "1 object(s) under s3://" in caplog.text
        and "are not loaded, e.g. processed/year=2026/README.txt" in caplog.text
    )
    assert sorted(k for r in reports for k in r.loaded) == sorted(delivered)
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])

    # the next run lists from the watermark: only the new object
    key = fh.deliver(_clicks(200, 2))
    fh.s3.copy_object(Bucket=fh.bucket, Key=_in_hive_folders(key), CopySource={"Bucket": fh.bucket, "Key": key})
    fh.s3.delete_object(Bucket=fh.bucket, Key=key)
    (report,) = fh.run()
    assert list(report.loaded) == [_in_hive_folders(key)]
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_with_a_unique_key_records_repeated_in_other_objects_are_skipped(fh, method):
    fh.use_method(method)
    with fh.mysql.cursor() as cur:
        cur.execute(f"ALTER TABLE `{fh.db}`.clicks ADD UNIQUE KEY one_event (event_id)")
    fh.deliver(_clicks(0, 3))
    # a producer's retry: records 1 and 2 again, batched with new ones (bytes differ from any object)
    fh.deliver(_clicks(1, 4))
    fh.sent = fh.sent[:3] + fh.sent[-2:]  # e3, e4 are new
    reports = fh.run()  # (the two objects may load in either order: same second, random names)
    assert sum(rows for r in reports for rows in r.loaded.values()) == 5 and not any(r.quarantined for r in reports)
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])
    # a bad value is still a refusal of its whole object, named by row
    good = fh.deliver(_clicks(10, 1))
    bad_key = good.rsplit("-", 1)[0] + "-ffffffff"
    fh.s3.put_object(Bucket=fh.bucket, Key=bad_key, Body=b'e20,20,"/ok",\\N\ne21,not-a-number,"/p",\\N\n')
    (report,) = fh.run()
    assert list(report.loaded) == [good] and "row 2" in report.quarantined[bad_key]
    assert sorted(r["event_id"] for r in fh.rows()) == ["e0", "e1", "e10", "e2", "e3", "e4"]

    # more repeated records than MySQL keeps warnings for (64), and a bad value after them:
    # still refused, not taken for one more duplicate
    fh.deliver(_clicks(100, 100))
    fh.run()
    repeats = b"".join(transformed_lines(_clicks(100, 90) + _clicks(300, 5), SPEC))
    hidden_bad = good.rsplit("-", 1)[0] + "-fffffffe"
    fh.s3.put_object(Bucket=fh.bucket, Key=hidden_bad, Body=repeats + b'e999,not-a-number,"/p",\\N\n')
    clean = good.rsplit("-", 1)[0] + "-ffffffff0"
    fh.s3.put_object(Bucket=fh.bucket, Key=clean, Body=repeats)
    (report,) = fh.run()
    assert "e999" not in {r["event_id"] for r in fh.rows()}
    assert "user_id" in report.quarantined[hidden_bad] and "row 96" in report.quarantined[hidden_bad]
    assert report.loaded == {clean: 5}  # 90 repeats skipped, 5 new
    expected = {f"e{i}" for i in [*range(5), 10, *range(100, 200), *range(300, 305)]}
    rows = fh.rows()
    assert len(rows) == len(expected) and {r["event_id"] for r in rows} == expected


def test_dynamodb_stream_records_through_firehose_append_once_by_event_id(fh):
    """The seed case: DynamoDB stream records (Kinesis Data Streams for DynamoDB) → transform →
    Firehose → Aurora, with a repeated delivery of some records in a later batch."""
    with fh.mysql.cursor() as cur:
        cur.execute(
            f"ALTER TABLE `{fh.db}`.clicks ADD COLUMN _event_id VARCHAR(64) NOT NULL, "
            "ADD UNIQUE KEY one_stream_event (_event_id)"
        )
    document = yaml.safe_load(fh.config.read_text())
    document["pipelines"][0]["tables"][0]["columns"] = ["_event_id", *COLUMNS]
    fh.config.write_text(yaml.safe_dump(document))
    spec = TransformSpec(columns=("_event_id", *COLUMNS), schema=SPEC.schema)

    def stream_record(click: dict, event_name: str = "INSERT") -> dict:
        return dynamodb_stream_record(
            event_name,
            None if event_name == "REMOVE" else typed_image(click),
            f"stream-{click['event_id']}",
            keys={"event_id": {"S": click["event_id"]}},
        )

    clicks = _clicks(0, 4)
    fh.deliver([stream_record(c) for c in clicks[:3]] + [stream_record(clicks[0], "REMOVE")], spec)
    fh.deliver([stream_record(c) for c in clicks[1:]], spec)  # e1, e2 delivered again, e3 new
    reports = fh.run()
    assert sum(rows for r in reports for rows in r.loaded.values()) == 4 and not any(r.quarantined for r in reports)
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == clicks  # every value back as the item held it


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_gzip_objects_load_by_name_or_by_content_and_other_compressions_are_named(fh, method):
    fh.use_method(method)
    named = fh.deliver(_clicks(0, 2))
    stem = named.rsplit("-", 1)[0]
    packed = stem + "-a0000001.gz"  # CompressionFormat GZIP
    fh.s3.put_object(
        Bucket=fh.bucket, Key=packed, Body=gzip.compress(b"".join(transformed_lines(_clicks(10, 3), SPEC)))
    )
    custom = stem + "-a0000002.csv"  # GZIP with a custom FileExtension: only the bytes say so
    fh.s3.put_object(
        Bucket=fh.bucket, Key=custom, Body=gzip.compress(b"".join(transformed_lines(_clicks(20, 4), SPEC)))
    )
    snappy = stem + "-a0000003.snappy"
    fh.s3.put_object(Bucket=fh.bucket, Key=snappy, Body=b"\xff\x06\x00\x00sNaPpY")
    fh.sent += _clicks(10, 3) + _clicks(20, 4)

    (report,) = fh.run()
    assert report.loaded == {named: 2, packed: 3, custom: 4}
    assert list(report.quarantined) == [snappy] and "Snappy-compressed" in report.quarantined[snappy]
    assert sorted(fh.rows(), key=lambda r: r["user_id"]) == sorted(fh.sent, key=lambda r: r["user_id"])


@pytest.mark.parametrize("method", ["local_infile", "aurora_s3"])
def test_a_malformed_object_is_quarantined_with_its_row_named_the_rest_loads(fh, method):
    fh.use_method(method)
    good = fh.deliver(_clicks(0, 2))
    bad_key = good.rsplit("-", 1)[0] + "-ffffffff"
    fh.s3.put_object(Bucket=fh.bucket, Key=bad_key, Body=b'e9,9,"/ok",\\N\ne10,not-a-number,"/p",\\N\n')
    too_many = bad_key[:-8] + "eeeeeeee"
    fh.s3.put_object(Bucket=fh.bucket, Key=too_many, Body=b"e11,11,/p,ref,EXTRA\n")
    (report,) = fh.run()
    assert list(report.loaded) == [good]
    assert set(report.quarantined) == {bad_key, too_many}
    assert "row 2" in report.quarantined[bad_key] and "user_id" in report.quarantined[bad_key]
    assert "Row 1 was truncated" in report.quarantined[too_many]
    assert [r["event_id"] for r in fh.rows()] == ["e0", "e1"]  # nothing of the refused objects
    if method == "aurora_s3":  # Aurora read each object where Firehose put it: nothing through the worker
        assert sorted(fh.s3_loads) == sorted(f"s3://{fh.bucket}/{k}" for k in (good, bad_key, too_many))


def test_refused_records_are_counted_and_sampled(fh):
    failed = {
        "attemptsMade": 1,
        "arrivalTimestamp": 1763881200000,
        "errorCode": "Lambda.ProcessingFailed",
        "errorMessage": "The record was marked ProcessingFailed by the Lambda",
        "attemptEndingTimestamp": 1763881201000,
        "rawData": base64.b64encode(b'{"user_id": "seven"}').decode(),
        "lambdaArn": "arn:aws:lambda:us-east-1:123:function:transform",
    }
    key = f"processing-failed/2026/11/23/07/{fh.stream}-1-2026-11-23-07-50-52-0f0e3c9a"
    fh.s3.put_object(Bucket=fh.bucket, Key=key, Body=(json.dumps(failed) + "\n") * 3)
    found = read_failed_records(fh.s3, fh.bucket, "processing-failed/", None)
    assert found.count == 3 and dict(found.by_error) == {"Lambda.ProcessingFailed": 3}
    assert found.samples[0]["data"] == '{"user_id": "seven"}'
    assert "3 record(s) refused" in found.summary(fh.bucket)
    assert read_failed_records(fh.s3, fh.bucket, "processing-failed/", key).count == 0  # past the watermark


def test_missing_target_table_is_a_clear_setup_error(fh):
    from cdc_sync.targets.aurora.append import AppendTargetMissing

    fh.deliver(_clicks(0, 1))
    with fh.mysql.cursor() as cur:
        cur.execute(f"DROP TABLE `{fh.db}`.clicks")
    with pytest.raises(AppendTargetMissing, match=r"clicks does not exist; create it with the columns event_id"):
        fh.run()
