"""Reconciliation against real servers: the source in MariaDB, the Aurora stand-in (MariaDB)
and the BigQuery emulator, loaded by the pipeline itself. Drift is injected straight into
the targets; the expected differences are written down by hand from what was injected."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import yaml

from cdc_sync.mysql_catalog import catalog_columns
from cdc_sync.reconcile import run as reconcile
from cdc_sync.reconcile.dialects import MySqlDialect
from cdc_sync.reconcile.diff import Settings, compare
from cdc_sync.reconcile.repair import emit_repair_file, keys_to_repair
from cdc_sync.reconcile.sides import MySqlSide
from tests.integration.harness import World, customer

pytestmark = pytest.mark.services

READINGS_DDL = """
CREATE TABLE `{db}`.`readings` (
  id BIGINT NOT NULL PRIMARY KEY,
  tiny TINYINT NULL,
  small SMALLINT NULL,
  score DOUBLE NULL,
  ratio FLOAT NULL,
  price DECIMAL(20,6) NULL,
  payload VARBINARY(32) NULL,
  label VARCHAR(40) NULL,
  day DATE NULL,
  at DATETIME(6) NULL
) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_bin
"""
TAGS_DDL = """
CREATE TABLE `{db}`.`tags` (
  code VARCHAR(20) NOT NULL PRIMARY KEY,
  note TEXT NULL
) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_bin
"""


def _reading(i: int, **overrides) -> dict:
    row = {
        "id": i,
        "tiny": -i % 128,
        "small": i * 7,
        "score": i / 7,
        "ratio": 1.1 * i,
        "price": Decimal(f"-{i}.000100"),
        "payload": bytes([i % 256, 0, 255, 10]),
        "label": f"r{i} ✓ 𝄞",
        "day": dt.date(2020, 2, 29),
        "at": dt.datetime(2026, 3, 4, 5, 6, 7, i),
    }
    row.update(overrides)
    return row


class ReconcileWorld(World):
    """A World whose pipeline has a reconcile section and a third table with floats and bytes."""

    def __init__(self, stack, uid, tmp_path, file_format: str = "parquet", **reconcile_options):
        super().__init__(stack, uid, tmp_path, aurora=True, file_format=file_format)
        with self.mysql.cursor() as cur:
            cur.execute(READINGS_DDL.format(db=self.db))
            cur.execute(TAGS_DDL.format(db=self.db))
        self.dms.track(self.db, "readings")
        self.dms.track(self.db, "tags")
        self.readings, self.tags = f"{self.db}.readings", f"{self.db}.tags"
        self.write_config(
            tables=[
                {"schema": self.db, "name": "customers", "primary_key": ["id"], "updated_at_column": "updated_at"},
                {"schema": self.db, "name": "order_lines", "primary_key": ["order_id", "line_no"]},
                {"schema": self.db, "name": "readings", "primary_key": ["id"]},
                {"schema": self.db, "name": "tags", "primary_key": ["code"]},
            ],
            reconcile={"source_conn_id": "mysql_source", "recheck_seconds": 0, **reconcile_options},
        )

    def add_table(self, ddl: str, name: str, primary_key: list[str]) -> str:
        """Create a source table (`ddl` with {db}), have DMS track it and the pipeline carry it;
        returns its qualified name."""
        with self.mysql.cursor() as cur:
            cur.execute(ddl.format(db=self.db))
        self.dms.track(self.db, name)
        config = yaml.safe_load(self.config_path.read_text())
        table = {
            "schema": self.db,
            "name": name,
            "primary_key": primary_key,
            "commit_timestamp_column": self.timestamp_column,
        }
        if self.file_format == "csv":
            table["columns"] = self.dms.tables[f"{self.db}.{name}"].column_declarations
        config["pipelines"][0]["tables"].append(table)
        self.config_path.write_text(yaml.safe_dump(config))
        return f"{self.db}.{name}"

    def source_connection(self):
        return self.stack.mariadb.connect(autocommit=False)

    def load_everything(self) -> None:
        self.run_aurora()
        self.run_library()

    def reconcile(self, table: str, run_id: str = "test", targets=None, **kwargs):
        return {
            c.target: c
            for c in reconcile.reconcile_table(
                self.pipeline,
                table,
                source_connect=self.source_connection,
                run_id=run_id,
                bigquery_client=self.bq,
                aurora_connect=self.source_connection,
                targets=targets,
                **kwargs,
            )
        }

    def aurora_sql(self, statement: str, params=()) -> None:
        with self.mysql.cursor() as cur:
            cur.execute(statement.format(t=f"`{self.target_db}`.`{self.db}_customers_state`"), params)

    def aurora_copy_row(self, from_id: int, to_id: int) -> None:
        state, copied = f"`{self.target_db}`.`{self.db}_customers_state`", f"`{self.target_db}`.copied"
        with self.mysql.cursor() as cur:
            cur.execute(f"CREATE TEMPORARY TABLE {copied} AS SELECT * FROM {state} WHERE id = %s", (from_id,))
            cur.execute(f"UPDATE {copied} SET id = %s", (to_id,))
            table = f"{self.db}_customers_state"
            stored = ", ".join(
                f"`{c.name}`" for c in catalog_columns(self.mysql, self.target_db, [table])[table] if not c.generated
            )  # _cdc_commit_ts is computed
            cur.execute(f"INSERT INTO {state} ({stored}) SELECT {stored} FROM {copied}")
            cur.execute(f"DROP TEMPORARY TABLE {copied}")

    def bigquery_sql(self, statement: str) -> None:
        self.bq.query(statement.format(t=f"`local.{self.dataset}.{self.db}_customers_changelog`")).result()


@pytest.fixture
def world(stack, unique_name, tmp_path):
    w = ReconcileWorld(stack, unique_name, tmp_path)
    yield w
    w.close()


def _seed_every_type(world: ReconcileWorld) -> None:
    world.seed(range(1, 9), full_load=False)
    world.dms.update(world.customers, {"id": 2}, {"name": "", "notes": ""})  # empty, not NULL
    world.dms.update(
        world.customers,
        {"id": 3},
        {
            "qty": None,
            "amount": None,
            "name": None,
            "notes": None,
            "updated_at": None,
            "seen_at": None,
            "birthday": None,
            "active": None,
            "attrs": None,
        },
    )
    world.dms.update(world.customers, {"id": 4}, {"amount": Decimal("-0.0001"), "name": "𝄞 😀 ü"})
    for order_id in (1, 2):
        for line_no in (1, 2, 3):
            world.dms.insert(
                world.lines,
                {"order_id": order_id, "line_no": line_no, "sku": f"S{line_no}", "price": Decimal("9.9900")},
            )
    values = [
        _reading(1),
        _reading(2, score=0.1 + 0.2, ratio=0.0),
        _reading(3, score=-1.5e-10, ratio=-2.5),
        _reading(4, score=1e300, payload=b""),
        _reading(5, score=None, ratio=None, payload=None, price=None),
        _reading(6, score=123456789.123456789, price=Decimal("100")),
        _reading(7, score=0.0, tiny=None),
        _reading(8, score=1000.285714285),  # ×1e8 is a tie (…428.5): the engines' ROUND differ there
        _reading(9, score=-5e-324, ratio=1e-30),
        _reading(10, score=1e-300),
    ]  # subnormal, tiny: no overflow
    for row in values:
        world.dms.insert(world.readings, row)
    for table in (world.customers, world.lines, world.readings):
        world.dms.flush(table)
    world.load_everything()


def _differences(comparison) -> dict:
    return {tuple(d.key.values()): (d.kind, sorted(d.columns)) for d in comparison.differences if not d.lag}


def test_in_sync_every_type_reports_zero_differences_in_aurora_and_bigquery(world):
    _seed_every_type(world)
    expected_rows = {world.customers: 8, world.lines: 6, world.readings: 10}
    for table, rows in expected_rows.items():
        results = world.reconcile(table)
        assert set(results) == {"aurora", "bigquery"}
        for target, c in results.items():
            assert (c.status, c.source_rows, c.target_rows, c.missing, c.extra, c.changed) == (
                "in_sync",
                rows,
                rows,
                0,
                0,
                0,
            ), (table, target, c.summary())
            assert not c.ignored_columns, c.ignored_columns  # every column type took part
    # the floats were hashed too: a tiny drift in a double is seen by both targets
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE `{world.db}`.readings SET score = score * 1.000001 WHERE id = 6")
    for c in world.reconcile(world.readings).values():
        assert _differences(c) == {(6,): ("changed", ["score"])}, c.summary()


EDGE_FLOATS = [
    999.9999999999999,
    1000.0000000000001,
    0.1,
    1e-5,
    0.3,
    1e22,
    1e23,
    9.999999999999999e22,
    1e-7,
    123456789012.5,
    99999999999.99998,
    0.9999999999999999,
    1e15,
    1e16 - 1,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    1e100,
    1e-100,
    7e-310,
    0.0001,
    -1e-5,
]


def test_floats_near_powers_of_ten_and_at_the_extremes_are_in_sync(world):
    """A FLOAT holding 1e-5 is 9.99999974737875e-06: rounded to 6 digits it carries into the
    next power of ten (1000000e-11), where the target's DOUBLE 1e-05 gives 100000e-10. Both
    must print the same; so must doubles at the edges of the range."""
    for i, value in enumerate(EDGE_FLOATS, start=1):
        world.dms.insert(world.readings, _reading(i, score=value, ratio=value if abs(value) < 3e38 else None))
    world.dms.full_load(world.readings)
    world.load_everything()
    for c in world.reconcile(world.readings).values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 22, 22), c.summary()


def test_a_replica_with_the_same_types_is_compared_natively_nulls_and_doubles_included(world):
    """Two MySQL tables of identical types hash values as printed (doubles as exponent and
    mantissa): NULL must still differ from '' and from its neighbour's value, and any change
    of a double, however small, must show."""
    db = world.db
    rows = [
        (1, "x", None, 1.5),
        (2, None, "y", -5e-324),
        (3, "", None, 1e-300),
        (4, "z", "z", 0.0),
        (5, None, None, 1.7976931348623157e308),
        (6, "w", None, 2.0**-1022),
    ]
    with world.mysql.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{db}`.pairs (id INT PRIMARY KEY, a VARCHAR(10) NULL, b VARCHAR(10) NULL, d DOUBLE NULL)"
        )
        cur.execute(f"CREATE TABLE `{db}`.pairs_replica LIKE `{db}`.pairs")
        cur.executemany(f"INSERT INTO `{db}`.pairs VALUES (%s, %s, %s, %s)", rows)
        cur.execute(f"INSERT INTO `{db}`.pairs_replica SELECT * FROM `{db}`.pairs")

    def compare_pairs():
        def side(name):
            return MySqlSide(name, world.source_connection, db, name, hash_function="crc32")

        return compare("pairs", side("pairs"), side("pairs_replica"), ["id"], settings=Settings(recheck_seconds=0))

    assert compare_pairs().status == "in_sync"
    with world.mysql.cursor() as cur:
        # CONCAT_WS skips NULLs: each of these prints like the source row without the NULL bitmap
        cur.execute(f"UPDATE `{db}`.pairs_replica SET a = NULL, b = 'x' WHERE id = 1")
        cur.execute(f"UPDATE `{db}`.pairs_replica SET a = 'y', b = NULL WHERE id = 2")  # the opposite shift
        cur.execute(f"UPDATE `{db}`.pairs_replica SET a = NULL, b = '' WHERE id = 3")
        cur.execute(f"UPDATE `{db}`.pairs_replica SET d = -0.0 WHERE id = 2")  # the smallest double → -0
        cur.execute(f"UPDATE `{db}`.pairs_replica SET d = d * (1 + POW(2, -52)) WHERE id = 6")  # one ulp
    result = compare_pairs()
    assert _differences(result) == {
        (1,): ("changed", ["a", "b"]),
        (2,): ("changed", ["a", "b", "d"]),
        (3,): ("changed", ["a", "b"]),
        (6,): ("changed", ["d"]),
    }, result.summary()


def test_a_target_that_was_never_loaded_is_missing_every_source_row(world):
    world.seed(range(1, 6))  # landed, not loaded
    for c in world.reconcile(world.customers).values():
        assert (c.status, c.source_rows, c.target_rows, c.missing) == ("drift", 5, 0, 5), c.summary()
        assert sorted(d.key["id"] for d in c.differences) == [1, 2, 3, 4, 5]
        assert not c.partial
    # a target that differs almost everywhere is not copied to the worker: partial, still drift
    capped = world.reconcile(world.customers, settings=Settings(recheck_seconds=0, max_fetch_rows=2))
    for c in capped.values():
        assert (c.status, c.partial, c.source_rows, c.target_rows) == ("drift", True, 5, 0), c.summary()
        assert c.missing <= 2 and "lower bounds" in c.summary()


def test_injected_drift_names_exactly_the_keys_and_columns(world):
    _seed_every_type(world)
    world.aurora_sql("UPDATE {t} SET qty = qty + 1 WHERE id = 1")
    world.aurora_sql("DELETE FROM {t} WHERE id = 5")
    world.aurora_copy_row(1, 99)  # a key the source never had
    world.aurora_sql("UPDATE {t} SET name = NULL WHERE id = 2")  # '' in the source
    world.aurora_sql("UPDATE {t} SET updated_at = updated_at + INTERVAL 1 MICROSECOND WHERE id = 6")
    world.aurora_sql("UPDATE {t} SET _cdc_deleted = 1 WHERE id = 7")  # a tombstone where the source has a row

    world.bigquery_sql("UPDATE {t} SET qty = qty + 1 WHERE id = 1")
    world.bigquery_sql("DELETE FROM {t} WHERE id = 5")
    world.bigquery_sql("UPDATE {t} SET name = NULL WHERE id = 2")
    world.bigquery_sql("UPDATE {t} SET updated_at = TIMESTAMP_ADD(updated_at, INTERVAL 1 MICROSECOND) WHERE id = 6")
    world.bigquery_sql("INSERT INTO {t} SELECT * REPLACE (99 AS id) FROM {t} WHERE id = 1")

    results = world.reconcile(world.customers)
    assert _differences(results["aurora"]) == {
        (1,): ("changed", ["qty"]),
        (2,): ("changed", ["name"]),
        (5,): ("missing", []),
        (6,): ("changed", ["updated_at"]),
        (7,): ("missing", []),
        (99,): ("extra", []),
    }
    assert _differences(results["bigquery"]) == {
        (1,): ("changed", ["qty"]),
        (2,): ("changed", ["name"]),
        (5,): ("missing", []),
        (6,): ("changed", ["updated_at"]),
        (99,): ("extra", []),
    }
    aurora = results["aurora"]
    assert (aurora.status, aurora.source_rows, aurora.target_rows) == ("drift", 8, 7)
    assert (aurora.missing, aurora.extra, aurora.changed) == (2, 1, 3)
    # the other tables were not touched
    for c in world.reconcile(world.lines).values():
        assert c.status == "in_sync", c.summary()

    # one result row per target in each target's results table, with a bounded sample
    stored = reconcile.load_results(
        world.pipeline, "test", bigquery_client=world.bq, aurora_connect=world.source_connection
    )
    customers = {r["target"]: r for r in stored if r["table_name"] == world.customers}
    assert customers["aurora"]["status"] == "drift" and customers["aurora"]["missing_rows"] == 2
    assert customers["bigquery"]["changed_rows"] == 3 and customers["bigquery"]["extra_rows"] == 1
    assert {tuple(d["key"].values()) for d in customers["bigquery"]["sample_keys"]} == {(1,), (2,), (5,), (6,), (99,)}


def test_sample_of_differing_keys_is_bounded(stack, unique_name, tmp_path):
    w = ReconcileWorld(stack, unique_name, tmp_path, sample_keys=3)
    try:
        _seed_every_type(w)
        w.aurora_sql("UPDATE {t} SET qty = -1")
        c = w.reconcile(w.customers, targets=["aurora"])["aurora"]
        assert (c.changed, len(c.sample)) == (8, 3)
        assert [d.key["id"] for d in c.sample] == [1, 2, 3]
    finally:
        w.close()


def test_bisection_finds_a_few_keys_among_many_rows(world):
    """Enough rows for several levels: buckets, bisection, then rows of small segments only —
    in both engines, whose bucket numbers must agree."""
    rows = [
        {
            "id": i * 3,
            "tiny": i % 100,
            "small": i % 1000,
            "score": i * 0.5,
            "ratio": None,
            "price": Decimal(i),
            "payload": None,
            "label": f"n{i}",
            "day": None,
            "at": None,
        }
        for i in range(1, 20001)
    ]
    with world.mysql.cursor() as cur:
        cur.executemany(
            f"INSERT INTO `{world.db}`.readings (id, tiny, small, score, ratio, price, payload, label, day, at) "
            "VALUES (%(id)s, %(tiny)s, %(small)s, %(score)s, %(ratio)s, %(price)s, %(payload)s, %(label)s, "
            "%(day)s, %(at)s)",
            rows,
        )
    world.dms.full_load(world.readings)
    world.load_everything()
    with world.mysql.cursor() as cur:
        state = f"`{world.target_db}`.`{world.db}_readings_state`"
        cur.execute(f"UPDATE {state} SET label = 'x' WHERE id IN (51, 27000, 59997)")
        cur.execute(f"DELETE FROM {state} WHERE id = 37035")
    changelog = f"`local.{world.dataset}.{world.db}_readings_changelog`"
    world.bq.query(f"UPDATE {changelog} SET label = 'x' WHERE id IN (51, 27000, 59997)").result()
    world.bq.query(f"DELETE FROM {changelog} WHERE id = 37035").result()
    settings = Settings(max_buckets=16, leaf_rows=50, recheck_seconds=0)
    for c in world.reconcile(world.readings, settings=settings).values():
        assert _differences(c) == {
            (51,): ("changed", ["label"]),
            (27000,): ("changed", ["label"]),
            (59997,): ("changed", ["label"]),
            (37035,): ("missing", []),
        }, c.summary()
        assert (c.source_rows, c.target_rows) == (20000, 19999)
        assert c.levels == 2  # 16 buckets of 1250 rows were too big to fetch: they were split once
        assert c.rows_fetched <= 4 * 2 * 50  # only small segments travelled


def test_text_keys_are_bucketed_by_key_hash_in_both_engines(world):
    """No integer leading key: buckets are residues of a hash of the key, computed the same
    way in MySQL and BigQuery, split further by a larger modulus."""
    for i in range(3000):
        world.dms.insert(world.tags, {"code": f"tag-{i:05d}-é", "note": None if i % 10 == 0 else f"note {i}"})
    world.dms.full_load(world.tags)
    world.load_everything()
    state = f"`{world.target_db}`.`{world.db}_tags_state`"
    changelog = f"`local.{world.dataset}.{world.db}_tags_changelog`"
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {state} SET note = '' WHERE code = 'tag-00010-é'")  # NULL in the source
        cur.execute(f"DELETE FROM {state} WHERE code = 'tag-02999-é'")
    world.bq.query(f"UPDATE {changelog} SET note = 'x' WHERE code = 'tag-01234-é'").result()
    settings = Settings(max_buckets=64, leaf_rows=20, recheck_seconds=0)
    results = world.reconcile(world.tags, settings=settings)
    assert _differences(results["aurora"]) == {
        ("tag-00010-é",): ("changed", ["note"]),
        ("tag-02999-é",): ("missing", []),
    }, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {("tag-01234-é",): ("changed", ["note"])}, results["bigquery"].summary()
    for c in results.values():
        assert c.levels >= 2 and c.rows_fetched < 3000  # split by a larger modulus, not fetched whole


HOSTILE_TEXT = [
    "a,b",
    'q"uote',
    "back\\slash",
    "new\nline",
    "tab\there",
    "cr\rx",
    "sep\x1fx",
    "nul\x00x",
    "  lead",
    "trail  ",
    "\\N",
    "NULL",
    "😀𝄞",
    "'single'",
    "x" * 20,
]


def test_hostile_text_keys_and_values_compare_and_repair_in_both_engines(world):
    """CSV and SQL specials, the hash's own separator (U+001F), NUL, trailing spaces and
    4-byte characters, as keys and as values: in sync after the load, drift named exactly,
    repaired through the normal path."""
    for value in HOSTILE_TEXT:
        world.dms.insert(world.tags, {"code": value, "note": value * 3})
    world.dms.full_load(world.tags)
    world.load_everything()
    for c in world.reconcile(world.tags).values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 15, 15), c.summary()
    state = f"`{world.target_db}`.`{world.db}_tags_state`"
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {state} SET note = 'x' WHERE code = %s", ("new\nline",))
        cur.execute(f"DELETE FROM {state} WHERE code IN (%s, %s)", ("nul\x00x", "trail  "))
    world.bq.query(f"DELETE FROM `local.{world.dataset}.{world.db}_tags_changelog` WHERE code = 'sep\\x1fx'").result()
    results = world.reconcile(world.tags)
    assert _differences(results["aurora"]) == {
        ("new\nline",): ("changed", ["note"]),
        ("nul\x00x",): ("missing", []),
        ("trail  ",): ("missing", []),
    }, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {("sep\x1fx",): ("missing", [])}, results["bigquery"].summary()
    emit_repair_file(
        world.pipeline,
        world.pipeline.table(world.tags),
        world.source_connection,
        world.s3,
        keys_to_repair(results.values()),
    )
    world.load_everything()
    for c in world.reconcile(world.tags, run_id="after-repair").values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 15, 15), c.summary()


EXTREMES_DDL = """
CREATE TABLE `{db}`.`extremes` (
  id INT NOT NULL PRIMARY KEY, big BIGINT NULL, ubig BIGINT UNSIGNED NULL, uint INT UNSIGNED NULL, tiny TINYINT NULL,
  dec38 DECIMAL(38,10) NULL, dec10 DECIMAL(10,0) NULL, dt6 DATETIME(6) NULL, d DATE NULL,
  ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6) NULL, tm0 TIME NULL, yr YEAR NULL, js JSON NULL,
  en ENUM('a', 'b c', 'é') NULL, bits BIT(12) NULL, ch CHAR(5) NULL
) DEFAULT CHARSET utf8mb4
"""
EXTREMES = [
    {
        "id": 1,
        "big": -9223372036854775808,
        "ubig": 18446744073709551615,
        "uint": 4294967295,
        "tiny": -128,
        "dec38": Decimal("9999999999999999999.9999999999"),
        "dec10": Decimal("-9999999999"),
        "dt6": dt.datetime(1000, 1, 1),
        "d": dt.date(1000, 1, 1),
        "ts": dt.datetime(1970, 1, 1, 0, 0, 1),
        "tm": "-838:59:59",
        "tm0": "-00:00:01",
        "yr": 1901,
        "js": '{"a": [1, 2.5, "😀"], "b": null}',
        "en": "b c",
        "bits": b"\x0f\xff",
        "ch": "ab",
    },
    {
        "id": 2,
        "big": 9223372036854775807,
        "ubig": 0,
        "uint": 0,
        "tiny": 127,
        "dec38": Decimal("-0.0000000001"),
        "dec10": Decimal("0"),
        "dt6": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "d": dt.date(9999, 12, 31),
        "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 999999),
        "tm": "838:59:59.000001",
        "tm0": "00:00:00",
        "yr": 2155,
        "js": "[]",
        "en": "é",
        "bits": b"\x00\x00",
        "ch": "",
    },
    {"id": 3},
]


def test_type_extremes_compare_and_repair_in_both_engines(world):
    """The ends of each type's range, TIME beyond a day and negative, BIT (whose HEX is a
    number), unsigned BIGINT: in sync after the loads; drift in TIME and BIT is named and
    repaired through a repair file (which writes TIME as MySQL prints it)."""
    table = world.add_table(EXTREMES_DDL, "extremes", ["id"])
    for row in EXTREMES:
        world.dms.insert(table, row)
    world.dms.full_load(table)
    world.load_everything()
    for c in world.reconcile(table).values():
        assert (c.status, c.source_rows, c.target_rows, c.ignored_columns) == ("in_sync", 3, 3, []), c.summary()

    state = f"`{world.target_db}`.`{world.db}_extremes_state`"
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {state} SET tm = '838:59:59' WHERE id = 2")  # the source has .000001
        cur.execute(f"UPDATE {state} SET bits = UNHEX('0001') WHERE id = 2")  # the source has 0x0000
    world.bq.query(
        f"UPDATE `local.{world.dataset}.{world.db}_extremes_changelog` SET tm0 = '00:00:01' WHERE id = 1"
    ).result()
    results = world.reconcile(table)
    assert _differences(results["aurora"]) == {(2,): ("changed", ["bits", "tm"])}, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {(1,): ("changed", ["tm0"])}, results["bigquery"].summary()
    emit_repair_file(
        world.pipeline, world.pipeline.table(table), world.source_connection, world.s3, keys_to_repair(results.values())
    )
    world.load_everything()
    for c in world.reconcile(table, run_id="after-repair").values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 3, 3), c.summary()


def test_a_composite_key_whose_leading_value_repeats_is_split_by_key_hash(world):
    """(order_id, line_no) with 3,000 lines in one order: range buckets of order_id cannot get
    narrower than one order, so that bucket is split further by a hash of the whole key
    instead of being fetched whole."""
    for order_id, lines in ((1, 3000), (2, 5), (3, 5)):
        for line_no in range(1, lines + 1):
            world.dms.insert(
                world.lines, {"order_id": order_id, "line_no": line_no, "sku": f"S{line_no}", "price": Decimal("1.5")}
            )
    world.dms.full_load(world.lines)
    world.load_everything()
    with world.mysql.cursor() as cur:
        cur.execute(
            f"UPDATE `{world.target_db}`.`{world.db}_order_lines_state` SET sku = 'x' "
            "WHERE order_id = 1 AND line_no = 1234"
        )
    world.bq.query(
        f"DELETE FROM `local.{world.dataset}.{world.db}_order_lines_changelog` WHERE order_id = 1 AND line_no = 2999"
    ).result()
    results = world.reconcile(world.lines, settings=Settings(max_buckets=64, leaf_rows=50, recheck_seconds=0))
    assert _differences(results["aurora"]) == {(1, 1234): ("changed", ["sku"])}, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {(1, 2999): ("missing", [])}, results["bigquery"].summary()
    for c in results.values():
        assert c.levels >= 2 and c.rows_fetched < 300, c.summary()  # not the 3,000 rows of order 1


def test_reserved_words_as_table_and_column_names_load_and_compare(world):
    """A table `select` keyed by (`order`, `from`), columns `Group` and `key`: quoted everywhere."""
    table = world.add_table(
        "CREATE TABLE `{db}`.`select` (`order` INT NOT NULL, `from` VARCHAR(10) NOT NULL, "
        "`Group` INT NULL, `key` TEXT NULL, PRIMARY KEY (`order`, `from`)) DEFAULT CHARSET utf8mb4",
        "select",
        ["order", "from"],
    )
    for i in range(5):
        world.dms.insert(table, {"order": i, "from": f"f{i}", "Group": i, "key": "k"})
    world.dms.full_load(table)
    world.load_everything()
    for c in world.reconcile(table).values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 5, 5), c.summary()
    with world.mysql.cursor() as cur:
        cur.execute(
            f"UPDATE `{world.target_db}`.`{world.db}_select_state` SET `Group` = 9 WHERE `order` = 3 AND `from` = 'f3'"
        )
    aurora = world.reconcile(table, targets=["aurora"])["aurora"]
    assert _differences(aurora) == {(3, "f3"): ("changed", ["Group"])}, aurora.summary()


def test_lag_is_not_drift_and_a_target_change_is(world):
    _seed_every_type(world)
    # the source moves on after the load (newer than the target's watermark), no file yet
    world.dms.update(
        world.customers, {"id": 1}, {"name": "changed later", "updated_at": dt.datetime(2026, 11, 23, 23, 0, 0)}
    )
    world.aurora_sql("UPDATE {t} SET qty = 0 WHERE id = 4")  # a real difference in the target
    results = world.reconcile(world.customers)
    assert _differences(results["aurora"]) == {(4,): ("changed", ["qty"])}, results["aurora"].summary()
    assert results["aurora"].status == "drift"
    assert _differences(results["bigquery"]) == {}
    assert results["bigquery"].status == "lag"
    for c in results.values():
        assert [d.key for d in c.differences if d.lag] == [{"id": 1}], c.summary()
    world.aurora_sql("UPDATE {t} SET qty = 40 WHERE id = 4")  # undo the target change
    c = world.reconcile(world.customers, targets=["aurora"])["aurora"]
    assert (c.status, c.lag) == ("lag", 1)  # lag alone does not fail


def test_a_difference_that_catches_up_before_the_recheck_is_lag(world):
    """No update timestamp to tell: the mismatching keys are compared again after a wait,
    during which the pipeline loads the pending change."""
    _seed_every_type(world)
    world.dms.update(world.lines, {"order_id": 1, "line_no": 2}, {"sku": "late"})
    waits = []

    def wait_and_load(seconds):
        waits.append(seconds)
        world.dms.flush(world.lines)
        world.run_aurora()

    c = world.reconcile(world.lines, targets=["aurora"], settings=Settings(recheck_seconds=5), sleep=wait_and_load)[
        "aurora"
    ]
    assert waits == [5]
    assert (c.status, c.lag, c.changed) == ("lag", 1, 0)


def test_repair_re_emits_source_rows_and_the_targets_converge(world):
    _seed_every_type(world)
    world.aurora_sql("UPDATE {t} SET qty = qty + 1 WHERE id = 1")
    world.aurora_sql("DELETE FROM {t} WHERE id = 5")
    world.aurora_copy_row(1, 99)  # a key the source never had
    world.bigquery_sql("UPDATE {t} SET name = 'wrong' WHERE id = 3")
    results = world.reconcile(world.customers)
    keys = keys_to_repair(results.values())
    assert sorted(k["id"] for k in keys) == [1, 3, 5, 99]  # 1, 5, 99 drifted in Aurora, 3 in BigQuery
    key = emit_repair_file(
        world.pipeline, world.pipeline.table(world.customers), world.source_connection, world.s3, keys
    )
    assert key.startswith(f"dms/{world.db}/customers/") and "-repair-" in key
    world.load_everything()  # the normal path: plan from the watermark, load into both targets
    for c in world.reconcile(world.customers, run_id="after-repair").values():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 8, 8), c.summary()
    assert 99 not in world.aurora_rows() and world.aurora_rows()[1]["qty"] == customer(1)["qty"]


def test_dms_csv_pipeline_is_in_sync_every_type_and_repairs_with_csv_files(stack, unique_name, tmp_path):
    """Floats, bytes, text with delimiters and NULL vs '' travel as DMS CSV text; the repair
    file is DMS CSV in the declared column order, which the loaders read like DMS's own."""
    w = ReconcileWorld(stack, unique_name, tmp_path, file_format="csv")
    try:
        _seed_every_type(w)
        for table in (w.customers, w.lines, w.readings):
            for c in w.reconcile(table).values():
                assert c.status == "in_sync", c.summary()
        w.aurora_sql("UPDATE {t} SET name = 'drift, \"x\"' WHERE id = 2")
        w.bigquery_sql("DELETE FROM {t} WHERE id = 4")
        keys = keys_to_repair(w.reconcile(w.customers).values())
        assert sorted(k["id"] for k in keys) == [2, 4]
        key = emit_repair_file(w.pipeline, w.pipeline.table(w.customers), w.source_connection, w.s3, keys)
        assert key.endswith(".csv") and "-repair-" in key
        w.load_everything()
        for c in w.reconcile(w.customers, run_id="after-repair").values():
            assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 8, 8), c.summary()
        assert w.aurora_rows()[2]["name"] == "" and w.view_rows()[4] == w.source_rows(w.customers)[4]
    finally:
        w.close()


