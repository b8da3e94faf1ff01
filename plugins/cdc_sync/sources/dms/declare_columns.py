"""Print the `tables:` entries a DMS CSV pipeline needs, read from the source database's
catalog, so that nobody types a hundred column types by hand.

    python -m cdc_sync.sources.dms.declare_columns --conn mysql_source shop.customers shop.orders

Connects with the Airflow connection named by `--conn` (as the reconcile DAG does) and
prints, per table, its primary key and its columns in table order with their MySQL types,
ready to paste under `tables:` in the pipelines file. Add `commit_timestamp_column` if the
DMS endpoint sets TimestampColumnName.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from cdc_sync.mysql_catalog import column_types


def table_entry(conn, schema: str, table: str) -> dict:
    """One `tables:` entry for a DMS CSV pipeline: schema, name, primary_key, columns."""
    columns = column_types(conn, schema, table)
    if not columns:
        raise LookupError(f"{schema}.{table}: no such table in the source database")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        primary_key = [name for (name,) in cur.fetchall()]
    entry: dict = {"schema": schema, "name": table}
    if primary_key:
        entry["primary_key"] = primary_key
    entry["columns"] = [f"{name} {kind}" for name, kind in columns]
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cdc_sync.sources.dms.declare_columns",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--conn", required=True, help="Airflow connection to the source database (type mysql)")
    parser.add_argument("tables", nargs="+", metavar="schema.table")
    args = parser.parse_args(argv)
    from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook

    conn = CdcMySqlHook(mysql_conn_id=args.conn).get_conn()
    entries, missing = [], []
    try:
        for qualified in args.tables:
            schema, _, table = qualified.partition(".")
            if not table:
                parser.error(f"{qualified!r}: give tables as schema.table")
            try:
                entries.append(table_entry(conn, schema, table))
            except LookupError as error:
                missing.append(str(error))
    finally:
        conn.close()
    for entry in entries:
        if "primary_key" not in entry:
            sys.stderr.write(f"# {entry['schema']}.{entry['name']} has no primary key: name one (merge needs it)\n")
    # a command-line tool: its YAML is the output, on stdout; problems go to stderr
    sys.stdout.write(yaml.safe_dump(entries, sort_keys=False, allow_unicode=True, width=120))
    for problem in missing:
        sys.stderr.write(f"{problem}\n")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
