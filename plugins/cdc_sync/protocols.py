"""The small client interfaces the library relies on, so that any client that has them will do.

pymysql's connections and boto3's S3 client are what Airflow's hooks hand over; tests and
the benchmarks pass their own. Only the methods cdc-sync calls are named here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Cursor(Protocol):
    """A DB-API cursor used as a context manager (pymysql's)."""

    def __enter__(self) -> Cursor: ...

    def __exit__(self, *exc: object) -> Any: ...

    def execute(self, query: str, args: Any = None) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Connection(Protocol):
    """A DB-API connection to Aurora MySQL (or MySQL/MariaDB)."""

    def cursor(self) -> Cursor: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def close(self) -> None: ...


Connect = Callable[[], Connection]
"""Opens a new connection each call (with local_infile as the load method needs)."""


class S3Client(Protocol):
    """The calls made to S3 on landed objects (boto3's S3 client has them)."""

    def get_object(self, **kwargs: Any) -> Any: ...

    def put_object(self, **kwargs: Any) -> Any: ...

    def list_objects_v2(self, **kwargs: Any) -> Any: ...

    def upload_file(self, Filename: str, Bucket: str, Key: str, *args: Any, **kwargs: Any) -> Any: ...  # noqa: N803 - boto3's names
