"""Purge old tombstones from an Aurora state table in small batches, never one a change can still need.

A delete stays in the state table as a tombstone (`_cdc_deleted = 1` with its position) so
that an older change of the same key, arriving later, loses to it. A tombstone is purged
only when no change older than it can still be applied (docs/design.md, "Tombstone purge"):
  - its commit time is older than `aurora.purge_tombstones_after_hours` plus the late-file
    grace: the promise the pipeline makes about how late (and how old) a change can land;
  - its file (the position's object name) sorts before every object of the table the Aurora
    ledger has not finished (quarantined, or chunks applied without an outcome): such a file
    may still be replayed, and DMS writes changes in commit order, so an older change of
    the key is in that file or an earlier one;
  - it has a commit time at all: without commit_timestamp_column the position orders by file
    only, and a replayed file is indistinguishable from a new one, so those stay.
Batches walk the primary key (keyset pagination) and delete each batch in its own short
transaction; the DELETE re-checks the tombstone condition under its row locks, so a key
that a concurrent load brought back (a newer insert) is never deleted. The live view reads
`_cdc_deleted = 0` rows only: it and reconciliation see the same rows before and after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cdc_sync import sql
from cdc_sync.config import Pipeline, TableSpec
from cdc_sync.mysql_catalog import table_exists
from cdc_sync.protocols import Connect

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class PurgeReport:
    table: str
    horizon: str = ""
    purged: int = 0
    batches: int = 0
    skipped: str = ""

    def to_dict(self) -> dict:
        return {
            "table": self.table,
            "horizon": self.horizon,
            "purged": self.purged,
            "batches": self.batches,
            "skipped": self.skipped,
        }


def horizon_position(commit_before: datetime) -> str:
    """The smallest CDC position committed at `commit_before`: every tombstone below it is older."""
    micros = int((commit_before.astimezone(UTC) - EPOCH) / timedelta(microseconds=1))
    return f"1|{micros:020d}|"


def purge_table(pipeline: Pipeline, table: TableSpec, connect: Connect, *, now: datetime | None = None) -> PurgeReport:
    """Purge the tombstones of one table older than its safe horizon, batch by batch."""
    target = pipeline.aurora
    assert target is not None and target.mode == "merge"
    report = PurgeReport(table.qualified_name)
    if target.purge_tombstones_after_hours is None:
        report.skipped = "purge off (aurora.purge_tombstones_after_hours)"
        return report
    state = target.state_table(table)
    now = now or datetime.now(UTC)
    keep = timedelta(hours=target.purge_tombstones_after_hours, minutes=pipeline.options.late_file_grace_minutes)
    horizon = horizon_position(now - keep)
    report.horizon = horizon
    conn = connect()
    try:
        if not table_exists(conn, target.database, state):
            report.skipped = "no state table yet"
            return report
        first_unfinished = _first_unfinished_object(conn, pipeline, table)
        db, tbl = sql.mysql_ident(target.database), sql.mysql_ident(state)
        keys = [sql.mysql_ident(c) for c in table.primary_key]
        key_list = ", ".join(keys)
        # tombstones with a commit time (not all zeros) below the horizon, whose file sorts
        # before the first unfinished object of the table
        condition = "_cdc_deleted = 1 AND _cdc_position < %s AND _cdc_position >= '1|00000000000000000001'"
        params: list = [horizon]
        if first_unfinished is not None:
            condition += " AND SUBSTRING_INDEX(SUBSTRING_INDEX(_cdc_position, '|', 3), '|', -1) < %s"
            params.append(first_unfinished)
        after: tuple | None = None
        while True:
            where = condition
            page_params = list(params)
            if after is not None:
                where = f"({key_list}) > ({', '.join(['%s'] * len(keys))}) AND " + where
                page_params = list(after) + page_params
            with conn.cursor() as cur:
                cur.execute(
                    f"SELECT {key_list} FROM {db}.{tbl} WHERE {where} ORDER BY {key_list} LIMIT %s",
                    (*page_params, target.purge_batch_rows),
                )
                batch = [tuple(row) for row in cur.fetchall()]
            conn.commit()
            if not batch:
                break
            if len(keys) == 1:  # an IN list of keys: one index range lookup each
                match = f"{keys[0]} IN ({', '.join(['%s'] * len(batch))})"
            else:
                one = "(" + ", ".join(["%s"] * len(keys)) + ")"
                match = f"({key_list}) IN ({', '.join([one] * len(batch))})"
            with conn.cursor() as cur:
                # the same condition again, under the rows' locks: a key a load revived stays
                report.purged += cur.execute(
                    f"DELETE FROM {db}.{tbl} WHERE {match} AND {condition}",
                    (*[v for row in batch for v in row], *params),
                )
            conn.commit()
            report.batches += 1
            after = batch[-1]
            if len(batch) < target.purge_batch_rows:
                break
    finally:
        conn.close()
    log.info(
        "%s: purged %d tombstone(s) older than position %s in %d batch(es)",
        table.qualified_name,
        report.purged,
        horizon,
        report.batches,
    )
    return report


def _first_unfinished_object(conn, pipeline: Pipeline, table: TableSpec) -> str | None:
    """The smallest object name (relative to the table folder, as in positions) of the table
    that the ledger has seen but not finished loading: quarantined, or chunks without outcome."""
    target = pipeline.aurora
    assert target is not None
    if not table_exists(conn, target.database, target.ledger_table):
        return None
    ledger = f"{sql.mysql_ident(target.database)}.{sql.mysql_ident(target.ledger_table)}"
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT MIN(l.object_key) FROM {ledger} AS l "
            "WHERE l.pipeline = %s AND l.table_name = %s AND NOT EXISTS ("
            f"  SELECT 1 FROM {ledger} AS o WHERE o.pipeline = l.pipeline AND o.table_name = l.table_name"
            "   AND o.object_hash = l.object_hash AND o.chunk = -1 AND o.status = 'loaded')",
            (pipeline.name, table.qualified_name),
        )
        row = cur.fetchone()
    conn.commit()
    key = row[0] if row else None
    if key is None:
        return None
    prefix = pipeline.source.table_prefix(table)
    return key[len(prefix) :] if key.startswith(prefix) else key


def purge_pipeline(pipeline: Pipeline, connect: Connect, *, now: datetime | None = None) -> list[PurgeReport]:
    """Purge old tombstones in every table of a merge-mode Aurora target."""
    return [purge_table(pipeline, table, connect, now=now) for table in pipeline.tables]