@pytest.mark.airflow
def test_reconcile_dag_fails_on_drift_writes_the_report_and_repairs(
    stack, airflow_db, unique_name, tmp_path, monkeypatch
):
    from tests.integration.harness import pipeline_dag
    from tests.integration.test_dag_runs import _task_states

    w = ReconcileWorld(stack, unique_name, tmp_path)
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(w.target_db))
        monkeypatch.setenv("AIRFLOW_CONN_MYSQL_SOURCE", stack.mariadb.airflow_conn(w.db))
        w.seed(range(1, 6))
        w.dms.full_load(w.readings)
        assert str(w.dag().test().state) == "success"
        w.aurora_sql("UPDATE {t} SET name = 'drifted' WHERE id = 3")

        reconcile_dag = pipeline_dag(w.config_path, w.pipeline.reconcile_dag_id)
        run = reconcile_dag.test()
        states = _task_states(run)
        assert sorted(states["reconcile_table"]) == ["failed", "success", "success", "success"], states  # customers
        assert states["write_report"] == ["success"]
        assert states["all_in_sync"] == ["upstream_failed"] and str(run.state) == "failed"  # drift fails the run
        report = (
            w.s3.get_object(
                Bucket=w.bucket,
                Key=f"cdc-sync/reports/{w.pipeline.name}/" + run.run_id.replace(":", "_").replace("+", "_") + ".md",
            )["Body"]
            .read()
            .decode()
        )
        assert "| aurora | ❌ drift |" in report and "id=3 changed (name)" in report
        rows = reconcile.load_results(w.pipeline, run.run_id, bigquery_client=w.bq, aurora_connect=w.source_connection)
        assert {(r["table_name"].split(".")[1], r["target"], r["status"]) for r in rows} == {
            ("customers", "aurora", "drift"),
            ("customers", "bigquery", "in_sync"),
            ("order_lines", "aurora", "in_sync"),
            ("order_lines", "bigquery", "in_sync"),
            ("readings", "aurora", "in_sync"),
            ("readings", "bigquery", "in_sync"),
            ("tags", "aurora", "in_sync"),
            ("tags", "bigquery", "in_sync"),
        }  # empty in the source, never loaded

        # rerun from the UI with repair: the differing rows go through the landing folder
        repair_run = reconcile_dag.test(run_conf={"repair": True, "tables": [w.customers]})
        assert _task_states(repair_run)["reconcile_table"] == ["failed"]  # still drift until the pipeline ran
        assert str(w.dag().test().state) == "success"
        assert w.aurora_rows() == w.source_rows(w.customers)
        after = reconcile_dag.test(run_conf={"tables": [w.customers]})
        assert str(after.state) == "success", _task_states(after)
    finally:
        w.close()


