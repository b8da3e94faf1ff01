"""Imports that moved between Airflow 3.0 (oldest on MWAA) and later 3.x releases."""

try:  # Airflow >= 3.1
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import AirflowFailException, AirflowSkipException  # type: ignore[no-redef]

__all__ = ["AirflowFailException", "AirflowSkipException"]
