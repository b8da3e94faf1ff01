"""A stand-in for Aurora MySQL's `LOAD DATA FROM S3`, which only Aurora runs.

The loader's statement is run as Aurora would run it, by MariaDB: the object named in it is
read from the local S3 (moto) and loaded with `LOAD DATA LOCAL INFILE`, the rest of the
statement unchanged. A non-LOCAL load stops at the first duplicate key or bad value (strict
mode) where a LOCAL one only warns, so warnings are turned back into that error, after the
statement's rows are rolled back to a savepoint (unless the statement says IGNORE or
REPLACE, which make Aurora warn too). The S3 URI of every such statement is recorded, so
tests can check what the loader asked Aurora to read.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pymysql
import pymysql.cursors

_FROM_S3 = re.compile(r"\bLOAD DATA FROM S3 (?:FILE )?'s3://(?P<bucket>[^/']+)/(?P<key>[^']+)'", re.IGNORECASE)


class AuroraS3Cursor(pymysql.cursors.Cursor):
    """Bound to an S3 client and a statement log by `cursor_class_for`."""

    s3_client = None
    loaded_uris: list[str] = []

    def execute(self, query, args=None):
        match = _FROM_S3.search(query) if isinstance(query, str) else None
        if match is None:
            return super().execute(query, args)
        self.loaded_uris.append(f"s3://{match['bucket']}/{match['key']}")
        with tempfile.TemporaryDirectory(prefix="aurora-s3-") as folder:
            path = Path(folder) / "object"
            body = self.s3_client.get_object(Bucket=match["bucket"], Key=match["key"])["Body"]
            path.write_bytes(body.read())
            local = "LOAD DATA LOCAL INFILE " + pymysql.converters.escape_string(str(path)).join("''")
            super().execute("SAVEPOINT aurora_s3_standin")
            rows = super().execute(query[: match.start()] + local + query[match.end() :], args)
            super().execute("SHOW WARNINGS")
            warnings = self.fetchall()
            # with IGNORE (or REPLACE) Aurora, too, only warns
            if warnings and not re.match(r"\s*(IGNORE|REPLACE)\b", query[match.end() :], re.IGNORECASE):
                super().execute("ROLLBACK TO SAVEPOINT aurora_s3_standin")
                _level, code, message = warnings[0]
                error_class = pymysql.err.error_map.get(code, pymysql.err.OperationalError)
                raise error_class(code, message)
            return rows


def cursor_class_for(s3_client, loaded_uris: list[str]) -> type[AuroraS3Cursor]:
    return type("BoundAuroraS3Cursor", (AuroraS3Cursor,), {"s3_client": s3_client, "loaded_uris": loaded_uris})
