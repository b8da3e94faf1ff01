"""The ledger: which landed objects a BigQuery target has loaded, is loading, or refused.

A row is written *before* a load job is inserted (`pending`, with the job id) and after
it ends (`loaded` with the row count, or `quarantined` with the reason). A retry that
finds a pending row asks BigQuery about that job instead of loading the files again, so
a crash between the job and the ledger write cannot load a file twice.

The `pending` rows are also the loads' claims on their objects (`claims`): a loader reads
them back after writing its own and settles every other claim on the same objects before
its job may run (bigquery.loader), so concurrent loads of overlapping sets append each
object once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.cloud import bigquery

from cdc_sync import sql
from cdc_sync.config import BigQueryTarget

PENDING, LOADED, QUARANTINED = "pending", "loaded", "quarantined"
_INSERT_CHUNK = 500


@dataclass(frozen=True)
class LedgerEntry:
    object_key: str
    etag: str
    status: str
    job_id: str | None = None
    row_count: int | None = None
    reason: str | None = None


class BigQueryLedger:
    def __init__(self, client: bigquery.Client, target: BigQueryTarget, pipeline: str):
        self.client = client
        self.target = target
        self.pipeline = pipeline

    def _render(self, template: str) -> str:
        return sql.render(
            template, project=self.target.project, dataset=self.target.dataset, ledger=self.target.ledger_table
        )

    def ensure(self) -> None:
        self.client.query(self._render("bigquery/ledger_table.sql"), location=self.target.location).result()

    def current(self, table_name: str, keys: Iterable[str]) -> dict[tuple[str, str], LedgerEntry]:
        """State of the given objects, keyed by (object_key, etag)."""
        rows = self._rows_of("bigquery/ledger_status.sql", table_name, keys)
        return {
            (r["object_key"], r["etag"]): LedgerEntry(
                r["object_key"], r["etag"], r["status"], r["job_id"], r["row_count"], r["reason"]
            )
            for r in rows
        }

    def claims(self, table_name: str, keys: Iterable[str]) -> list[LedgerEntry]:
        """Every pending row of the given objects: the load jobs that have claimed them."""
        rows = self._rows_of("bigquery/ledger_claims.sql", table_name, keys)
        return [LedgerEntry(r["object_key"], r["etag"], PENDING, r["job_id"], r["row_count"]) for r in rows]

    def _rows_of(self, template: str, table_name: str, keys: Iterable[str]) -> list:
        """The rows a ledger query gives for some objects of one table (none without keys)."""
        wanted = sorted(set(keys))
        if not wanted:
            return []
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("pipeline", "STRING", self.pipeline),
                bigquery.ScalarQueryParameter("table_name", "STRING", table_name),
                bigquery.ArrayQueryParameter("keys", "STRING", wanted),
            ]
        )
        return list(
            self.client.query(self._render(template), job_config=config, location=self.target.location).result()
        )

    def record(self, table_name: str, entries: list[LedgerEntry]) -> None:
        statement = self._render("bigquery/ledger_record.sql")
        for start in range(0, len(entries), _INSERT_CHUNK):
            chunk = entries[start : start + _INSERT_CHUNK]
            rows = [
                bigquery.StructQueryParameter(
                    None,
                    bigquery.ScalarQueryParameter("object_key", "STRING", e.object_key),
                    bigquery.ScalarQueryParameter("etag", "STRING", e.etag),
                    bigquery.ScalarQueryParameter("status", "STRING", e.status),
                    bigquery.ScalarQueryParameter("job_id", "STRING", e.job_id),
                    bigquery.ScalarQueryParameter("row_count", "INT64", e.row_count),
                    bigquery.ScalarQueryParameter("reason", "STRING", e.reason),
                )
                for e in chunk
            ]
            config = bigquery.QueryJobConfig(
                query_parameters=[
                    bigquery.ScalarQueryParameter("pipeline", "STRING", self.pipeline),
                    bigquery.ScalarQueryParameter("table_name", "STRING", table_name),
                    bigquery.ArrayQueryParameter("rows", "STRUCT", rows),
                ]
            )
            self.client.query(statement, job_config=config, location=self.target.location).result()
