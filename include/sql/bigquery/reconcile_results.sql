-- One row per (run, table, target) comparison: what reconciliation found and how long it took.
CREATE TABLE IF NOT EXISTS {{ bq_table(project, dataset, table) }} (
  run_id STRING NOT NULL,
  checked_at TIMESTAMP NOT NULL,
  pipeline STRING NOT NULL,
  table_name STRING NOT NULL,
  target STRING NOT NULL,
  status STRING NOT NULL,
  source_rows INT64 NOT NULL,
  target_rows INT64 NOT NULL,
  missing_rows INT64 NOT NULL,
  extra_rows INT64 NOT NULL,
  changed_rows INT64 NOT NULL,
  lag_rows INT64 NOT NULL,
  sample_keys STRING NOT NULL,
  watermark STRING,
  seconds FLOAT64 NOT NULL,
  detail STRING NOT NULL
)
