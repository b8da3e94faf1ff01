"""cdc-sync: keep Aurora MySQL and BigQuery in sync with change data landed on S3."""

__version__ = "0.1.0"
