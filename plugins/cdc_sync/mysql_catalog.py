"""What a MySQL/MariaDB/Aurora database says about its own tables (information_schema)."""

from __future__ import annotations

from typing import NamedTuple


class CatalogColumn(NamedTuple):
    name: str
    column_type: str  # COLUMN_TYPE, e.g. `decimal(18,4)`
    generated: bool  # computed by the server: it cannot be written


def catalog_columns(conn, database: str, tables: list[str]) -> dict[str, list[CatalogColumn]]:
    """The columns of several tables or views of one database, in table order, in one
    catalog read; a relation that does not exist is missing from the result."""
    placeholders = ", ".join(["%s"] * len(tables))
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, EXTRA FROM information_schema.COLUMNS "
            f"WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({placeholders}) ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database, *tables),
        )
        rows = cur.fetchall()
    requested = {t.lower(): t for t in tables}  # keyed as asked, also where the server folds names
    out: dict[str, list[CatalogColumn]] = {}
    for table, name, column_type, extra in rows:
        out.setdefault(requested.get(table.lower(), table), []).append(
            CatalogColumn(name, column_type, "GENERATED" in str(extra).upper())
        )
    return out


def column_types(conn, database: str, table: str) -> list[tuple[str, str]]:
    """(name, COLUMN_TYPE such as `decimal(18,4)`) of a table or view, in table order; [] if absent."""
    return [(c.name, c.column_type) for c in catalog_columns(conn, database, [table]).get(table, [])]


def table_exists(conn, database: str, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (database, table),
        )
        return cur.fetchone()[0] > 0
