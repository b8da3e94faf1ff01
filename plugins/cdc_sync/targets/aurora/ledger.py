"""The ledger: which chunks of which landed objects an Aurora target has applied, and each object's outcome.

One table in the target database (include/sql/aurora/ledger_table.sql), keyed by
(pipeline, table_name, object_hash, chunk), where object_hash names a landed object's
exact version (key and ETag):
  chunk >= 0   'applied': a run of the object's rows, written in the same transaction as
               those rows (merge: one per chunk, by its first row; append: chunk 0)
  chunk -1     the object's outcome: 'loaded' with its rows, or 'quarantined' with the reason
  chunk -2     'content': a claim on an object's bytes (its ETag) for one table, so that a
               repeated Firehose delivery under a new name is appended once
The rows with chunk >= 0 and -2 are written inside the caller's transaction (`cur`); the
others commit on their own. Every statement is a template under include/sql/aurora/.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

from cdc_sync import sql
from cdc_sync.config import AuroraTarget
from cdc_sync.mysql_catalog import catalog_columns, table_exists
from cdc_sync.protocols import Connection, Cursor
from cdc_sync.sources.landed import LandedObject

log = logging.getLogger(__name__)
APPLIED, LOADED, QUARANTINED, CONTENT = "applied", "loaded", "quarantined", "content"
OUTCOME_CHUNK = -1  # the ledger's chunk number of an object's outcome row
CONTENT_CLAIM = -2  # the ledger's chunk number of a row claiming an ETag (a content) for one object


def object_hash(f: LandedObject) -> str:
    """The ledger's name of one version of a landed object (its key and ETag)."""
    return hashlib.sha256(f"{f.key}\n{f.etag}".encode()).hexdigest()


def content_hash(f: LandedObject) -> str:
    """The ledger key of a content claim: the ETag alone (the object's own rows key key and ETag)."""
    return hashlib.sha256(f"content\n{f.etag}".encode()).hexdigest()


class AuroraLedger:
    """The ledger rows of one table of one pipeline in an Aurora target."""

    def __init__(self, target: AuroraTarget, pipeline: str, table_name: str):
        self.target = target
        self.pipeline = pipeline
        self.table_name = table_name

    def _render(self, template: str, **params) -> str:
        return sql.render(
            f"aurora/{template}", database=self.target.database, ledger=self.target.ledger_table, **params
        )

    @property
    def qualified_name(self) -> str:
        """`database`.`ledger`, quoted."""
        return f"{sql.mysql_ident(self.target.database)}.{sql.mysql_ident(self.target.ledger_table)}"

    # ------------------------------------------------------------ the table
    def exists(self, conn: Connection) -> bool:
        return table_exists(conn, self.target.database, self.target.ledger_table)

    def ensure(self, conn: Connection) -> None:
        """Create the ledger, or bring one of an earlier version up to date; commits."""
        with conn.cursor() as cur:
            cur.execute(self._render("ledger_table.sql"))
        columns = catalog_columns(conn, self.target.database, [self.target.ledger_table]).get(
            self.target.ledger_table, []
        )
        if columns and "first_row" not in {c.name for c in columns}:
            log.info("adding column first_row to the ledger %s", self.qualified_name)
            with conn.cursor() as cur:
                cur.execute(self._render("ledger_add_first_row.sql"))
        conn.commit()

    # ------------------------------------------------------------- outcomes
    def outcomes(self, conn: Connection, files: Iterable[LandedObject]) -> dict[tuple[str, str], str]:
        """'loaded' / 'quarantined' per (key, etag) that has an outcome in the ledger."""
        by_hash = {object_hash(f): (f.key, f.etag) for f in files}
        if not by_hash:
            return {}
        with conn.cursor() as cur:
            cur.execute(
                self._render("ledger_outcomes.sql", count=len(by_hash)), (self.pipeline, self.table_name, *by_hash)
            )
            rows = cur.fetchall()
        conn.commit()
        return {by_hash[h]: status for h, status in rows}

    def write_outcome(self, cur: Cursor, f: LandedObject, status: str, rows: int, reason: str | None = None) -> None:
        """The object's outcome, inside the caller's transaction."""
        cur.execute(
            self._render("ledger_outcome.sql"),
            (self.pipeline, self.table_name, object_hash(f), f.key, f.etag, status, rows, reason),
        )

    def record_outcome(
        self, conn: Connection, f: LandedObject, status: str, rows: int, reason: str | None = None
    ) -> None:
        """The object's outcome, committed on its own."""
        with conn.cursor() as cur:
            self.write_outcome(cur, f, status, rows, reason)
        conn.commit()

    def loaded_with_same_content(self, cur: Cursor, f: LandedObject) -> str | None:
        """The key of another object of this table loaded (with rows) with the same ETag, or None."""
        cur.execute(self._render("ledger_same_content.sql"), (self.pipeline, self.table_name, f.etag, f.key))
        row = cur.fetchone()
        return row[0] if row else None

    # --------------------------------------------------------------- chunks
    def write_chunk(self, cur: Cursor, f: LandedObject, chunk: int, first_row: int | None, rows: int) -> None:
        """A chunk 'applied', inside the transaction that applies it (IntegrityError 1062: already there)."""
        cur.execute(
            self._render("ledger_claim.sql"),
            (self.pipeline, self.table_name, object_hash(f), chunk, first_row, f.key, f.etag, APPLIED, rows),
        )

    def set_chunk_rows(self, cur: Cursor, f: LandedObject, chunk: int, rows: int) -> None:
        """A chunk's row count, once its load has counted them (inside its transaction)."""
        cur.execute(self._render("ledger_set_rows.sql"), (rows, self.pipeline, self.table_name, object_hash(f), chunk))

    def applied_chunks(self, conn: Connection, f: LandedObject) -> list[tuple[int, int | None, int]]:
        """(chunk, first_row, row_count) of every committed chunk of the object."""
        with conn.cursor() as cur:
            cur.execute(self._render("ledger_applied_chunks.sql"), (self.pipeline, self.table_name, object_hash(f)))
            rows = cur.fetchall()
        conn.commit()
        return [(int(chunk), first, int(count)) for chunk, first, count in rows]

    def chunk_rows(self, conn: Connection, f: LandedObject, chunk: int) -> int | None:
        """The row count of one committed chunk of the object, or None when there is none."""
        with conn.cursor() as cur:
            cur.execute(self._render("ledger_row.sql"), (self.pipeline, self.table_name, object_hash(f), chunk))
            row = cur.fetchone()
        conn.commit()
        return int(row[1]) if row else None

    # -------------------------------------------------------------- content
    def write_content_claim(self, cur: Cursor, f: LandedObject) -> None:
        """Claim the object's ETag for this table, inside its transaction (IntegrityError 1062: claimed)."""
        cur.execute(
            self._render("ledger_claim.sql"),
            (self.pipeline, self.table_name, content_hash(f), CONTENT_CLAIM, None, f.key, f.etag, CONTENT, 0),
        )

    def content_owner(self, cur: Cursor, f: LandedObject) -> str | None:
        """The key of the object that holds the claim on `f`'s ETag, or None."""
        cur.execute(self._render("ledger_row.sql"), (self.pipeline, self.table_name, content_hash(f), CONTENT_CLAIM))
        row = cur.fetchone()
        return row[0] if row else None
