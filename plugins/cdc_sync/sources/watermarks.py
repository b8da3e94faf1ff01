"""Per-table listing watermarks, kept in Airflow Variables.

One Variable per (pipeline, table) so that mapped load tasks of different tables never
overwrite each other. Losing a watermark costs one longer listing, never a double load:
the ledger decides what is loaded.
"""

from __future__ import annotations

from cdc_sync.sources.listing import Watermark


def variable_key(pipeline: str, table: str) -> str:
    return f"cdc_sync.{pipeline}.{table}.watermark"


def read(pipeline: str, table: str) -> Watermark:
    from airflow.sdk import Variable

    return Watermark.from_dict(Variable.get(variable_key(pipeline, table), default=None, deserialize_json=True))


def write(pipeline: str, table: str, watermark: Watermark) -> None:
    from airflow.sdk import Variable

    Variable.set(variable_key(pipeline, table), watermark.to_dict(), serialize_json=True)