@pytest.mark.airflow
def test_cli_compares_and_repairs_a_key_range(world, stack, airflow_db, monkeypatch):
    from cdc_sync.reconcile.cli import main

    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_SOURCE", stack.mariadb.airflow_conn(world.db))
    monkeypatch.setenv("AIRFLOW_CONN_MYSQL_TARGET", stack.mariadb.airflow_conn(world.target_db))
    _seed_every_type(world)
    world.aurora_sql("UPDATE {t} SET qty = -1 WHERE id IN (2, 4)")
    world.aurora_sql("DELETE FROM {t} WHERE id = 3")
    common = ["--config", str(world.config_path), "--pipeline", world.pipeline.name, "--table", world.customers]
    assert main(["compare", *common]) == 1  # drift
    assert main(["repair", *common, "--from", "2", "--to", "4"]) == 0
    world.load_everything()
    assert main(["compare", *common]) == 0
    assert world.aurora_rows() == world.source_rows(world.customers)


def test_repair_finds_source_rows_by_keys_as_reconciliation_compares_them(world):
    """Keys come from a comparison normalised (aware UTC datetimes, integral decimals as int):
    the repair must still find those rows in the source and update them, not delete them."""
    import io

    import pyarrow.parquet as pq

    from cdc_sync.config import TableSpec
    from cdc_sync.reconcile.sides import key_token

    with world.mysql.cursor() as cur:
        cur.execute(
            f"CREATE TABLE `{world.db}`.events (at DATETIME(6) NOT NULL, n DECIMAL(10,0) NOT NULL, "
            "label VARCHAR(20), PRIMARY KEY (at, n))"
        )
        cur.execute(f"INSERT INTO `{world.db}`.events VALUES ('2026-01-02 03:04:05.000006', 7, 'kept')")
    table = TableSpec(schema=world.db, name="events", primary_key=("at", "n"))
    at = key_token(dt.datetime(2026, 1, 2, 3, 4, 5, 6))
    keys = [{"at": at, "n": key_token(Decimal("7"))}, {"at": at, "n": 8}]
    key = emit_repair_file(world.pipeline, table, world.source_connection, world.s3, keys)
    rows = pq.read_table(io.BytesIO(world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read())).to_pylist()
    assert [(r["Op"], r["n"], r["label"]) for r in rows] == [("U", 7, "kept"), ("D", 8, None)]


