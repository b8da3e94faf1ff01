"""One isolated DMS → BigQuery world per test: a source database in MariaDB, a landing
bucket in moto, a dataset in the BigQuery emulator, a pipeline config pointing at them,
and ways to run the pipeline (library calls or the real DAG through dag.test())."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import yaml

from cdc_sync import planning
from cdc_sync.config import DmsCsvSettings, Pipeline, load_pipelines
from cdc_sync.sources.listing import Watermark
from cdc_sync.targets.bigquery import batch as bigquery_target
from tools.dms_standin import DmsStandIn

CUSTOMERS_DDL = """
CREATE TABLE `{db}`.`customers` (
  id BIGINT NOT NULL PRIMARY KEY,
  qty INT NULL,
  amount DECIMAL(18,4) NULL,
  name VARCHAR(100) NULL,
  notes TEXT NULL,
  updated_at DATETIME(6) NULL,
  seen_at TIMESTAMP(6) NULL DEFAULT NULL,
  birthday DATE NULL,
  active TINYINT(1) NULL,
  attrs JSON NULL
) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_bin
"""
LINES_DDL = """
CREATE TABLE `{db}`.`order_lines` (
  order_id BIGINT NOT NULL,
  line_no INT NOT NULL,
  sku VARCHAR(40) NULL,
  price DECIMAL(18,4) NULL,
  PRIMARY KEY (order_id, line_no)
) DEFAULT CHARSET = utf8mb4
"""


@dataclass
class InMemoryWatermarks:
    """Watermark store for library-level tests (the DAG uses Airflow Variables)."""

    values: dict = field(default_factory=dict)

    def read(self, pipeline: str, table: str) -> Watermark:
        return self.values.get((pipeline, table), Watermark())

    def write(self, pipeline: str, table: str, watermark: Watermark) -> None:
        self.values[(pipeline, table)] = watermark


class World:
    def __init__(
        self,
        stack,
        uid: str,
        tmp_path: Path,
        *,
        timestamp_column: str | None = "cdc_commit_ts",
        aurora: bool = False,
        file_format: str = "parquet",
        csv_settings: dict | None = None,
    ):
        self.stack = stack
        self.uid = uid
        self.db = f"src_{uid}"
        self.bucket = f"landing-{uid}"
        self.dataset = f"cdc_{uid}"
        self.target_db = f"tgt_{uid}" if aurora else None
        self.tmp_path = tmp_path
        self.s3 = stack.boto3_client("s3")
        self.s3.create_bucket(Bucket=self.bucket)
        self.bq = stack.bigquery_client()
        self.mysql = stack.mariadb.connect()
        with self.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
            cur.execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")
            cur.execute(CUSTOMERS_DDL.format(db=self.db))
            cur.execute(LINES_DDL.format(db=self.db))
            if self.target_db:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.target_db}`")
                cur.execute(f"CREATE DATABASE `{self.target_db}` CHARACTER SET utf8mb4")
        self.file_format = file_format
        self.csv_settings = csv_settings or {}
        self.dms = DmsStandIn(
            self.mysql,
            self.s3,
            self.bucket,
            prefix="dms",
            timestamp_column=timestamp_column,
            file_format=file_format,
            csv_settings=DmsCsvSettings(**self.csv_settings),
        )
        self.dms.track(self.db, "customers")
        self.dms.track(self.db, "order_lines")
        self.customers = f"{self.db}.customers"
        self.lines = f"{self.db}.order_lines"
        self.timestamp_column = timestamp_column
        self.config_path = tmp_path / "pipelines.yaml"
        self.write_config()
        self.watermarks = InMemoryWatermarks()
        self.aurora_s3_loads: list[str] = []  # what LOAD DATA FROM S3 read, with method aurora_s3

    def write_config(
        self,
        tables: list[dict] | None = None,
        reconcile: dict | None = None,
        aurora: dict | None = None,
        source_settings: dict | None = None,
        bigquery: dict | None = None,
        **options,
    ) -> None:
        tables = tables or [
            {"schema": self.db, "name": "customers", "primary_key": ["id"]},
            {"schema": self.db, "name": "order_lines", "primary_key": ["order_id", "line_no"]},
        ]
        if self.timestamp_column:
            for t in tables:
                t["commit_timestamp_column"] = self.timestamp_column
        if self.file_format == "csv":  # DMS CSV carries no types: declare the source's columns
            for t in tables:
                source = self.dms.tables.get(f"{t['schema']}.{t['name']}")
                if source and "columns" not in t:
                    t["columns"] = source.column_declarations
        source = {
            "kind": "dms",
            "bucket": self.bucket,
            "prefix": "dms",
            "file_format": self.file_format,
            **(source_settings or {}),
        }
        if self.csv_settings:
            source["csv"] = self.csv_settings
        document = {
            "pipelines": [
                {
                    "name": f"p_{self.uid}",
                    "schedule": None,
                    "source": source,
                    "tables": tables,
                    "targets": {
                        "bigquery": {"project": "local", "dataset": self.dataset, **(bigquery or {})},
                        **(
                            {"aurora": {"database": self.target_db, "mysql_conn_id": "mysql_target", **(aurora or {})}}
                            if self.target_db
                            else {}
                        ),
                    },
                    "options": {"poke_interval_seconds": 5, "wait_timeout_minutes": 1, "retries": 0, **options},
                    **({"reconcile": reconcile} if reconcile else {}),
                }
            ]
        }
        self.config_path.write_text(yaml.safe_dump(document))

    def seed(self, ids, *, full_load: bool = True) -> dict:
        """Insert customers `ids` in the source (and land them as a DMS full load); returns
        the latest state they must produce, computed from the rows alone."""
        expected = {}
        for i in ids:
            self.dms.insert(self.customers, customer(i))
            expected[i] = expected_row(customer(i))
        if full_load:
            self.dms.full_load(self.customers)
        return expected

    def add_loyalty_points(self, expected: dict) -> None:
        """The source gains a nullable column; key 1 sets it in a new CDC file. `expected`
        (from `seed`) is updated to the state that must follow."""
        with self.mysql.cursor() as cur:
            cur.execute(f"ALTER TABLE `{self.db}`.`customers` ADD COLUMN loyalty_points DECIMAL(10,2) NULL")
        self.dms.track(self.db, "customers")
        self.dms.update(self.customers, {"id": 1}, {"loyalty_points": Decimal("12.50")})
        self.dms.flush(self.customers)
        for key, row in expected.items():
            row["loyalty_points"] = Decimal("12.50") if key == 1 else None

    def widen_amount(self, expected: dict) -> Decimal:
        """The source's DECIMAL(18,4) amount becomes DECIMAL(30,8); key 1 gets, in a new CDC
        file, a value that only the wider type holds. `expected` (from `seed`) is updated;
        returns the value."""
        wide = Decimal("1234567890123456789012.12345678")
        with self.mysql.cursor() as cur:
            cur.execute(f"ALTER TABLE `{self.db}`.`customers` MODIFY COLUMN amount DECIMAL(30,8) NULL")
        self.dms.track(self.db, "customers")
        self.dms.update(self.customers, {"id": 1}, {"amount": wide})
        self.dms.flush(self.customers)
        expected[1]["amount"] = wide
        return wide

    @property
    def pipeline(self) -> Pipeline:
        return load_pipelines(self.config_path)[0]

    # ------------------------------------------------------------- running
    def plan(self, **plan_kwargs) -> list[dict]:
        checks = [bigquery_target.finished_in_bigquery(self.pipeline, self.bq)]
        return planning.plan_batches(self.pipeline, self.s3, self.watermarks.read, checks, **plan_kwargs)

    def load_bigquery(self, batch: dict, replay: bool = False):
        return bigquery_target.load_batch(self.pipeline, batch, self.s3, self.bq, replay=replay, workdir=self.tmp_path)

    def advance(self, reports: list, targets: int = 1) -> None:
        planning.advance_watermarks(
            self.pipeline, [r.to_dict() for r in reports], targets, self.watermarks.read, self.watermarks.write
        )

    def run_library(self, **plan_kwargs) -> list:
        """Plan, load every batch into BigQuery, advance the watermarks: what the DAG's tasks do."""
        replay = bool(plan_kwargs.get("replay_keys"))
        reports = [self.load_bigquery(batch, replay) for batch in self.plan(**plan_kwargs)]
        self.advance(reports)
        return reports

    def run_aurora(self, **plan_kwargs) -> list:
        """Plan as the DAG does, then apply every batch to the Aurora stand-in (MariaDB)."""
        from cdc_sync.targets.aurora import batch as aurora_target

        pipeline = self.pipeline
        checks = [aurora_target.finished_in_aurora(pipeline, self.aurora_connection)]
        batches = planning.plan_batches(pipeline, self.s3, self.watermarks.read, checks, **plan_kwargs)
        return [
            aurora_target.load_batch(pipeline, batch, self.s3, self.aurora_connection, workdir=self.tmp_path)
            for batch in batches
        ]

    def aurora_connection(self):
        """A connection to the Aurora stand-in; with `method: aurora_s3` its LOAD DATA FROM S3
        statements are run by the stand-in (tests.integration.aurora_s3_standin)."""
        if self.pipeline.aurora is not None and self.pipeline.aurora.method == "aurora_s3":
            from tests.integration.aurora_s3_standin import cursor_class_for

            cursor_class = cursor_class_for(self.s3, self.aurora_s3_loads)
            return self._guarded_connection(cursorclass=cursor_class)
        return self._guarded_connection()

    def _guarded_connection(self, **kwargs):
        """A LOCAL INFILE connection as the hook makes it (cdc_sync.orchestration.hooks.mysql.LocalFileGuard)."""
        from cdc_sync.orchestration.hooks.mysql import connect

        server = self.stack.mariadb
        return connect(
            host=server.host,
            port=server.port,
            user=server.user,
            password=server.password,
            charset="utf8mb4",
            autocommit=False,
            local_infile=True,
            **kwargs,
        )

    def aurora_rows(self, table: str = "customers") -> dict:
        """The live view in the Aurora stand-in, keyed by primary key, data columns only."""
        import pymysql

        conn = self.stack.mariadb.connect(cursorclass=pymysql.cursors.DictCursor)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{self.target_db}`.`{self.db}_{table}`")
                rows = cur.fetchall()
        finally:
            conn.close()
        return {_key(table, r): normalise_source(_data_only(r, self.timestamp_column)) for r in rows}

    def dag(self):
        return pipeline_dag(self.config_path, self.pipeline.dag_id)

    # ------------------------------------------------------------- reading
    def view_rows(self, table: str = "customers") -> dict:
        """Latest-state view keyed by primary key, data columns only."""
        view = f"local.{self.dataset}.{self.db}_{table}"
        rows = [dict(r) for r in self.bq.query(f"SELECT * FROM `{view}`").result()]
        return {_key(table, r): _data_only(r, self.timestamp_column) for r in rows}

    def changelog_count(self, table: str = "customers") -> int:
        name = f"local.{self.dataset}.{self.db}_{table}_changelog"
        return next(iter(self.bq.query(f"SELECT COUNT(*) AS n FROM `{name}`").result()))["n"]

    def ledger(self) -> list[dict]:
        name = f"local.{self.dataset}._cdc_sync_ledger"
        return [dict(r) for r in self.bq.query(f"SELECT * FROM `{name}` ORDER BY recorded_at").result()]

    def source_rows(self, qualified: str) -> dict:
        table = qualified.split(".")[1]
        return {_key(table, r): normalise_source(r) for r in self.dms.source_rows(qualified)}

    def close(self) -> None:
        with self.mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
            if self.target_db:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.target_db}`")
        self.mysql.close()


