"""The audit trail's table: its columns (MySQL types) and key, known without importing the readers."""

from __future__ import annotations

# One row per audit event. The key is CloudWatch Logs' id of the log event (unique in its log
# group), so an event CloudWatch delivers twice is still one row.
TRAIL_COLUMNS: tuple[str, ...] = (
    "event_id varchar(64)",
    "event_time datetime(6)",
    "server_host varchar(255)",
    "user_name varchar(255)",
    "client_host varchar(255)",
    "connection_id bigint",
    "query_id bigint",
    "operation varchar(64)",
    "database_name varchar(255)",
    "tables_written text",
    "statement mediumtext",
    "retcode int",
    "log_group varchar(512)",
    "log_stream varchar(512)",
)
TRAIL_KEY: tuple[str, ...] = ("event_id",)
TRAIL_TIMESTAMP_COLUMN = "cdc_commit_ts"
