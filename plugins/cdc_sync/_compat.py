"""Imports that moved between Airflow 3.0 (oldest on MWAA) and later 3.x releases."""

try:  # Airflow >= 3.1
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.0
    from airflow.exceptions import AirflowFailException, AirflowSkipException  # type: ignore[no-redef]

try:  # the Task SDK's copy (Airflow >= 3.1)
    from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
except ImportError:  # Airflow 3.0
    from airflow.timetables.interval import CronDataIntervalTimetable  # type: ignore[no-redef,assignment]

__all__ = ["AirflowFailException", "AirflowSkipException", "CronDataIntervalTimetable"]
