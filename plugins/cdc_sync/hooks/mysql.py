"""A MySQL/Aurora hook on pymysql (the mysql provider needs mysqlclient, a C build).

Same connection fields as the mysql provider (`conn_type: mysql`): host, port, login,
password, schema; extras `ssl` (dict passed to pymysql) and `connect_timeout`.
LOCAL INFILE is off unless a caller asks for it, and the loader only does so for its own
connection and only ever sends files it wrote.
"""

from __future__ import annotations

from airflow.providers.common.sql.hooks.sql import DbApiHook


class CdcMySqlHook(DbApiHook):
    conn_name_attr = "mysql_conn_id"
    default_conn_name = "aurora_default"
    conn_type = "mysql"
    hook_name = "MySQL / Aurora (pymysql)"
    supports_autocommit = True

    def get_conn(self, *, local_infile: bool = False, autocommit: bool = False):
        import pymysql

        conn = self.get_connection(self.get_conn_id())
        extra = conn.extra_dejson
        return pymysql.connect(
            host=conn.host or "127.0.0.1",
            port=int(conn.port or 3306),
            user=conn.login or "",
            password=conn.password or "",
            database=conn.schema or None,
            charset="utf8mb4",
            autocommit=autocommit,
            local_infile=local_infile,
            ssl=extra.get("ssl"),
            connect_timeout=int(extra.get("connect_timeout", 10)),
        )