# --- issue 23 / issue 14 item 6: a proof that cannot be fooled -------------------------------------------------


def _changelog(world: ReconcileWorld, name: str) -> str:
    return f"`local.{world.dataset}.{world.db}_{name}_changelog`"


def _state(world: ReconcileWorld, name: str) -> str:
    return f"`{world.target_db}`.`{world.db}_{name}_state`"


def test_a_value_holding_the_separator_cannot_shift_into_its_neighbour(world):
    """Row texts join columns with U+001F: ('x\x1fy', 'z') and ('x', 'y\x1fz') read alike as
    printed (MySQL ⇄ MySQL, same types), ('x\x1fvy', 'z') and ('x', 'y\x1fvz') with the 'v'
    prefix of normalised values. Every text value is framed by its length, so moving the
    separator across two adjacent columns is a change in both engines."""
    table = world.add_table(
        "CREATE TABLE `{db}`.`pairs` (id INT NOT NULL PRIMARY KEY, a VARCHAR(10) NULL, "
        "b VARCHAR(10) NULL, c TEXT NULL) DEFAULT CHARSET utf8mb4",
        "pairs",
        ["id"],
    )
    world.dms.insert(table, {"id": 1, "a": "x\x1fy", "b": "z", "c": "1:"})
    world.dms.insert(table, {"id": 2, "a": "p", "b": "q", "c": "r"})
    world.dms.insert(table, {"id": 3, "a": "x\x1fvy", "b": "z", "c": "s"})
    world.dms.full_load(table)
    world.load_everything()
    for c in world.reconcile(table).values():
        assert c.status == "in_sync", c.summary()
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {_state(world, 'pairs')} SET a = 'x', b = 'y\x1fz' WHERE id = 1")
        cur.execute(f"UPDATE {_state(world, 'pairs')} SET a = 'x', b = 'y\x1fvz' WHERE id = 3")
    sep = "CODE_POINTS_TO_STRING([31])"
    world.bq.query(
        f"UPDATE {_changelog(world, 'pairs')} SET a = 'x', b = CONCAT('y', {sep}, 'z') WHERE id = 1"
    ).result()
    world.bq.query(
        f"UPDATE {_changelog(world, 'pairs')} SET a = 'x', b = CONCAT('y', {sep}, 'vz') WHERE id = 3"
    ).result()
    results = world.reconcile(table)
    for target, c in results.items():
        assert _differences(c) == {(1,): ("changed", ["a", "b"]), (3,): ("changed", ["a", "b"])}, (target, c.summary())
        assert c.status == "drift"