def pipeline_dag(config_path: Path, dag_id: str):
    """A DAG as dags/cdc_pipelines.py builds it from `config_path`. CDC_SYNC_CONFIG points the
    dags folder at that config, so dag.test() finds the same DAG when it parses the folder."""
    import importlib.util
    import os

    from tools.local_stack import REPO

    os.environ["CDC_SYNC_CONFIG"] = str(config_path)
    spec = importlib.util.spec_from_file_location(f"cdc_pipelines_{dag_id}", REPO / "dags" / "cdc_pipelines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, dag_id)


def _key(table: str, row: dict):
    return (row["order_id"], row["line_no"]) if table == "order_lines" else row["id"]


def _data_only(row: dict, timestamp_column: str | None) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_cdc_") and k != timestamp_column}


def normalise_source(row: dict) -> dict:
    """MySQL values as BigQuery returns them for the DMS types (DATETIME/TIMESTAMP → UTC)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dt.datetime):
            v = v.replace(tzinfo=dt.UTC)
        out[k] = v
    return out


def customer(id_, **overrides) -> dict:
    """A source row with every column filled; overrides replace values (None for NULL)."""
    row = {
        "id": id_,
        "qty": id_ * 10,
        "amount": Decimal(f"{id_}.1234"),
        "name": f"customer {id_} 🚀 – ünïcode",
        "notes": f'line one\nline "two", with comma {id_}',
        "updated_at": dt.datetime(2026, 1, 2, 3, 4, 5, 123456),
        "seen_at": dt.datetime(2026, 5, 6, 7, 8, 9, 654321),
        "birthday": dt.date(1990, 1, id_ % 28 + 1),
        "active": id_ % 2,
        "attrs": '{"tier": "gold", "tags": ["a", "b"]}',
    }
    row.update(overrides)
    return row


def expected_row(row: dict) -> dict:
    """What the latest-state view must hold for a source row, computed from the row alone."""
    out = dict(row)
    for k in ("updated_at", "seen_at"):
        if out.get(k) is not None:
            out[k] = out[k].replace(tzinfo=dt.UTC)
    return out
