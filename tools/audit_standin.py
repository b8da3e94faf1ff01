"""Audit lines and CloudWatch Logs subscription records built the way the services write them.

The Aurora / MariaDB audit plugin writes ``timestamp,serverhost,username,host,connectionid,
queryid,operation,database,'object',retcode`` with ``'`` and ``\\`` in the object escaped by a
backslash; CloudWatch Logs puts gzip-compressed JSON envelopes on the Kinesis stream.
"""

from __future__ import annotations

import gzip
import json


def escape_object(text: str, *, escape_newlines: bool = False) -> str:
    """The audit plugin's escaping of the object (MariaDB also writes newlines as ``\\n``)."""
    out = text.replace("\\", "\\\\").replace("'", "\\'")
    if escape_newlines:
        out = out.replace("\n", "\\n").replace("\r", "\\r")
    return out


def audit_line(
    statement: str,
    *,
    database: str = "shop",
    retcode: int = 0,
    timestamp: str = "1764979200123456",
    user: str = "app",
    host: str = "10.0.0.7",
    connection_id: int = 41,
    query_id: int = 1001,
    operation: str = "QUERY",
    server_host: str = "shop-instance-1",
    escape_newlines: bool = False,
) -> str:
    """One audit line as the audit plugin writes it."""
    obj = escape_object(statement, escape_newlines=escape_newlines)
    return (
        f"{timestamp},{server_host},{user},{host},{connection_id},{query_id},{operation},{database},'{obj}',{retcode}"
    )


def subscription_record(
    messages: list[str],
    *,
    log_group: str = "/aws/rds/cluster/shop/audit",
    log_stream: str = "shop-instance-1.audit.log.0.2026-12-06-11-00.0.2",
    first_id: int = 1,
) -> bytes:
    """The gzip bytes CloudWatch Logs puts on the stream for `messages` (a DATA_MESSAGE)."""
    body = {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": ["audit-to-kinesis"],
        "logEvents": [
            {"id": str(first_id + i), "timestamp": 1764979200123 + i, "message": m} for i, m in enumerate(messages)
        ],
    }
    return gzip.compress(json.dumps(body).encode("utf-8"))


def control_record(log_group: str = "/aws/rds/cluster/shop/audit") -> bytes:
    """The CONTROL_MESSAGE CloudWatch Logs sends when the subscription is created."""
    body = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {
                "id": "",
                "timestamp": 1764979200000,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
            }
        ],
    }
    return gzip.compress(json.dumps(body).encode("utf-8"))