def test_a_source_column_the_target_lacks_is_drift(world):
    _seed_every_type(world)
    with world.mysql.cursor() as cur:  # schema drift that never reached the targets
        cur.execute(f"ALTER TABLE `{world.db}`.order_lines ADD COLUMN discount INT NULL DEFAULT 5")
    for target, c in world.reconcile(world.lines).items():
        assert (c.status, c.missing_columns, c.changed) == ("drift", ["discount"], 0), (target, c.summary())
        assert "missing in the target: discount" in c.summary()
    config = yaml.safe_load(world.config_path.read_text())  # excluded on purpose: no difference
    config["pipelines"][0]["tables"][1]["reconcile_exclude"] = ["discount"]
    world.config_path.write_text(yaml.safe_dump(config))
    for target, c in world.reconcile(world.lines).items():
        assert (c.status, c.missing_columns) == ("in_sync", []), (target, c.summary())


def test_a_mysql_zero_date_compares_as_the_null_the_loaders_store(world):
    """The loaders store '0000-00-00' as NULL: the source side reads it the same way, natively
    (Aurora: same types) and as text (BigQuery); a real date the target lost still differs."""
    table = world.add_table(
        "CREATE TABLE `{db}`.`dates` (id INT NOT NULL PRIMARY KEY, d DATE NULL, "
        "t DATETIME(6) NULL, n INT NULL) DEFAULT CHARSET utf8mb4",
        "dates",
        ["id"],
    )
    world.dms.insert(table, {"id": 1, "d": None, "t": None, "n": 1})
    world.dms.insert(table, {"id": 2, "d": dt.date(2020, 1, 1), "t": dt.datetime(2020, 1, 1, 1, 2, 3), "n": 2})
    world.dms.full_load(table)
    world.load_everything()
    with world.mysql.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute(f"UPDATE `{world.db}`.dates SET d = '0000-00-00', t = '0000-00-00 00:00:00' WHERE id = 1")
        cur.execute("SET SESSION sql_mode = DEFAULT")
        cur.execute(f"SELECT CAST(d AS CHAR) FROM `{world.db}`.dates WHERE id = 1")
        assert cur.fetchone()[0] == "0000-00-00"  # the source does hold the zero date
    for target, c in world.reconcile(table).items():
        assert (c.status, c.changed) == ("in_sync", 0), (target, c.summary())
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {_state(world, 'dates')} SET d = NULL WHERE id = 2")
    world.bq.query(f"UPDATE {_changelog(world, 'dates')} SET t = NULL WHERE id = 2").result()
    results = world.reconcile(table)
    assert _differences(results["aurora"]) == {(2,): ("changed", ["d"])}, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {(2,): ("changed", ["t"])}, results["bigquery"].summary()


