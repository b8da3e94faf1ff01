"""What a MySQL/MariaDB/Aurora database says about its own tables (information_schema)."""

from __future__ import annotations


def column_types(conn, database: str, table: str) -> list[tuple[str, str]]:
    """(name, COLUMN_TYPE such as `decimal(18,4)`) of a table or view, in table order; [] if absent."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (database, table),
        )
        return [(name, column_type) for name, column_type in cur.fetchall()]


def is_generated(conn, database: str, table: str, column: str) -> bool:
    """Whether the column is computed by the server (it cannot be written)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT EXTRA FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s "
            "AND COLUMN_NAME = %s", (database, table, column),
        )
        row = cur.fetchone()
    return row is not None and "GENERATED" in str(row[0]).upper()


def table_exists(conn, database: str, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (database, table))
        return cur.fetchone()[0] > 0