def test_a_table_keyed_by_floats_is_refused_and_repair_deletes_nothing(world):
    """`k = 1.1` never finds a FLOAT 1.1: such keys cannot be looked up exactly, so compare and
    repair refuse the table up front, naming the column, and no repair file is written."""
    from cdc_sync.reconcile.diff import ReconcileError

    table = world.add_table(
        "CREATE TABLE `{db}`.`floaty` (k FLOAT NOT NULL PRIMARY KEY, v INT NULL) DEFAULT CHARSET utf8mb4",
        "floaty",
        ["k"],
    )
    with world.mysql.cursor() as cur:  # the stand-in itself could not find k = 1.1 again to record it
        cur.execute(f"INSERT INTO `{world.db}`.floaty VALUES (1.1, 1), (2.5, 2)")
    world.dms.full_load(table)
    world.load_everything()
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {_state(world, 'floaty')} SET v = 9 WHERE v = 1")
    for target in ("aurora", "bigquery"):
        with pytest.raises(ReconcileError, match=r"floaty: primary key column k is float, an approximate number"):
            world.reconcile(table, targets=[target])
    before = world.s3.list_objects_v2(Bucket=world.bucket, Prefix=f"dms/{world.db}/floaty/")["KeyCount"]
    with pytest.raises(ReconcileError, match="approximate number"):
        emit_repair_file(world.pipeline, world.pipeline.table(table), world.source_connection, world.s3, [{"k": 1.1}])
    assert world.s3.list_objects_v2(Bucket=world.bucket, Prefix=f"dms/{world.db}/floaty/")["KeyCount"] == before


TIME_KEYS_DDL = """CREATE TABLE `{db}`.`slots` (t TIME(6) NOT NULL, u BIGINT UNSIGNED NOT NULL, v VARCHAR(10) NULL,
  PRIMARY KEY (t, u)) DEFAULT CHARSET utf8mb4"""


def test_time_and_large_unsigned_keys_compare_and_repair_in_both_engines(world):
    """TIME keys (timedelta in MySQL, text in the targets) and BIGINT UNSIGNED keys of 2^63 and
    more (no INT64 parameter holds them) are looked up and compared exactly."""
    table = world.add_table(TIME_KEYS_DDL, "slots", ["t", "u"])
    rows = [
        ("-838:59:59", 18446744073709551615, "a"),
        ("838:59:59.000001", 9223372036854775808, "b"),
        ("00:00:00", 0, "c"),
        ("-00:00:01.5", 7, "d"),
    ]
    for t, u, v in rows:
        world.dms.insert(table, {"t": t, "u": u, "v": v})
    world.dms.full_load(table)
    world.load_everything()
    for target, c in world.reconcile(table).items():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 4, 4), (target, c.summary())
    with world.mysql.cursor() as cur:
        cur.execute(f"UPDATE {_state(world, 'slots')} SET v = 'x' WHERE u = 9223372036854775808")
        cur.execute(f"DELETE FROM {_state(world, 'slots')} WHERE u = 7")
    world.bq.query(f"UPDATE {_changelog(world, 'slots')} SET v = 'x' WHERE v = 'a'").result()
    results = world.reconcile(table)
    assert _differences(results["aurora"]) == {
        ("838:59:59.000001", 9223372036854775808): ("changed", ["v"]),
        ("-00:00:01.500000", 7): ("missing", []),
    }, results["aurora"].summary()
    assert _differences(results["bigquery"]) == {("-838:59:59", 18446744073709551615): ("changed", ["v"])}, results[
        "bigquery"
    ].summary()
    emit_repair_file(
        world.pipeline, world.pipeline.table(table), world.source_connection, world.s3, keys_to_repair(results.values())
    )
    world.load_everything()
    for target, c in world.reconcile(table, run_id="after-repair").items():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 4, 4), (target, c.summary())


def test_repair_never_deletes_a_key_the_source_holds_under_its_collation(world):
    """'abc ' and 'ABC' are the source's 'abc' under a PAD SPACE, case-insensitive collation:
    the repair re-emits that row instead of a delete that would remove it from Aurora; only a
    key the source lacks by its own comparison becomes a delete."""
    import io

    import pyarrow.parquet as pq

    table = world.add_table(
        "CREATE TABLE `{db}`.`codes` (code VARCHAR(10) NOT NULL PRIMARY KEY, n INT NULL) "
        "DEFAULT CHARSET utf8mb4 COLLATE utf8mb4_general_ci",
        "codes",
        ["code"],
    )
    world.dms.insert(table, {"code": "abc", "n": 1})
    world.dms.insert(table, {"code": "gone", "n": 2})
    world.dms.full_load(table)
    world.load_everything()
    with world.mysql.cursor() as cur:
        cur.execute(f"DELETE FROM `{world.db}`.codes WHERE code = 'gone'")  # the target still has it: extra
    key = emit_repair_file(
        world.pipeline,
        world.pipeline.table(table),
        world.source_connection,
        world.s3,
        [{"code": "abc "}, {"code": "ABC"}, {"code": "gone"}],
    )
    rows = pq.read_table(io.BytesIO(world.s3.get_object(Bucket=world.bucket, Key=key)["Body"].read())).to_pylist()
    assert sorted((r["Op"], r["code"], r["n"]) for r in rows) == [("D", "gone", None), ("U", "abc", 1)]
    world.load_everything()
    with world.mysql.cursor() as cur:
        cur.execute(f"SELECT code, n FROM `{world.target_db}`.`{world.db}_codes`")
        assert dict(cur.fetchall()) == {"abc": 1}  # the live row is still there
    view = world.bq.query(f"SELECT code, n FROM `local.{world.dataset}.{world.db}_codes`").result()
    assert {r["code"]: r["n"] for r in view} == {"abc": 1}
    for target, c in world.reconcile(table, run_id="after-repair").items():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 1, 1), (target, c.summary())


def _commit_next_at(world: ReconcileWorld, when: dt.datetime) -> None:
    """Move the stand-in's commit clock so that its next change commits exactly at `when`."""
    now = world.dms.tick(0)
    world.dms.tick((when - now).total_seconds() - 0.001)


def test_a_loaded_change_with_a_whole_second_commit_time_is_drift_not_lag(world):
    """Binlog commit times have whole seconds: a row changed at 08:00:00.4 commits at 08:00:00.
    Once that change is loaded (the target's row holds it) a difference in the row is drift,
    although its update time is later than the watermark; a change not loaded yet is lag."""
    world.seed(range(1, 4), full_load=False)
    world.dms.full_load(world.customers, transfer_time=dt.datetime(2026, 11, 23, 7, 0, 0, tzinfo=dt.UTC))
    _commit_next_at(world, dt.datetime(2026, 11, 23, 8, 0, 0, tzinfo=dt.UTC))
    world.dms.update(
        world.customers, {"id": 1}, {"name": "loaded", "updated_at": dt.datetime(2026, 11, 23, 8, 0, 0, 400000)}
    )
    world.dms.flush(world.customers)
    world.load_everything()
    world.dms.update(
        world.customers, {"id": 2}, {"name": "pending", "updated_at": dt.datetime(2026, 11, 23, 8, 0, 0, 700000)}
    )
    world.aurora_sql("UPDATE {t} SET name = 'corrupted' WHERE id = 1")
    world.bigquery_sql("UPDATE {t} SET name = 'corrupted' WHERE id = 1")
    for target, c in world.reconcile(world.customers).items():
        assert c.watermark is not None and c.watermark.startswith("2026-11-23T08:00:00+"), (target, c.watermark)
        assert _differences(c) == {(1,): ("changed", ["name"])}, (target, c.summary())
        assert [d.key for d in c.differences if d.lag] == [{"id": 2}], (target, c.summary())
        assert c.status == "drift"


def test_a_repair_leaves_changes_still_in_flight_as_lag(world):
    """A repair file stamped with the current time would move the targets' watermark past a
    change committed earlier and not delivered yet, which would then read as drift: repair rows
    are stamped just after what the targets hold for their key instead."""
    _seed_every_type(world)
    world.aurora_sql("UPDATE {t} SET qty = qty + 1 WHERE id = 1")
    world.bigquery_sql("UPDATE {t} SET qty = qty + 1 WHERE id = 1")
    in_flight = dt.datetime(2026, 11, 23, 12, 0, 0)  # after everything loaded, before the repair is written
    world.dms.update(world.customers, {"id": 3}, {"name": "in flight", "updated_at": in_flight})
    results = world.reconcile(world.customers)
    for c in results.values():
        assert (_differences(c), [d.key for d in c.differences if d.lag]) == ({(1,): ("changed", ["qty"])}, [{"id": 3}])
    emit_repair_file(
        world.pipeline,
        world.pipeline.table(world.customers),
        world.source_connection,
        world.s3,
        keys_to_repair(results.values()),
    )
    world.load_everything()  # the repair file only: the change of id 3 is still in flight
    for target, c in world.reconcile(world.customers, run_id="after-repair").items():
        assert (c.status, _differences(c), [d.key for d in c.differences if d.lag]) == ("lag", {}, [{"id": 3}]), (
            target,
            c.summary(),
        )
        assert c.watermark < in_flight.replace(tzinfo=dt.UTC).isoformat(), (target, c.watermark)
    # DMS names its files by the real clock, later than the repair file (the stand-in's commit clock is older)
    world.dms.flush(world.customers, file_time=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    world.load_everything()
    for target, c in world.reconcile(world.customers, run_id="delivered").items():
        assert (c.status, c.source_rows, c.target_rows) == ("in_sync", 8, 8), (target, c.summary())


def _crc_forge(text: bytes, start: int, length: int, wanted: int) -> bytes:
    """`text` with bytes [start, start + length) of 'a'/'b' chosen so that CRC32 is `wanted`: CRC32
    is affine over GF(2), so each position's 'a' → 'b' flip adds a fixed 32-bit vector."""
    import zlib

    base = bytearray(text)
    base[start : start + length] = b"a" * length
    zero = zlib.crc32(bytes(len(base)))
    vectors = []
    for i in range(length):
        delta = bytearray(len(base))
        delta[start + i] = ord("a") ^ ord("b")
        vectors.append((zlib.crc32(bytes(delta)) ^ zero, 1 << i))
    need, basis = zlib.crc32(bytes(base)) ^ wanted, {}  # Gaussian elimination, tracking which flips
    for vector, flips in vectors:
        for bit in sorted(basis, reverse=True):
            if vector >> bit & 1:
                vector, flips = vector ^ basis[bit][0], flips ^ basis[bit][1]
        if vector:
            basis[vector.bit_length() - 1] = (vector, flips)
    chosen = 0
    for bit in sorted(basis, reverse=True):
        if need >> bit & 1:
            need, chosen = need ^ basis[bit][0], chosen ^ basis[bit][1]
    assert need == 0, "no solution"
    for i in range(length):
        if chosen >> i & 1:
            base[start + i] = ord("b")
    assert zlib.crc32(bytes(base)) == wanted
    return bytes(base)


def test_strong_checksums_see_a_crafted_change_that_cancels_in_the_fast_mode(stack, unique_name, tmp_path):
    """A change to one row and a compensating forged value in another row of the same bucket
    (48 letters chosen by linear algebra) keep every CRC32 row hash sum and row count equal:
    the fast mode cannot see it, the strong mode (SHA-256 rows, digest of sorted row hashes
    per bucket) names both rows, against Aurora and against BigQuery."""
    import zlib

    from cdc_sync.reconcile.diff import hash_columns
    from cdc_sync.reconcile.run import target_side

    w = ReconcileWorld(stack, unique_name, tmp_path, checksum="strong")
    try:
        for i in (1, 2, 3):
            w.dms.insert(w.tags, {"code": f"t{i}", "note": "a" * 48})
        w.dms.full_load(w.tags)
        w.load_everything()
        for c in w.reconcile(w.tags).values():
            assert (c.status, c.method) == ("in_sync", "sha256"), c.summary()

        # forge in the Aurora row texts exactly as the fast (CRC32) mode builds them
        spec = w.pipeline.table(w.tags)
        source = MySqlSide("source", w.source_connection, w.db, "tags", hash_function="crc32")
        target = target_side(w.pipeline, spec, "aurora", aurora_connect=w.source_connection)
        _, columns, _ = hash_columns(w.tags, source.kinds(), target.kinds(), ["code"], {w.timestamp_column}, True, True)
        texts = dict(
            target.run(f"SELECT code, CAST({MySqlDialect('crc32')._text(columns)} AS BINARY) FROM {target.relation}")
        )
        target.close()
        for letter in "cdefghijklmnopqrstuvwxyz":  # a change of t1 that t2 can compensate within 32 bits
            new_note = letter * 48
            delta = zlib.crc32(texts["t1"].replace(b"a" * 48, new_note.encode())) - zlib.crc32(texts["t1"])
            if 0 <= zlib.crc32(texts["t2"]) - delta < 2**32:  # the sum is exact: no wrap to hide in
                break
        start = texts["t2"].index(b"a" * 48)
        forged = _crc_forge(texts["t2"], start, 48, zlib.crc32(texts["t2"]) - delta)
        forged_note = forged[start : start + 48].decode()
        with w.mysql.cursor() as cur:
            cur.execute(f"UPDATE {_state(w, 'tags')} SET note = %s WHERE code = 't1'", (new_note,))
            cur.execute(f"UPDATE {_state(w, 'tags')} SET note = %s WHERE code = 't2'", (forged_note,))
        w.bq.query(f"UPDATE {_changelog(w, 'tags')} SET note = '{new_note}' WHERE code = 't1'").result()
        w.bq.query(f"UPDATE {_changelog(w, 'tags')} SET note = '{forged_note}' WHERE code = 't2'").result()

        one_bucket = Settings(recheck_seconds=0, max_buckets=1)  # the pair shares a bucket
        fast = compare(
            w.tags,
            MySqlSide("source", w.source_connection, w.db, "tags", hash_function="crc32"),
            MySqlSide("aurora", w.source_connection, w.target_db, f"{w.db}_tags", hash_function="crc32"),
            ["code"],
            settings=one_bucket,
            exclude={w.timestamp_column},
        )
        assert fast.status == "in_sync", fast.summary()  # the crafted pair cancels: what the fast mode cannot see
        for target_name, c in w.reconcile(w.tags, settings=one_bucket).items():
            assert _differences(c) == {("t1",): ("changed", ["note"]), ("t2",): ("changed", ["note"])}, (
                target_name,
                c.summary(),
            )
    finally:
        w.close()
